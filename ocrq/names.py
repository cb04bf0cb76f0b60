"""Names used across layers, defined once: model kinds, plan steps, Celery task names.

Ground floor: imports nothing from the project. A value of these enums is a
``str``, so it compares equal to the plain string in YAML, JSON and messages.
"""

from __future__ import annotations

import enum


class ModelKind(enum.StrEnum):
    """Short names of the built-in model kinds (the product brief's table)."""

    ROT = "rot"  # page orientation
    STD = "std"  # text detection
    DIR = "dir"  # text-line direction (0/180)
    STR = "str"  # text recognition
    STR2 = "str2"  # a second recogniser: an independent reading of doubtful lines


# The models one OCR page needs, loaded together at worker start.
OCR_MODELS: tuple[ModelKind, ...] = (ModelKind.ROT, ModelKind.STD, ModelKind.DIR, ModelKind.STR,
                                     ModelKind.STR2)
# Line models whose concurrent calls may share one forward pass (runtimes/batching.py).
BATCHED_MODELS: tuple[ModelKind, ...] = (ModelKind.STR, ModelKind.STR2, ModelKind.DIR)


class Step(enum.StrEnum):
    """Steps of an execution plan, in the order they may run."""

    ROTATE = "rotate"
    DETECT = "detect"
    RECOGNIZE = "recognize"
    REORDER = "reorder"


STEPS: tuple[Step, ...] = tuple(Step)
# The result document needs all three; rotate is optional.
REQUIRED_STEPS: tuple[Step, ...] = (Step.DETECT, Step.RECOGNIZE, Step.REORDER)


class Task(enum.StrEnum):
    """Celery task names (explicit: producers never import the task module, and a
    rename never orphans queued messages)."""

    ROTATE = "ocrq.rotate"
    DETECT = "ocrq.detect"
    RECOGNIZE = "ocrq.recognize"
    REORDER = "ocrq.reorder"
    STAGE = "ocrq.stage"  # a plug-in stage (its name is in the message)
    JOB_FAILED = "ocrq.job_failed"
    WEBHOOK = "ocrq.webhook"

    @property
    def step(self) -> Step | None:
        """The plan step a stage task runs (None for the errback and webhooks)."""
        tail = self.value.rsplit(".", 1)[-1]
        return Step(tail) if tail in Step._value2member_map_ else None


# Tasks that work on a job's page (time limits, redelivery caps apply).
STAGE_TASKS: frozenset[str] = frozenset(
    [*(t.value for t in Task if t.step is not None), Task.STAGE.value])
