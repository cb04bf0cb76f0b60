"""Prometheus metrics of ocrq (issue 15).

- :mod:`.metrics`: the metric definitions and the functions that count (a job
  finished, a stage task's time, an engine step's time and batch size).
- :mod:`.collectors`: read at scrape time: queue lengths, live consumers, model
  status and the webhook backlog (web process); GPU memory and utilisation per
  process (worker).
- :mod:`.worker`: a worker's wiring: multiprocess files, task signals, the
  /metrics server of its main process.

The web's ``/metrics`` view is ``web/metrics.py``.
"""
