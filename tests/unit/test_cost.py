"""Cost per page (issue 15): CPU and GPU seconds per step in the result and metrics."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY

from ocrq.document import PageResult
from ocrq.engine import Engine
from ocrq.models.runtimes.cost import Cost, Measure, meter_gpu
from ocrq.observability.metrics import instrument_engine
from ocrq.pipeline.messages import BatchResult, JobContext

STEPS = ("rotate", "detect", "recognize", "reorder")


def test_an_in_process_page_on_cpu_has_each_steps_cost(engine: Engine,
                                                       invoice_page: np.ndarray) -> None:
    page = engine.run(invoice_page, "invoice.png")
    assert set(page.cost) == {*STEPS, "total"}
    for step in STEPS:
        assert page.cost[step]["cpu_s"] > 0, step
        assert page.cost[step]["gpu_s"] == 0.0, step  # ONNX Runtime on the CPU
    total = sum(page.cost[s]["cpu_s"] for s in STEPS)
    assert page.cost["total"]["cpu_s"] == pytest.approx(total, abs=1e-5)
    # CPU time of a step is at most its wall time times the cores that could run it.
    for step in ("detect", "recognize"):
        assert page.cost[step]["cpu_s"] <= page.timings_ms[step] / 1000 * 64
    # The document form carries it both ways (the API, the DB's result row).
    assert PageResult.from_dict(page.to_dict()).cost == page.cost


def test_the_metrics_count_each_steps_cost(engine: Engine, invoice_page: np.ndarray) -> None:
    def sample(name: str, stage: str) -> float:
        return REGISTRY.get_sample_value(name, {"stage": stage, "device": "test"}) or 0.0

    before = {s: sample("ocrq_stage_cpu_seconds_total", s) for s in STEPS}
    e = Engine(engine.registry, engine.options)  # instrumented on its instance only
    instrument_engine(e, "test")
    page = e.run(invoice_page, "invoice.png")
    for s in STEPS:
        # The page's own figure, counted once (rounded in the document: 1e-6 s).
        got = sample("ocrq_stage_cpu_seconds_total", s) - before[s]
        assert got == pytest.approx(page.cost[s]["cpu_s"], abs=1e-5), s
        assert REGISTRY.get_sample_value("ocrq_stage_gpu_seconds_total",
                                         {"stage": s, "device": "test"}) == 0.0


class _SleepingCudaRuntime:
    """A runtime that says it is on a GPU and takes 20 ms a pass (the accounting
    under test is the wrapper's, not a network's)."""

    backend = "torch"
    device = "cuda:0"

    def run(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(0.02)
        return batch

    def run_images(self, images: np.ndarray, spec: dict) -> np.ndarray:
        return self.run(images)  # nested: counted once, by the outer call


def test_gpu_seconds_are_the_passes_of_a_cuda_runtime_once_each() -> None:
    rt = meter_gpu(_SleepingCudaRuntime())
    x = np.zeros((1, 3, 4, 4), np.float32)
    rt.run(x)  # no step measuring: not counted anywhere, no error
    with Measure() as m:
        rt.run_images(x, {})
        rt.run(x)
    assert 0.04 <= m.cost.gpu_s < 0.2  # two passes, the nested run not twice
    assert m.cost.cpu_s < m.cost.gpu_s  # sleeping costs no CPU
    assert isinstance(rt, _SleepingCudaRuntime)  # its type is kept (cluster/agent.py)


def test_concurrent_steps_on_threads_each_count_their_own_passes() -> None:
    rt = meter_gpu(_SleepingCudaRuntime())
    x = np.zeros((1, 3, 4, 4), np.float32)
    got: dict[int, Cost] = {}

    def step(n: int) -> None:
        with Measure() as m:
            for _ in range(n):
                rt.run(x)
        got[n] = m.cost

    threads = [threading.Thread(target=step, args=(n,)) for n in (1, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 0.02 <= got[1].gpu_s < 0.06 and 0.08 <= got[4].gpu_s < 0.2


def test_a_cpu_runtime_is_left_as_it_is() -> None:
    class Cpu:
        device = "cpu"

        def run(self, batch: np.ndarray) -> np.ndarray:
            return batch

    rt = Cpu()
    run = rt.run
    assert meter_gpu(rt).run == run and "run" not in vars(rt)


def test_the_messages_carry_each_steps_cost_to_reorder() -> None:
    ctx = JobContext("j", "b", "t", "k", "n", 10, 10, {}, 64, False)
    ctx = ctx.after("rotate", {}, 1.0, Cost(0.5, 0.0)).after("detect", {}, 2.0, Cost(1.0, 0.25))
    ctx = JobContext.from_message(ctx.to_message())
    batches = [BatchResult.from_message(BatchResult(i, [], {}, 1.0, cpu_s=0.5, gpu_s=0.125)
                                        .to_message()) for i in range(2)]
    old = BatchResult.from_message({"index": 2, "texts": [], "models": {}, "ms": 1.0})
    costs = ctx.costs("recognize", [*batches, old])  # a producer without cost: 0
    assert costs == {"rotate": Cost(0.5, 0.0), "detect": Cost(1.0, 0.25),
                     "recognize": Cost(1.0, 0.25)}
