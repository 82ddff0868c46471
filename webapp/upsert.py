"""INSERT … ON CONFLICT in the session's dialect: PostgreSQL and SQLite spell it alike, but each
dialect has its own construct."""
from sqlalchemy.dialects import postgresql, sqlite

from webapp.extensions import db


def dialect_insert(table):
    """An INSERT that can take `.on_conflict_do_nothing()` / `.on_conflict_do_update()`."""
    dialect = db.session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)
