"""The htmx answers every view package shares: a modal step and a whole-page redirect."""
from flask import Flask
from jinja2 import DictLoader

from webapp.htmx import htmx_redirect, modal


def _app():
    app = Flask(__name__)
    app.jinja_loader = DictLoader({"step.html": "<p>{{ name }}</p>"})
    return app


def test_modal_renders_into_the_shared_dialog_with_its_status():
    with _app().test_request_context():
        resp = modal("step.html", 422, name="<b>")
    assert resp.status_code == 422
    assert resp.headers["HX-Retarget"] == "#modal" and resp.headers["HX-Reswap"] == "innerHTML"
    assert resp.get_data(as_text=True) == "<p>&lt;b&gt;</p>"


def test_htmx_redirect_is_an_empty_204_that_htmx_follows():
    with _app().test_request_context():
        resp = htmx_redirect("/apps/stripe")
    assert resp.status_code == 204 and resp.get_data() == b""
    assert resp.headers["HX-Redirect"] == "/apps/stripe"
