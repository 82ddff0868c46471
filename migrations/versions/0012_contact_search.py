"""Contact search by any part of email or name (SQLite FTS5 trigram table / PostgreSQL pg_trgm
indexes), and the contacts list's lifetime value, subscription and last payment columns, filled for
the contacts that already have Stripe data.

On SQLite, `contacts_fts` is an external-content FTS5 table over contacts.email_lower and name_key:
it stores only the trigram index, and triggers keep it in step with every insert, delete and
change of those two columns (whoever writes the row). crm/search.py queries it.

Revision ID: 0012_contact_search
Revises: 0011_customer_identity
Create Date: 2026-11-30 21:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0012_contact_search'
down_revision = '0011_customer_identity'
branch_labels = None
depends_on = None

SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE contacts_fts USING fts5(email_lower, name_key, content='contacts', "
    "content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER contacts_fts_insert AFTER INSERT ON contacts BEGIN "
    "INSERT INTO contacts_fts(rowid, email_lower, name_key) VALUES (new.id, new.email_lower, new.name_key); END",
    "CREATE TRIGGER contacts_fts_delete AFTER DELETE ON contacts BEGIN "
    "INSERT INTO contacts_fts(contacts_fts, rowid, email_lower, name_key) "
    "VALUES ('delete', old.id, old.email_lower, old.name_key); END",
    "CREATE TRIGGER contacts_fts_update AFTER UPDATE OF email_lower, name_key ON contacts BEGIN "
    "INSERT INTO contacts_fts(contacts_fts, rowid, email_lower, name_key) "
    "VALUES ('delete', old.id, old.email_lower, old.name_key); "
    "INSERT INTO contacts_fts(rowid, email_lower, name_key) VALUES (new.id, new.email_lower, new.name_key); END",
    "INSERT INTO contacts_fts(contacts_fts) VALUES ('rebuild')",
]
POSTGRES_SEARCH = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    # COLLATE "C": crm/search.py compares in "C", where LIKE runs about twice as fast as in the
    # database's collation (a scan counting 100,000 matches: 18 ms against 41 ms); the columns are
    # already lower case, and a LIKE with every wildcard escaped means the same in any collation.
    'CREATE INDEX ix_contacts_email_trgm ON contacts USING gin (email_lower COLLATE "C" gin_trgm_ops)',
    'CREATE INDEX ix_contacts_name_trgm ON contacts USING gin (name_key COLLATE "C" gin_trgm_ops)',
]
PAYMENT_EVENTS = ("'charge.succeeded', 'invoice.payment_succeeded', 'invoice.paid', "
                  "'checkout.session.completed', 'checkout.session.async_payment_succeeded'")
# The same order as crm/summary.py STATUS_ORDER (frozen here, as a migration must be).
STATUS_RANK = ("CASE WHEN r.status = 'ACTIVE' AND r.stripe_status = 'trialing' THEN 1 "
               "WHEN r.status = 'ACTIVE' THEN 0 WHEN r.status = 'PAYMENT_FAILED' THEN 2 "
               "WHEN r.status = 'PENDING' THEN 3 "
               "WHEN r.status = 'PAUSED' THEN 4 WHEN r.status = 'CANCELLED' THEN 5 WHEN r.status = 'EXPIRED' THEN 6 "
               "ELSE 7 END")


def upgrade():
    dialect = op.get_bind().dialect.name
    op.add_column('contacts', sa.Column('lifetime_value', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('contacts', sa.Column('lifetime_currency', sa.String(length=3), nullable=True))
    op.add_column('contacts', sa.Column('last_payment_at', sa.DateTime(), nullable=True))
    op.add_column('contacts', sa.Column('subscription_status', sa.String(length=30), nullable=True))
    op.create_index('ix_contacts_lifetime_value', 'contacts', ['lifetime_value', 'id'])
    op.create_index('ix_contacts_last_payment_at', 'contacts', ['last_payment_at', 'id'])
    op.create_index('ix_contacts_subscription_status', 'contacts', ['subscription_status', 'id'])
    for statement in (SQLITE_SEARCH if dialect == 'sqlite' else POSTGRES_SEARCH):
        op.execute(statement)
    _fill_summaries(dialect)


def _fill_summaries(dialect: str) -> None:
    """The new columns for contacts that already have buyer records, subscriptions or payments."""
    op.execute(
        "UPDATE contacts SET lifetime_currency = (SELECT e.currency FROM ecommerce_customers e "
        "WHERE e.contact_id = contacts.id AND e.currency IS NOT NULL "
        "ORDER BY e.last_order_at IS NULL, e.last_order_at DESC, e.updated_at DESC, e.id DESC LIMIT 1) "
        "WHERE id IN (SELECT contact_id FROM ecommerce_customers)")
    op.execute(
        "UPDATE contacts SET lifetime_value = COALESCE((SELECT SUM(e.total_revenue) FROM ecommerce_customers e "
        "WHERE e.contact_id = contacts.id AND e.currency = contacts.lifetime_currency), 0) "
        "WHERE lifetime_currency IS NOT NULL")
    op.execute(
        "UPDATE contacts SET subscription_status = (SELECT CASE WHEN r.status = 'ACTIVE' "
        "AND r.stripe_status = 'trialing' THEN 'TRIALING' ELSE r.status END FROM recurring_payments r "
        f"WHERE r.contact_id = contacts.id ORDER BY {STATUS_RANK}, r.updated_at DESC, r.id DESC LIMIT 1) "
        "WHERE id IN (SELECT contact_id FROM recurring_payments)")
    if dialect == 'sqlite':
        event_time = "strftime('%Y-%m-%d %H:%M:%S.000000', MAX(s.created), 'unixepoch')"
    else:
        event_time = "to_timestamp(MAX(s.created)) AT TIME ZONE 'UTC'"
    paid_event = (f"(SELECT {event_time} FROM stripe_events s WHERE s.contact_id = contacts.id "
                  f"AND s.status = 'processed' AND s.type IN ({PAYMENT_EVENTS}))")
    last_order = "(SELECT MAX(e.last_order_at) FROM ecommerce_customers e WHERE e.contact_id = contacts.id)"
    greatest = "MAX" if dialect == 'sqlite' else "GREATEST"  # both skip NULLs as used here (COALESCE first)
    op.execute(
        f"UPDATE contacts SET last_payment_at = {greatest}(COALESCE({paid_event}, {last_order}), "
        f"COALESCE({last_order}, {paid_event})) "
        "WHERE id IN (SELECT contact_id FROM ecommerce_customers WHERE last_order_at IS NOT NULL) "
        f"OR id IN (SELECT contact_id FROM stripe_events WHERE status = 'processed' AND type IN ({PAYMENT_EVENTS}))")


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        for trigger in ('contacts_fts_insert', 'contacts_fts_delete', 'contacts_fts_update'):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS contacts_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_contacts_name_trgm")
        op.execute("DROP INDEX IF EXISTS ix_contacts_email_trgm")
    op.drop_index('ix_contacts_subscription_status', table_name='contacts')
    op.drop_index('ix_contacts_last_payment_at', table_name='contacts')
    op.drop_index('ix_contacts_lifetime_value', table_name='contacts')
    # Plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35): no table copy, so no cascade through the contacts'
    # foreign keys.
    for name in ('subscription_status', 'last_payment_at', 'lifetime_currency', 'lifetime_value'):
        op.execute(f"ALTER TABLE contacts DROP COLUMN {name}")
