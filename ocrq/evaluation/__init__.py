"""Evaluation of ocrq and peer engines on labelled data (``ocrq eval``, ``bench/``).

Submodules: ``metrics`` (pure scoring functions), ``dataset`` (manifest reader),
``peers`` (ocrq, RapidOCR and Tesseract behind one interface) and ``runner``.
Nothing heavy is imported here.
"""
