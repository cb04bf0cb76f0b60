"""The page for people (web/ui.py) through Flask's test client: served at / and /ui
with its assets from the app itself, labelled controls, no HTML sinks in its scripts,
the API key field open when OCRQ_AUTH=keys, and the package shipping its files.
The page itself runs in Chromium in tests/integration/test_ui.py."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask

from ocrq.settings import Settings
from tests.conftest import assert_api_error
from web import create_app

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
SCRIPTS = sorted((WEB / "static").rglob("*.js"))


class Page(HTMLParser):
    """The tags of the page: ids, labels' targets, assets, form controls."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.labelled: set[str] = set()
        self.controls: list[str] = []
        self.assets: list[str] = []
        self.open_details: set[str] = set()
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "label" and a.get("for"):
            self.labelled.add(str(a["for"]))
        if tag in ("input", "select", "textarea", "progress"):
            self.controls.append(str(a.get("id")))
        if tag == "link" and a.get("href"):
            self.assets.append(str(a["href"]))
        if tag == "script":
            assert a.get("src"), "no inline script (the CSP forbids it)"
            self.assets.append(str(a["src"]))
        if tag == "details" and "open" in a:
            self.open_details.add(str(a.get("id")))


def page(app: Flask, path: str = "/") -> Page:
    resp = app.test_client().get(path)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    return Page(resp.get_data(as_text=True))


@pytest.mark.parametrize("path", ["/", "/ui"])
def test_the_page_is_served_with_its_assets(web_app: Flask, path: str) -> None:
    found = page(web_app, path)
    client = web_app.test_client()
    assets = list(found.assets)
    for url in assets:  # the page's assets, then what the scripts import, from this app
        resp = client.get(url)
        assert resp.status_code == 200, url
        kind = {"css": "text/css", "js": "text/javascript",
                "svg": "image/svg+xml"}[url.rsplit(".", 1)[1]]
        assert resp.mimetype == kind, (url, resp.mimetype)
        if url.endswith(".js"):
            text = resp.get_data(as_text=True)
            base = url.rsplit("/", 1)[0]
            assets += [f"{base}/{m}" for m in re.findall(r'from "\./([\w.]+)"', text)
                       if f"{base}/{m}" not in assets]
        resp.close()
    assert {u.rsplit("/", 1)[1] for u in assets} == {
        p.name for p in (WEB / "static").rglob("*") if p.is_file()}  # and nothing unused


def test_every_control_has_a_label_and_ids_are_unique(web_app: Flask) -> None:
    found = page(web_app)
    assert len(found.ids) == len(set(found.ids))
    assert [c for c in found.controls if c not in found.labelled] == []
    assert found.labelled <= set(found.ids)
    # Every element the scripts look up by id is on the page.
    wanted = {m for p in SCRIPTS for m in re.findall(r'\$\("([\w-]+)"\)', p.read_text())}
    assert wanted and wanted - set(found.ids) == set()


def test_the_key_field_is_open_when_keys_are_required(web_settings: Settings) -> None:
    assert "key-box" not in page(create_app(web_settings)).open_details
    keyed = create_app(web_settings.with_(auth="keys"))
    assert "key-box" in page(keyed).open_details
    # The page needs no key itself; the API still wants one.
    assert_api_error(keyed.test_client().get("/v1/jobs/nope"), 401, "unauthorized")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_never_parse_text_as_html(script: Path) -> None:
    text = script.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                 "eval(", "new Function", "setAttribute(\"on"):
        assert sink not in text, f"{script.name} uses {sink}: use textContent"


def test_nothing_is_loaded_from_elsewhere() -> None:
    files = [p for d in ("static", "templates") for p in (WEB / d).rglob("*") if p.is_file()]
    for path in files:
        text = path.read_text().replace("http://www.w3.org/2000/svg", "")  # a name, not a URL
        assert not re.search(r"(https?:)?//[\w.-]+\.\w", text), path


def test_the_page_is_not_an_api_route(web_app: Flask) -> None:
    doc = web_app.test_client().get("/v1/openapi.json").get_json()
    assert "/" not in doc["paths"] and "/ui" not in doc["paths"]
    resp = web_app.test_client().post("/")  # errors stay the API's JSON
    assert_api_error(resp, 405, "method_not_allowed")


def test_the_package_ships_the_page() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["web"]
    files = [p.relative_to(WEB).as_posix() for d in ("templates", "static")
             for p in (WEB / d).rglob("*") if p.is_file()]
    assert files and [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)] == []
