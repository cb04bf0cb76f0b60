"""GET /metrics: Prometheus exposition of the web process.

What the web reads at scrape time (ocrq.observability.collectors.ServiceCollector:
queue lengths, consumers, model status, webhook backlog), plus what this process
counted itself (jobs it finished: cancellations) and its process metrics. Under a
forking server with PROMETHEUS_MULTIPROC_DIR set, the sum over its processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ocrq.observability.collectors import ServiceCollector
from ocrq.settings import Settings
from web import openapi
from web.extensions import services

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    registry: CollectorRegistry = current_app.extensions["ocrq_metrics"]
    # The text format the scraper asks for (Prometheus' classic text, or OpenMetrics).
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(registry), content_type=content_type)


class _ThisProcess(Collector):
    """This process's own metrics (the default registry: process, GC, jobs it ended)."""

    def collect(self) -> Iterator[Metric]:
        return REGISTRY.collect()


def openapi_paths() -> dict[str, Any]:
    return {"/metrics": {"get": {
        "summary": "Prometheus metrics: jobs, queues, consumers, model status, webhooks",
        "responses": {"200": {"description": "Prometheus text exposition format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}}}}}


def init_app(app: Flask) -> None:
    settings: Settings = app.config["OCRQ_SETTINGS"]
    with app.app_context():
        handles = services()
    registry = CollectorRegistry()
    registry.register(ServiceCollector(
        [settings.queue_gpu, settings.queue_cpu, settings.queue_webhooks],
        settings.broker_url, handles.redis, handles.db, cache_s=settings.metrics_cache_s))
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # a forking server: sum its processes
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    app.extensions["ocrq_metrics"] = registry
    app.register_blueprint(bp)
    openapi.extend(app, openapi_paths())
