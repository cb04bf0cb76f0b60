"""Fault runs: private servers to break, a webhook receiver that keeps a log, a
whole deployment on them (:mod:`.rig`), and the chaos driver (:mod:`.driver`).

Shared by the fault suite (tests/faults/) and the soak bench (bench/soak.py), so
that the short and the long form break the same things the same way.
"""
