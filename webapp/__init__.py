"""Application factory: config, extensions, blueprints, login gate and error pages."""
import logging
from urllib.parse import quote, urlsplit

from flask import Flask, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from webapp import config as config_module
from webapp.extensions import csrf, db, limiter, login_manager, migrate
from webapp.instance_secrets import encryption_key, private_dir, secret_key
from webapp.numbers import MAX_ID
from webapp.request_limits import BoundedRequest

log = logging.getLogger(__name__)

# Endpoints reachable without logging in; every other one requires a user. Stripe's webhook POSTs
# never reach Flask: the fast lane (webhooks/fastlane.py) answers them, so no CSRF or login applies.
PUBLIC_ENDPOINTS = {"auth.login", "auth.setup", "static", "health.healthz", "metrics.metrics"}
HSTS_SECONDS = 365 * 24 * 3600


def create_app(config=None) -> Flask:
    """Build a configured app; `config` (a mapping) wins over defaults and the environment."""
    cfg = config_module.build(config)
    app = Flask(__name__, instance_path=cfg["INSTANCE_PATH"],
                template_folder=str(config_module.ROOT / "templates"),
                static_folder=str(config_module.ROOT / "static"))
    app.request_class = BoundedRequest  # MAX_CONTENT_LENGTH holds for chunked bodies too (a 413, not a cut)
    app.config.update(cfg)
    quiet_stripe_sdk_logs()
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = secret_key(app.instance_path)
    if not app.config["ENCRYPTION_KEY"]:
        app.config["ENCRYPTION_KEY"] = encryption_key(app.instance_path)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        private_dir(config_module.INSTANCE)  # the database inside is then unreachable for other users
    register_extensions(app)
    app.url_map.converters["int"] = IdConverter
    register_blueprints(app)
    register_automations(app)
    register_hooks(app)
    register_gate(app)
    register_errors(app)
    register_template_globals(app)
    register_cli(app)
    from webapp.webhooks.fastlane import install as install_webhook_fast_lane
    install_webhook_fast_lane(app)  # the only route to POST /webhooks/stripe/<token>
    trust_proxies(app)  # outermost, so the fast lane and every view see the client's address and scheme
    return app


def trust_proxies(app: Flask) -> None:
    """Behind TRUSTED_PROXIES reverse proxies, take the client's address, scheme and host from the
    X-Forwarded-* headers they add (the limiter then counts clients, not the proxy); 0 trusts none."""
    hops = app.config["TRUSTED_PROXIES"]
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


class IdConverter(IntegerConverter):
    """`<int:…>` for every route, bounded by the largest value our id columns hold (INTEGER, 32 bits on
    PostgreSQL): a larger number in a URL is a 404 at routing, instead of an out-of-range error from
    the database (a 500)."""

    regex = r"[0-9]+"  # ASCII digits only: Werkzeug's \d+ also routes "/contacts/١٢" to contact 12

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ID, signed=False):  # noqa: A002
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_conn, _record):
    """WAL and a busy timeout let the web process and workers share one SQLite file."""
    if type(dbapi_conn).__module__.startswith("sqlite3"):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


def quiet_stripe_sdk_logs() -> None:
    """The SDK logs whole API responses at DEBUG, signing secrets included; never let them out."""
    logging.getLogger("stripe").setLevel(logging.WARNING)


def register_extensions(app: Flask) -> None:
    """Bind the unbound extensions to this app."""
    import webapp.models  # noqa: F401  (registers every table)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(config_module.ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to continue."
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["REDIS_URL"])
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    limiter.init_app(app)

    from webapp.auth.sessions import load_user

    login_manager.user_loader(load_user)  # a cookie's user only while its session version is current


def register_blueprints(app: Flask) -> None:
    """One blueprint per surface."""
    from webapp.auth.views import bp as auth_bp
    from webapp.health import bp as health_bp
    from webapp.metrics import LiveGauges
    from webapp.metrics import bp as metrics_bp
    from webapp.crm.views import bp as crm_bp
    from webapp.settings.views import bp as settings_bp
    from webapp.stripe_app import bp as apps_bp

    app.extensions["live_gauges"] = LiveGauges(app)
    for bp in (auth_bp, crm_bp, apps_bp, settings_bp, health_bp, metrics_bp):
        app.register_blueprint(bp)


def register_automations(app: Flask) -> None:
    """The Automations pages, and fired Stripe triggers starting runs (the listener only enqueues a job)."""
    from webapp.automations.dispatch import on_triggers_fired
    from webapp.automations.views import bp as automations_bp
    from webapp.stripe_sync.apply.triggers import on_fired

    app.register_blueprint(automations_bp)
    on_fired(on_triggers_fired)


def register_hooks(app: Flask) -> None:
    """The CRM imports nothing from Stripe, so Stripe plugs its field guard and contact-page parts into CRM hooks."""
    from webapp.stripe_app.contact_sections import register as register_contact_sections
    from webapp.stripe_sync.connect.field_guard import register as register_field_guard

    register_field_guard()
    register_contact_sections()


def register_gate(app: Flask) -> None:
    """Send visitors to first-run setup or login, so no view can forget to require a user."""
    from webapp.auth.service import has_users

    @app.before_request
    def refuse_nul_characters():
        """No database stores NUL in text (PostgreSQL refuses it): answer 400 before any view runs."""
        for values in (request.args, request.form):
            for key, value in values.items(multi=True):
                if "\x00" in key or "\x00" in value:
                    log.info("request with a NUL character refused on %s", request.path)
                    return render_template("_error_fragment.html", title="Invalid characters",
                                           message="The form contained a character that cannot be stored."), 400
        return None

    @app.before_request
    def require_login():
        """Every page but login, setup, static files and webhooks needs a logged-in user."""
        endpoint = request.endpoint or ""
        if endpoint in PUBLIC_ENDPOINTS:
            return None
        if not has_users():
            return redirect(url_for("auth.setup"))
        if not current_user.is_authenticated:
            if request.headers.get("HX-Request"):
                # A full redirect inside a fragment would paint the login page into a table cell.
                resp = app.response_class(status=401)
                resp.headers["HX-Redirect"] = url_for("auth.login")
                return resp
            return login_manager.unauthorized()
        return None

    @app.after_request
    def security_headers(resp):
        """Defence in depth for every page."""
        script_src = " ".join(filter(None, ("'self'", htmx_script_source(app.config["HTMX_URL"]))))
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if app.config["SESSION_COOKIE_SECURE"] and request.is_secure:
            # Served over HTTPS at an https PUBLIC_BASE_URL: browsers keep to HTTPS for a year.
            resp.headers.setdefault("Strict-Transport-Security", f"max-age={HSTS_SECONDS}")
        resp.headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; script-src {script_src}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'self'")
        return resp


PLAIN_ERRORS = {
    400: ("Bad request", "The request could not be understood."),
    404: ("Not found", "There is nothing at this address."),
    405: ("Not allowed", "This address does not accept that kind of request."),
    413: ("Too large", "The request was larger than this app accepts."),
    429: ("Too many attempts", "Too many attempts. Wait a minute and try again."),
}


def register_errors(app: Flask) -> None:
    """Friendly pages (or fragments, for htmx) instead of tracebacks."""

    def render_error(status, title, message):
        if request.headers.get("HX-Request"):
            return render_template("_error_fragment.html", title=title, message=message), status
        return render_template("error.html", title=title, message=message, status=status), status

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        log.warning("CSRF check failed on %s %s: %s", request.method, request.path, exc.description)
        return render_error(400, "Your session expired", "The form was missing its security token or it expired. "
                            "Reload the page and try again.")

    for status, (title, message) in PLAIN_ERRORS.items():
        app.register_error_handler(status, lambda _exc, s=status, t=title, m=message: render_error(s, t, m))

    @app.errorhandler(500)
    def server_error(_exc):
        db.session.rollback()
        return render_error(500, "Something went wrong", "The error was logged. Try again in a moment.")


def register_template_globals(app: Flask) -> None:
    """Values every template needs."""

    from webapp.stripe_sync.synclog import badge_count

    @app.context_processor
    def inject():
        # failed_syncs: called by the navigation only, so fragments and public pages never count.
        return {"htmx_url": app.config["HTMX_URL"],
                "htmx_sri": app.config["HTMX_SRI"] if app.config["HTMX_URL"] == config_module.HTMX_CDN_URL else None,
                "failed_syncs": badge_count}


def register_cli(app: Flask) -> None:
    """Shell commands: `flask --app app create-user`, `set-password`, `stripe-sweep`."""
    from webapp.auth.cli import create_user_command, set_password_command
    from webapp.stripe_sync.queue.sweep import sweep_command

    app.cli.add_command(create_user_command)
    app.cli.add_command(set_password_command)
    app.cli.add_command(sweep_command)


def htmx_script_source(url: str) -> str:
    """The CSP source for htmx: that one file (a CSP path), never its whole host; '' for a path on this app."""
    parts = urlsplit(url)
    if not parts.netloc:
        return ""  # 'self' covers it
    origin = parts.netloc.rpartition("@")[2]
    if parts.scheme:
        origin = f"{parts.scheme}://{origin}"
    # The query is no part of a CSP source; ';' and ',' would end it, so they stay percent-encoded.
    return origin + quote(parts.path, safe="/%:@!$&'()*+=~")
