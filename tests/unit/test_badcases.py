"""Bad cases without workers: what work.finish keeps (real SQLite + Redis), per-plan
thresholds, the retention purge, `ocrq badcases list|export` and GET /v1/badcases."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import update

from ocrq.cli import main
from ocrq.evaluation.dataset import load_manifest
from ocrq.pipeline import work
from ocrq.pipeline.app import create_celery_app
from ocrq.pipeline.badcases import page_confidence
from ocrq.pipeline.state import Services
from ocrq.pipeline.sweeper import sweep
from ocrq.plans import InvalidPlans, Plans
from ocrq.settings import Settings
from ocrq.storage import Badcase, Database, JobStatus, keys
from ocrq.storage import badcases as store
from ocrq.storage import jobs as jobs_store
from ocrq.storage.models import utcnow
from tests.conftest import assert_api_error
from tests.fixtures import encode, render_page
from web import create_app

PLANS = """default_bid: default
tids:
  ocr: {steps: [detect, recognize, reorder]}
  strict: {badcase_confidence: 0.99, steps: [detect, recognize, reorder]}
  lenient: {badcase_confidence: 0, steps: [detect, recognize, reorder]}
bids:
  default: {}
  acme: {ocr: {badcase_confidence: 0.95}}
  globex: {}
"""


@pytest.fixture
def services(web_settings: Settings, tmp_path: Path) -> Services:
    plans = tmp_path / "plans.yaml"
    plans.write_text(PLANS)
    return Services(web_settings.with_(plans_file=plans, badcase_confidence=0.5,
                                       badcase_max_image_bytes=50_000))


def _page(*confidences: float) -> dict[str, Any]:
    box = [[1.0, 2.0], [30.0, 2.0], [30.0, 12.0], [1.0, 12.0]]
    return {"image": "p.png", "width": 40, "height": 20, "rotation": 0, "models": {"rec": 1},
            "timings_ms": {}, "lines": [{"text": f"w{i}", "confidence": c, "polygon": box,
                                         "order": i, "block": 0, "line": i}
                                        for i, c in enumerate(confidences)]}


def _job(services: Services, bid: str, tid: str, data: bytes, name: str = "p.png") -> str:
    job_id = f"{bid}{tid}{len(data)}{utcnow().timestamp():.6f}".replace(".", "")[:32]
    job, _ = jobs_store.create_job(services.db, id=job_id, bid=bid, tid=tid, status="running",
                                   image_name=name, width=40, height=20, batches_done=0)
    services.blobs.put(job_id, data)
    services.cache.put(job_id, work.flat_from_row(job, None))
    return job_id


def test_finish_keeps_failed_and_low_confidence_jobs(services: Services) -> None:
    png = encode(render_page(["Bad case"]), "png")
    failed = _job(services, "globex", "ocr", png)
    assert work.finish(services, failed, JobStatus.FAILED,
                       error={"code": "image_too_large", "message": "too wide"})
    low = _job(services, "acme", "ocr", png)  # acme's override: 0.95
    assert work.finish(services, low, JobStatus.SUCCEEDED, document=_page(0.9, 0.96))
    fine = _job(services, "globex", "ocr", png)  # global 0.5
    assert work.finish(services, fine, JobStatus.SUCCEEDED, document=_page(0.9, 0.96))
    off = _job(services, "globex", "lenient", png)  # 0: the plan keeps none
    assert work.finish(services, off, JobStatus.SUCCEEDED, document=_page(0.1))
    blank = _job(services, "globex", "strict", png)  # no lines: no confidence
    assert work.finish(services, blank, JobStatus.SUCCEEDED, document=_page())
    cancelled = _job(services, "globex", "ocr", png)
    assert work.finish(services, cancelled, JobStatus.CANCELLED, error={"code": "cancelled"})
    rows = {r.job_id: r for r in store.listing(services.db, limit=100)}
    assert set(rows) == {failed, low}
    f, lo = rows[failed], rows[low]
    assert (f.reason, f.code, f.bid, f.tid, f.image_bytes) == ("failed", "image_too_large",
                                                               "globex", "ocr", len(png))
    assert f.error == {"code": "image_too_large", "message": "too wide"}
    assert (lo.reason, lo.confidence, lo.threshold) == ("low_confidence", 0.93, 0.95)
    assert lo.result == _page(0.9, 0.96) and lo.image_name == "p.png"
    assert [c.image for c in store.with_images(services.db, page=1)] == [png, png]
    # The image went from Redis after being kept, as for every finished job.
    assert not services.redis.exists(services.blobs.key_for(low))
    # A job ends once: a second finish keeps nothing more.
    assert not work.finish(services, low, JobStatus.FAILED, error={"code": "x"})
    assert len(store.listing(services.db)) == 2


def test_image_over_the_limit_or_gone_is_not_kept(services: Services) -> None:
    big = _job(services, "globex", "ocr", b"x" * 50_001)
    gone = _job(services, "globex", "ocr", b"y" * 10)
    services.blobs.delete(services.blobs.key_for(gone))
    for job_id in (big, gone):
        assert work.finish(services, job_id, JobStatus.FAILED, error={"code": "time_limit"})
    rows = {r.job_id: r for r in store.with_images(services.db)}
    assert (rows[big].image, rows[big].image_bytes) == (None, 50_001)
    assert (rows[gone].image, rows[gone].image_bytes) == (None, 0)


def test_plan_thresholds() -> None:
    p = Plans(yaml.safe_load(PLANS))
    assert p.resolve("acme", "ocr").badcase_confidence == 0.95
    assert p.resolve("globex", "ocr").badcase_confidence is None
    assert p.resolve("acme", "strict").badcase_confidence == 0.99
    assert p.resolve(None, "lenient").badcase_confidence == 0.0
    for bad in ("1.5", "-0.1", "yes", "'high'"):
        with pytest.raises(InvalidPlans, match="badcase_confidence must be a number"):
            Plans(yaml.safe_load(PLANS.replace("0.99", bad)))
    assert page_confidence(_page(0.5, 1.0)) == 0.75 and page_confidence(None) is None


def test_the_purge_removes_old_bad_cases(services: Services) -> None:
    old, new = (_job(services, "globex", "ocr", b"i") for _ in range(2))
    for job_id in (old, new):
        work.finish(services, job_id, JobStatus.FAILED, error={"code": "lost"})
    with services.db.session() as s:
        s.execute(update(Badcase).where(Badcase.job_id == old)
                  .values(created_at=utcnow() - timedelta(days=31)))
    done = sweep(services, create_celery_app(services.settings), purge=True)
    assert done.badcases_purged == 1
    assert [r.job_id for r in store.listing(services.db)] == [new]
    # By hand: `ocrq badcases purge --days 0` takes what is left.
    env = {"OCRQ_DATABASE_URL": services.settings.database_url}
    out = CliRunner().invoke(main, ["badcases", "purge", "--days", "0"], env=env)
    assert out.exit_code == 0 and "purged 1 bad case(s)" in out.output, out.output
    assert store.listing(services.db) == []


def test_cli_list_and_export_in_the_eval_format(services: Services, tmp_path: Path) -> None:
    png = encode(render_page(["Export me"]), "png")
    low = _job(services, "acme", "ocr", png, name="scan 1.PNG")
    work.finish(services, low, JobStatus.SUCCEEDED, document=_page(0.2))
    failed = _job(services, "globex", "ocr", png, name="noext")
    work.finish(services, failed, JobStatus.FAILED, error={"code": "invalid_image"})
    env = {"OCRQ_DATABASE_URL": services.settings.database_url}
    runner = CliRunner()
    listed = runner.invoke(main, ["badcases", "list", "--bid", "acme"], env=env)
    assert listed.exit_code == 0, listed.output
    assert low in listed.output and failed not in listed.output
    assert "0.200 < 0.950" in listed.output
    as_json = runner.invoke(main, ["badcases", "list", "--json", "--limit", "1"], env=env)
    assert [json.loads(x)["job_id"] for x in as_json.stdout.splitlines()] == [failed]
    out = tmp_path / "export"
    done = runner.invoke(main, ["badcases", "export", str(out)], env=env)
    assert done.exit_code == 0, done.output
    samples = {s.name: s for s in load_manifest(out)}
    assert set(samples) == {f"{low}.png", f"{failed}.img"}
    assert samples[f"{low}.png"].truth() == [("w0", _page(0.2)["lines"][0]["polygon"])]
    assert samples[f"{failed}.img"].lines == []
    assert samples[f"{low}.png"].load().shape[:2] == render_page(["Export me"]).shape[:2]
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert {(r["reason"], r["draft"], r["original_name"]) for r in rows} == {
        ("low_confidence", True, "scan 1.PNG"), ("failed", True, "noext")}
    since = runner.invoke(main, ["badcases", "export", str(tmp_path / "none"), "--since",
                                 (utcnow() + timedelta(days=1)).strftime("%Y-%m-%d")], env=env)
    assert "exported 0 bad case(s)" in since.output
    assert load_manifest(tmp_path / "none") == []


def _client(services: Services) -> tuple[Flask, dict[str, str]]:
    app = create_app(services.settings.with_(auth="keys"))
    tokens = {bid: keys.create_key(services.db, bid)[1] for bid in ("acme", "globex")}
    return app, tokens


def test_api_shows_each_business_only_its_own(services: Services) -> None:
    png = encode(render_page(["Mine"]), "png")
    mine = [_job(services, "acme", "ocr", png) for _ in range(3)]
    for job_id in mine:
        work.finish(services, job_id, JobStatus.FAILED, error={"code": "time_limit"})
    theirs = _job(services, "globex", "ocr", png)
    work.finish(services, theirs, JobStatus.FAILED, error={"code": "time_limit"})
    app, tokens = _client(services)
    c = app.test_client()

    def get(path: str, bid: str = "acme") -> Any:
        return c.get(path, headers={"Authorization": f"Bearer {tokens[bid]}"})

    first = get("/v1/badcases?limit=2").get_json()
    assert [b["job_id"] for b in first["badcases"]] == mine[:0:-1]
    rest = get(f"/v1/badcases?limit=2&before={first['next']}").get_json()
    assert [b["job_id"] for b in rest["badcases"]] == mine[:1] and rest["next"] is None
    assert [b["job_id"] for b in get("/v1/badcases", "globex").get_json()["badcases"]] == [
        theirs]
    case = get("/v1/badcases", "globex").get_json()["badcases"][0]
    assert case["image"]["bytes"] == len(png) and case["code"] == "time_limit"
    img = get(f"/v1/badcases/{case['id']}/image", "globex")
    assert img.status_code == 200 and img.data == png
    assert_api_error(get(f"/v1/badcases/{case['id']}/image"), 404, "not_found")
    assert_api_error(get("/v1/badcases?bid=globex"), 400, "bid_mismatch")
    assert_api_error(c.get("/v1/badcases"), 401, "unauthorized")
    for bad in ("limit=0", "limit=101", "limit=x", "before=-1", "since=yesterday"):
        assert_api_error(get(f"/v1/badcases?{bad}"), 400, "bad_request")
    assert get("/v1/badcases?since=2020-01-01T00:00:00Z").get_json()["badcases"]
    assert not get("/v1/badcases?since=2999-01-01").get_json()["badcases"]
    assert "/v1/badcases" in c.get("/v1/openapi.json").get_json()["paths"]


@pytest.mark.services
def test_mariadb_keeps_images_past_a_plain_blob() -> None:
    """MariaDB's BLOB stops at 64 KiB: the column is a LONGBLOB there (models.Blob)."""
    from tests.databases import throwaway_mariadb

    image = bytes(range(256)) * 1024  # 256 KiB
    with throwaway_mariadb() as url:
        db = Database(url)
        try:
            assert store.record(db, job_id="j" * 32, bid="acme", tid="ocr", reason="failed",
                                code="x", image_name="a.png", width=1, height=1, image=image,
                                image_bytes=len(image), result={"lines": []})
            assert not store.record(db, job_id="j" * 32, bid="acme", tid="ocr",
                                    reason="failed", image_name="a.png", width=1, height=1)
            (row,) = store.with_images(db)
            assert row.image == image and row.result == {"lines": []}
            assert store.image_of(db, row.id) == ("acme", image, "j" * 32 + ".png")
        finally:
            db.dispose()
