"""The page for people, at / and /ui: upload an image, watch the job, read the text.

One HTML page (web/templates/ui.html) with plain CSS and vanilla JavaScript modules
(web/static/ui/, served by Flask's own static route: no build step, no CDN). The
page is a client of the JSON API like any other: it submits to /v1/jobs, polls
/v1/jobs/<id>, and shows /v1/models and /v1/cluster. With OCRQ_AUTH=keys the person
pastes an API key, which the page keeps in sessionStorage and sends as a bearer
token; this module reads no key and decides nothing about tenancy.

The routes are not API endpoints: they are left out of the OpenAPI document.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, render_template
from flask.typing import ResponseReturnValue

from web import auth
from web.extensions import services

bp = Blueprint("ui", __name__, template_folder="templates")

# Everything the page loads comes from this origin; no inline script or style, so
# text that slipped into the markup could not run even if it were parsed as HTML.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
       "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")


@bp.get("/")
@bp.get("/ui")
def page() -> ResponseReturnValue:
    html = render_template("ui.html", keys_required=auth.enabled(),
                           max_upload_bytes=services().settings.max_upload_bytes)
    resp = Response(html, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
