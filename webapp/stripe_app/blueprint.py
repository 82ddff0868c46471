"""The Apps blueprint alone, so each view module adds its routes without importing another view module."""
from flask import Blueprint

bp = Blueprint("apps", __name__, url_prefix="/apps")
