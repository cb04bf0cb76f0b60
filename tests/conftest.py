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
