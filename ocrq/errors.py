"""Error types shared by the library, the CLI, the workers and the API.

Each carries a stable machine-readable ``code`` so the API can turn it into a
4xx/5xx JSON body without string matching.
"""

from __future__ import annotations


class OcrqError(Exception):
    code = "ocrq_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, **self.details}


class InvalidImage(OcrqError):
    """The input is not a decodable image within the limits."""

    code = "invalid_image"


class ImageTooLarge(InvalidImage):
    code = "image_too_large"


class UnknownModel(OcrqError):
    code = "unknown_model"


class ModelNotFound(OcrqError):
    """A model or version is not present in the repository."""

    code = "model_not_found"


class ModelIntegrityError(OcrqError):
    """A weight file is missing or its sha256 does not match the manifest."""

    code = "model_integrity"


class ModelLoadError(OcrqError):
    code = "model_load_failed"


class UnknownRuntime(OcrqError):
    code = "unknown_runtime"


class BackendUnavailable(OcrqError):
    """A backend a step needs is down for now (the GPU worker's tensor server killed or
    restarting): the step gives its message back to be tried again later instead of
    failing its job or spending its time limit waiting (ocrq/pipeline/retry.py)."""

    code = "backend_unavailable"

    def __init__(self, message: str, *, during_call: bool = False, **details: object) -> None:
        super().__init__(message, **details)
        # True: the backend died while serving this step's request (the step may be
        # what kills it, a poison page): the give-back counts as a lost delivery.
        self.during_call = during_call
