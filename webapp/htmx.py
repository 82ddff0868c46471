"""htmx answers shared by the view packages, so every modal and page redirect speaks the same headers."""
from flask import make_response, render_template


def modal(template: str, status: int = 200, **ctx):
    """Render a modal step into the shared <dialog>, whatever element asked for it."""
    resp = make_response(render_template(template, **ctx), status)
    resp.headers["HX-Retarget"] = "#modal"
    resp.headers["HX-Reswap"] = "innerHTML"
    return resp


def htmx_redirect(url: str):
    """Tell htmx to load a whole page (after a flow finishes)."""
    resp = make_response("", 204)
    resp.headers["HX-Redirect"] = url
    return resp
