"""Worker-side registry: statuses, load beside, atomic swap, failed loads, canaries.

Runs against a real repository materialised from the wheels and real ONNX
Runtime sessions; no services needed.
"""

from __future__ import annotations

import gc
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from ocrq.errors import ModelIntegrityError, ModelLoadError
from ocrq.models.registry import Desired, ModelRegistry
from ocrq.models.repository import ModelRepository
from ocrq.models.states import Status
from ocrq.settings import Settings

LINE = np.random.default_rng(0).random((1, 3, 48, 96), dtype=np.float32)


@pytest.fixture(scope="session")
def pristine_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    ModelRepository(root).ensure_defaults()
    return root


@pytest.fixture
def repo(pristine_repo: Path, tmp_path: Path) -> ModelRepository:
    root = tmp_path / "models"
    shutil.copytree(pristine_repo, root)
    return ModelRepository(root)


@pytest.fixture
def registry(repo: ModelRepository) -> ModelRegistry:
    return ModelRegistry(repo, Settings(model_root=repo.root, threads=1))


def _state(reg: ModelRegistry, name: str, version: int):
    return next(s for s in reg.states() if (s.name, s.version) == (name, version))


def _copy_v1(repo: ModelRepository, tmp_path: Path) -> int:
    src = repo.manifest("str", 1).weights_path
    return repo.add_version("str", src).version


def test_get_loads_latest_and_reports_ready(registry: ModelRegistry) -> None:
    model = registry.get("str")
    assert (model.name, model.version) == ("str", 1)
    state = _state(registry, "str", 1)
    assert state.status is Status.READY and state.active and state.device == "cpu"
    assert registry.get("str") is model  # loaded once


def test_activate_swaps_and_running_call_keeps_its_version(
        registry: ModelRegistry, repo: ModelRepository, tmp_path: Path) -> None:
    v1 = registry.get("str")
    assert _copy_v1(repo, tmp_path) == 2
    v2 = registry.activate("str", 2)
    assert registry.get("str") is v2 and v2.version == 2
    # A call that took v1 before the swap still runs on it to the end.
    out_v1 = v1.runtime.run(LINE)
    np.testing.assert_allclose(out_v1, v2.runtime.run(LINE), rtol=1e-5, atol=1e-6)
    assert _state(registry, "str", 1).status is Status.UNLOADING
    assert _state(registry, "str", 2).status is Status.READY
    old_runtime = v1.runtime
    del v1
    gc.collect()
    assert [(s.name, s.version) for s in registry.states()] == [("str", 2)]
    # The last holder gone, the old runtime was closed (frees its memory).
    with pytest.raises(Exception):  # noqa: B017 - a closed ORT session has no run
        old_runtime.run(LINE)


def test_corrupt_weights_fail_with_reason_and_old_version_serves(
        registry: ModelRegistry, repo: ModelRepository, tmp_path: Path) -> None:
    registry.get("str")
    version = _copy_v1(repo, tmp_path)
    weights = repo.manifest("str", version).weights_path
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="checksum mismatch"):
        registry.activate("str", version)
    failed = _state(registry, "str", version)
    assert failed.status is Status.FAILED and "checksum mismatch" in failed.reason
    assert registry.get("str").version == 1
    assert _state(registry, "str", 1).status is Status.READY
    assert registry.get("str").runtime.run(LINE).shape[0] == 1


def test_truncated_weights_fail(registry: ModelRegistry, repo: ModelRepository,
                                tmp_path: Path) -> None:
    version = _copy_v1(repo, tmp_path)
    weights = repo.manifest("str", version).weights_path
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelIntegrityError):
        registry.activate("str", version)
    assert _state(registry, "str", version).status is Status.FAILED
    assert registry.get("str").version == 1


def test_garbage_onnx_with_matching_checksum_is_a_runtime_load_error(
        registry: ModelRegistry, repo: ModelRepository, tmp_path: Path) -> None:
    registry.get("str")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf" * 100)
    version = repo.add_version("str", garbage).version
    repo.verify(repo.manifest("str", version))  # the checksum itself is fine
    with pytest.raises(ModelLoadError, match=f"version {version} failed to load"):
        registry.activate("str", version)
    state = _state(registry, "str", version)
    assert state.status is Status.FAILED and state.reason
    assert registry.get("str").version == 1


def test_apply_desired_state_with_canary(registry: ModelRegistry, repo: ModelRepository,
                                         tmp_path: Path) -> None:
    registry.get("str")
    _copy_v1(repo, tmp_path)
    errors = registry.apply(Desired(versions={"str": 1}, bids={"acme": {"str": 2}}))
    assert errors == {}
    with registry.for_bid("acme"):
        assert registry.get("str").version == 2
    with registry.for_bid("other"):
        assert registry.get("str").version == 1
    assert registry.get("str").version == 1
    v2 = _state(registry, "str", 2)
    assert v2.status is Status.READY and v2.bids == ("acme",) and not v2.active
    # Promote the canary globally and drop the pin: v1 is unloaded.
    assert registry.apply(Desired(versions={"str": 2})) == {}
    assert registry.get("str").version == 2
    gc.collect()
    assert [(s.version, s.status) for s in registry.states()] == [(2, Status.READY)]


def test_failed_canary_falls_back_to_active(registry: ModelRegistry, repo: ModelRepository,
                                            tmp_path: Path) -> None:
    registry.get("str")
    version = _copy_v1(repo, tmp_path)
    repo.manifest("str", version).weights_path.write_bytes(b"broken")
    errors = registry.apply(Desired(versions={"str": 1}, bids={"acme": {"str": version}}))
    assert list(errors) == [f"str v{version}"]
    with registry.for_bid("acme"):
        assert registry.get("str").version == 1
    assert _state(registry, "str", version).status is Status.FAILED


def test_unknown_model_in_desired_state_is_reported(registry: ModelRegistry) -> None:
    registry.get("str")
    errors = registry.apply(Desired(versions={"str": 9}))
    assert "not found" in errors["str v9"]
    assert registry.get("str").version == 1


def test_calls_during_swaps_always_get_a_ready_model(
        registry: ModelRegistry, repo: ModelRepository, tmp_path: Path) -> None:
    registry.get("str")
    _copy_v1(repo, tmp_path)
    seen: set[int] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                model = registry.get("str")
                model.runtime.run(LINE)
                seen.add(model.version)
            except BaseException as exc:  # noqa: BLE001 - any error fails the test
                errors.append(exc)
                return

    threads = [threading.Thread(target=serve) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for version in (2, 1, 2):
            registry.activate("str", version)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert seen <= {1, 2} and registry.get("str").version == 2


def test_a_first_get_during_a_load_of_the_same_version_does_not_deadlock(
        repo: ModelRepository, monkeypatch: pytest.MonkeyPatch) -> None:
    """get() held the registry lock across its first load, which waits for the
    version's key lock; a load() holding that key lock then waited for the
    registry lock. The build is slowed (a remote runtime waiting for its server
    does the same) so that the two meet."""
    import time

    import ocrq.models.registry as registry_module

    real = registry_module.build_runtime

    def slow(*args: object, **kwargs: object) -> object:
        time.sleep(0.5)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(registry_module, "build_runtime", slow)
    reg = ModelRegistry(repo, Settings(model_root=repo.root, threads=1))
    loader = threading.Thread(target=reg.load, args=("str", 1), daemon=True)
    got: list[int] = []
    getter = threading.Thread(target=lambda: got.append(reg.get("str").version), daemon=True)
    loader.start()
    time.sleep(0.1)  # the load holds the key lock and is building
    getter.start()
    loader.join(30)
    getter.join(30)
    assert not loader.is_alive() and not getter.is_alive(), "deadlocked"
    assert got == [1] and _state(reg, "str", 1).status is Status.READY
