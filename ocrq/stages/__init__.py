"""The OCR stages: numpy in, numpy/dataclasses out, batch-first, no I/O, no globals."""
