"""Hardware class -> queue name.

Issue 4 replaces :meth:`Router.queue_for` with a lookup in the live routing
snapshot (gpu -> cpu fallback when no GPU worker is alive); everything that
routes goes through this one method.
"""

from __future__ import annotations

from ocrq.plans import Plan, Step
from ocrq.settings import Settings


class Router:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def queue_for(self, hardware: str, step: Step | None = None) -> str:
        from ocrq.cluster.routing import live_queue  # issue 4: the live snapshot decides

        return live_queue(self.settings, hardware, step.options if step else None,
                          step.name if step else "")

    def queues(self, plan: Plan) -> dict[str, str]:
        """Queue of every step of a plan, resolved once at intake."""
        return {s.name: self.queue_for(s.hardware, s) for s in plan.steps}
