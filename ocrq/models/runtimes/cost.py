"""Cost per page (issue 15): the CPU and GPU seconds each engine step spent.

A step runs inside :class:`Measure`: its ``cpu_s`` is the ``time.process_time``
delta of this process around the step, and its ``gpu_s`` is the wall time of
the forward passes it made on a GPU, which runtimes on a ``cuda`` device (or a
``remote`` one whose tensor server is on one) add to the step's meter through
:func:`meter_gpu`. The meter lives in a context variable, so concurrent steps
on other threads each have their own.

What the numbers mean:

- ``cpu_s`` is the whole process's CPU time during the step. In a prefork
  worker one task runs per process at a time, so it is the step's own,
  ONNX Runtime's intra-op threads included. In a threaded process (the GPU
  worker's ``--inprocess`` mode, threads pool) concurrent tasks overlap and
  each step is charged the CPU time of all of them while it ran.
- ``gpu_s`` of a torch runtime on CUDA is the wall time inside its ``run`` /
  ``run_images`` calls: the forward pass plus the wait for a shared pass
  (BatchingRuntime) and the copies to and from the device. Of a ``remote``
  runtime it is the client's wall time of the request: that includes the
  Unix socket round trip and the server's queueing, as the tensor server's
  reply does not carry its own pass time. The tensor server's CPU time is in
  no step's ``cpu_s`` (it is another process).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, TypeVar

R = TypeVar("R")
GPU_METHODS = ("run", "run_images", "run_many_images")


@dataclass(frozen=True)
class Cost:
    """Seconds one step (or a page, summed) spent on CPU and GPU."""

    cpu_s: float = 0.0
    gpu_s: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.cpu_s + other.cpu_s, self.gpu_s + other.gpu_s)

    def to_dict(self) -> dict[str, float]:
        return {"cpu_s": round(self.cpu_s, 6), "gpu_s": round(self.gpu_s, 6)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Cost:
        data = data or {}
        return cls(float(data.get("cpu_s", 0.0)), float(data.get("gpu_s", 0.0)))


NO_COST = Cost()


def page_cost(steps: Mapping[str, Cost]) -> dict[str, dict[str, float]]:
    """The result document's ``cost``: each step's, and their ``total``."""
    total = sum(steps.values(), Cost())
    return {**{k: c.to_dict() for k, c in steps.items()}, "total": total.to_dict()}


class _Meter:
    """One step's GPU seconds so far. ``busy``: a metered call is running, so the
    calls it makes itself (a wrapper's inner runtime) are not counted twice."""

    def __init__(self) -> None:
        self.gpu_s = 0.0
        self.busy = False
        # A context may be copied onto another thread (contextvars.copy_context):
        # the sum is then added to from two threads.
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self.gpu_s += seconds


_meter: ContextVar[_Meter | None] = ContextVar("ocrq_cost_meter", default=None)


class Measure:
    """``with Measure() as m: ...`` then ``m.cost``: the block's CPU and GPU seconds.

    Nested, the inner block's GPU seconds count in the outer one's too.
    """

    def __init__(self) -> None:
        self.cost = Cost()
        self._meter = _Meter()
        self._cpu0 = 0.0
        self._token: Token[_Meter | None] | None = None

    def __enter__(self) -> Measure:
        self._token = _meter.set(self._meter)
        self._cpu0 = time.process_time()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        cpu = time.process_time() - self._cpu0
        if self._token is not None:
            _meter.reset(self._token)
        outer = _meter.get()
        if outer is not None:
            outer.add(self._meter.gpu_s)
        self.cost = Cost(cpu, self._meter.gpu_s)


def costed(step: Callable[..., R]) -> Callable[..., R]:
    """A step whose result (a frozen dataclass with a ``cost`` field) carries its
    cost, measured around the whole step."""

    @functools.wraps(step)
    def measured(*args: Any, **kwargs: Any) -> R:
        with Measure() as m:
            result = step(*args, **kwargs)
        return replace(result, cost=m.cost)  # type: ignore[type-var]

    return measured


def _gpu_timed(fn: Callable[..., R]) -> Callable[..., R]:
    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> R:
        meter = _meter.get()
        if meter is None or meter.busy:  # no step measuring (a server thread), or nested
            return fn(*args, **kwargs)
        meter.busy = True
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            meter.busy = False
            meter.add(time.perf_counter() - t0)

    return timed


def meter_gpu(runtime: R) -> R:
    """``runtime`` with its forward-pass methods timed into the running step's
    meter when it runs on a GPU (device ``cuda...``); returned as it is otherwise.

    The methods are replaced on the instance, not wrapped in a new object:
    code that checks a runtime's type (cluster/agent.py) still sees its own.
    """
    if not str(getattr(runtime, "device", "cpu")).startswith("cuda"):
        return runtime
    for name in GPU_METHODS:
        fn = getattr(runtime, name, None)
        if fn is not None:
            setattr(runtime, name, _gpu_timed(fn))
    return runtime
