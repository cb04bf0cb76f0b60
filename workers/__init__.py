"""Worker entry points per hardware class: ``python -m workers.cpu`` / ``workers.gpu``."""
