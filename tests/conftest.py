"""Shared pytest fixtures. Helpers append their own; keep each fixture small."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures import INVOICE_LINES, render_page


@pytest.fixture(scope="session")
def invoice_page() -> np.ndarray:
    """A rendered invoice-like page (BGR uint8); treat as read-only."""
    page = render_page(INVOICE_LINES)
    page.flags.writeable = False  # shared across the session: fail loudly on mutation
    return page


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory):
    """A model repository materialised from the wheels, shared by the session."""
    from ocrq.models.repository import ModelRepository

    root = tmp_path_factory.mktemp("models")
    ModelRepository(root).ensure_defaults()
    return root


@pytest.fixture(scope="session")
def engine(model_root):
    """One in-process engine (ONNX Runtime, CPU) for the session."""
    from ocrq.engine import Engine
    from ocrq.settings import Settings

    return Engine.from_settings(Settings(model_root=model_root, threads=0))
