"""Hardware class -> queue name.

Issue 4 replaces :meth:`Router.queue_for` with a lookup in the live routing
snapshot (gpu -> cpu fallback when no GPU worker is alive); everything that
routes goes through this one method.
"""

from __future__ import annotations

from ocrq.plans import Plan
from ocrq.settings import Settings


class Router:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def queue_for(self, hardware: str) -> str:
        return self.settings.queue_gpu if hardware == "gpu" else self.settings.queue_cpu

    def queues(self, plan: Plan) -> dict[str, str]:
        """Queue of every step of a plan, resolved once at intake."""
        return {s.name: self.queue_for(s.hardware) for s in plan.steps}
