"""WSGI entry point for gunicorn (run with --chdir bench/djstripe so these modules are top-level)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
application = get_wsgi_application()
