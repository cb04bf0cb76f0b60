"""ocrq: an OCR serving system (rotate -> detect -> recognize -> reorder)."""

__version__ = "0.1.0"
