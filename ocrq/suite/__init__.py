"""ocrq's own plug-ins, declared through the same ``ocrq.plugins`` entry points a
third-party package uses (pyproject.toml). They see ocrq only through
``ocrq.plugins``: the page, its OCR and their models come in a ``StageInput``.
"""
