"""WSGI entry point: `flask --app app ...` and `gunicorn app:app`."""
from webapp import create_app
from webapp.gc_pauses import freeze_startup_objects

app = create_app()
freeze_startup_objects()
