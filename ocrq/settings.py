"""The one place that reads ``OCRQ_*`` environment variables.

Everything else receives a :class:`Settings` instance; nothing reads the
environment at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# The XDG-correct per-user data directory on Linux/macOS/Windows.
import platformdirs

AUTH_MODES = ("keys", "none")  # OCRQ_AUTH
LOG_FORMATS = ("json", "text")  # OCRQ_LOG_FORMAT


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("ocrq", appauthor=False))


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    # --- models and runtime -------------------------------------------------
    model_root: Path = field(default_factory=lambda: _default_data_dir() / "models")
    runtime: str = "onnxruntime"  # onnxruntime | torch
    device: str = "cpu"  # cpu | cuda | cuda:N
    threads: int = 0  # intra-op threads per model session; 0 = all cores
    # ONNX Runtime on CPU: copies of the recogniser and line-direction model that
    # split each batch's rows (0 = min(threads, 4); 1 = one session with all threads).
    cpu_copies: int = 0
    fp16: bool = False  # torch runtime on CUDA only
    graph_rewrite: bool = True  # ONNX Runtime: fuse hard-swish, fold conv affine (graph_opt)
    torch_compile: bool = False  # torch runtime: torch.compile(dynamic=True) at load
    # Torch on CUDA (issue 11): every pass at a bucket shape ("auto": on CUDA only;
    # "on" also on CPU, for tests; "off"), warmed at load; a CUDA graph replayed per
    # bucket; how cuDNN picks kernels ("on" heuristics, "benchmark", "off").
    shape_buckets: str = "auto"
    cuda_graphs: bool = True
    # "off" by default: on an H200, cuDNN's per-shape choice cost 1.3-2.4 s per new
    # shape (fp16) for no faster kernels than torch's own + batched GEMMs (BENCHMARKS.md).
    cudnn: str = "off"
    # The recogniser's output on a GPU: its top-k classes per step (stages/ctc.py), not
    # all 6,625 (1 MB a line off the device); 0 = the full output. k >= the lexicon's
    # runner-ups + 1 (5) reads the same text.
    ctc_topk: int = 8
    # Concurrent calls of "str"/"dir" merged into one forward pass (issue 5): wait up
    # to this long for companions. <0: the role's default (GPU worker 3 ms, else off).
    batch_wait_ms: float = -1.0
    batch_max: int = 64  # rows per merged forward pass
    gpu_worker_threads: int = 4  # tasks a GPU worker runs at once (threads, one process)
    # GPU worker (issue 11): "server" = one tensor server process does the forward
    # passes, prefork feeder processes (-c, default all cores) do the rest and reach
    # it over a Unix socket (runtime "remote"); "inprocess" = the old single process
    # running -c tasks on threads (kept for comparison).
    gpu_worker_mode: str = "server"
    tensor_socket: str = ""  # the tensor server's socket; "": the GPU worker picks one
    tensor_timeout_s: float = 60.0  # one request to the tensor server, sent to answered
    tensor_max_bytes: int = 512 * 1024 * 1024  # one request's array, at most
    tensor_max_models: int = 16  # on the server; unreferenced ones beyond it unloaded (LRU)
    # The tensor server gone (killed, restarting; issue 14): a model call waits this
    # long for it to come back (the GPU worker caps it at a third of the soft time
    # limit), then its step gives its message back (below) instead of spending its
    # time limit. Restart delays of a server that keeps dying: seconds, the last repeats.
    tensor_wait_s: float = 10.0
    tensor_restart_backoff_s: str = "1,2,5,10,30"
    # A step whose backend is unavailable (ocrq.errors.BackendUnavailable) goes back
    # to its queue, tried again after giveback_backoff_s (doubling, at most
    # giveback_backoff_max_s), not counted as a lost delivery; after giveback_attempts
    # tries or giveback_deadline_s from its first give-back, its job fails with the
    # backend's code (tensor_server_down).
    giveback_backoff_s: float = 2.0
    giveback_backoff_max_s: float = 30.0
    giveback_attempts: int = 40
    giveback_deadline_s: float = 600.0
    # Languages (wordfreq codes, comma-separated) whose common words guide the
    # correction of look-alike glyphs in recognised words; "none" turns it off.
    lexicon: str = "en"
    # A word whose least sure glyph the recogniser gave less than this probability
    # is read again by a second recogniser (PP-OCRv6 small) and the two readings
    # settled (stages/fusion.py); 0 turns that off, 1 reads every word again.
    # At 0.9 a CPU reads ~22% fewer pages/s than without (BENCHMARKS.md).
    second_reading: float = 0.9

    # --- input limits -------------------------------------------------------
    max_image_pixels: int = 60_000_000  # refuse before decoding (decompression bombs)
    max_image_side: int = 20_000
    max_upload_bytes: int = 32 * 1024 * 1024
    # Documents (PDF, multi-page TIFF): pages per job, and the DPI a PDF page is
    # rendered at (the pixel limits above apply to each page at this DPI).
    max_pages: int = 50
    pdf_dpi: int = 200

    # --- service ------------------------------------------------------------
    broker_url: str = "redis://localhost:6379/0"
    redis_url: str = "redis://localhost:6379/1"
    database_url: str = field(
        default_factory=lambda: f"sqlite:///{_default_data_dir() / 'ocrq.sqlite3'}"
    )
    plans_file: Path | None = None  # None: the plans bundled with ocrq
    queue_gpu: str = "gpu"
    queue_cpu: str = "cpu"
    queue_webhooks: str = "webhooks"
    image_ttl_s: int = 3600
    result_cache_ttl_s: int = 3600
    result_retention_days: int = 30
    recognize_batch_lines: int = 64  # lines per recognition task: one task for most receipts
    # Workers that send webhooks refuse to start with this default unless
    # allow_default_secret; `ocrq serve` generates one for the local run instead.
    webhook_secret: str = "change-me"
    # Per-business webhook secrets, "bid=secret,bid2=secret2"; other bids sign with
    # webhook_secret.
    webhook_secrets: str = ""
    allow_default_secret: bool = False  # explicit opt-in for throw-away/test setups
    # Bearer token for the model-changing endpoints (activate, rollback); empty:
    # those endpoints answer 403 and models change only through `ocrq models`.
    admin_token: str = ""
    # Who may use /v1/jobs (issue 12). "keys": every call needs "Authorization: Bearer
    # <API key>" (`ocrq keys create BID`); the key's business is the job's bid, and
    # another business's jobs are not found. "none": no keys, the bid is whatever the
    # request names (single-tenant, local use; warned about at start-up). The default
    # is "none" so that an upgraded deployment keeps answering its clients until keys
    # are issued; a shared deployment sets OCRQ_AUTH=keys.
    auth: str = "none"
    # A web process remembers a key it checked for this long, so that polling does
    # not query the database on every call; a revoked key is refused within this
    # many seconds. 0: every call looks its key up.
    auth_cache_s: float = 5.0
    webhook_max_attempts: int = 8
    webhook_backoff_s: float = 2.0  # delay before the 2nd attempt; doubles each time
    webhook_backoff_max_s: float = 600.0
    # Wall-clock limit on one webhook attempt as a whole (lookup, connect, send, answer).
    webhook_timeout_s: float = 10.0
    # A webhook that gave up after webhook_max_attempts (its receiver down longer than
    # the retry window) is sent again, from attempt 1, this long after giving up, up
    # to webhook_rounds rounds in all (issue 14).
    webhook_redrive_after_s: int = 1800
    webhook_rounds: int = 3
    # image_url: wall-clock limit on the whole download (lookups, redirects, body).
    fetch_deadline_s: float = 15.0
    task_time_limit_s: int = 300  # hard limit per stage task (soft limit 30 s earlier)
    # Redis gives a message that a vanished worker took (node lost, whole worker
    # killed) to another worker after this long. 0: 2 x the longest a message may
    # rightly stay unacknowledged (task time limit, webhook backoff) + 60 s.
    visibility_timeout_s: int = 0
    # A stage task whose worker process died under it (killed: out of memory, say)
    # is redelivered; it runs at most this many times, then the job fails.
    max_deliveries: int = 3
    allow_private_urls: bool = False
    worker_name: str = ""
    # --- cluster: heartbeats, routing, model control (issue 4) -------------
    worker_group: str = ""  # group in the static layout; "" = the first queue consumed
    heartbeat_ttl_s: int = 15  # a worker silent this long is gone from the routing table
    model_reconcile_s: int = 60  # workers re-read the desired versions (missed broadcasts)
    # --- metrics (issue 15) ---------------------------------------------------
    # A worker's main process serves Prometheus /metrics on this port, summing its
    # pool processes (prefork children write to files in metrics_dir); 0 = off.
    metrics_port: int = 0
    metrics_host: str = "0.0.0.0"  # in a container the scraper is on another host
    # The multiprocess files of one worker (emptied when it starts, so one directory
    # per worker); None: a fresh temporary directory.
    metrics_dir: Path | None = None
    # Web /metrics: queue lengths, heartbeats and the webhook backlog are read at
    # most this often, however many scrapers ask.
    metrics_cache_s: float = 5.0
    # --- sweeper: nothing stuck, nothing growing (issue 14) ----------------
    # A job not finished this long after it was created is failed (deadline_exceeded).
    # 0: max(3600, 6 x task time limit + visibility timeout): well above a job's
    # steps each running to its limit, plus one redelivery of a lost message.
    job_deadline_s: int = 0
    # How often (cluster-wide, one worker at a time) the sweep runs; 0 turns it off.
    sweep_interval_s: int = 60
    # A job still queued this long with no task ever enqueued was abandoned by its web
    # process (it died between the row and the enqueue): re-driven, or failed (lost)
    # when its image is gone. Above the longest a submit can take from its row's
    # timestamp to its Redis round trip (a group-commit wait of 30 s, a reconnect of
    # 10 s and the INSERT's 60 s read timeout, Redis' 10 s connect and 10 s I/O, and a
    # margin for two hosts' clocks): a slow submit is never failed under its web
    # thread, which would then answer 202.
    redrive_after_s: int = 150
    purge_interval_s: int = 3600  # the sweep purges past the retention this often; 0: off
    purge_batch: int = 1000  # jobs deleted per statement and transaction
    # --- logs and bad cases (issue 15) ----------------------------------------
    # Web and worker log lines: "json" (one object per line, with the job's id, bid,
    # tid and stage) or "text" (one readable line, for a person at a terminal).
    log_format: str = "json"
    # A succeeded page whose mean line confidence is below this is kept as a bad
    # case (plans.yaml badcase_confidence overrides it per plan; 0: off). 0.85 is
    # under every page of the dev receipts (lowest mean 0.896, BENCHMARKS.md): only
    # pages the models read worse than a faded receipt are kept, not the usual ones.
    badcase_confidence: float = 0.85
    badcase_retention_days: int = 30  # bad cases older than this go with the purge
    # A bad case keeps its image up to this size (in the database, which every
    # worker shares; MariaDB's default packet limit is 16 MiB); larger: no image.
    badcase_max_image_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.auth not in AUTH_MODES:  # a typo must not silently mean "no keys"
            raise ValueError(f"OCRQ_AUTH must be one of {', '.join(AUTH_MODES)}, "
                             f"not {self.auth!r}")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"OCRQ_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, "
                             f"not {self.log_format!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``OCRQ_<FIELD>`` variables (upper-case field names)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"OCRQ_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.type, raw)
        values.update(overrides)
        return cls(**values)

    @property
    def visibility_timeout(self) -> int:
        if self.visibility_timeout_s > 0:
            return self.visibility_timeout_s
        return 2 * int(max(self.task_time_limit_s, self.webhook_backoff_max_s)) + 60

    @property
    def job_deadline(self) -> int:
        if self.job_deadline_s > 0:
            return self.job_deadline_s
        return max(3600, 6 * self.task_time_limit_s + self.visibility_timeout)

    @property
    def lexicon_languages(self) -> tuple[str, ...]:
        langs = [x.strip() for x in self.lexicon.split(",") if x.strip()]
        return () if langs in ([], ["none"]) else tuple(langs)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _convert(annotation: Any, raw: str) -> Any:
    kind = str(annotation)
    if kind.startswith("Path"):
        return Path(raw).expanduser()
    if kind == "bool":
        return _bool(raw)
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    return raw
