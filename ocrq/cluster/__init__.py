"""The cluster as operators see it: live snapshot from heartbeats, the expected
layout (static snapshot) and its drift, routing around dead hardware, drain/resume."""
