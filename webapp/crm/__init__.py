"""Contacts, fields, tags and (later) e-commerce data: models, domain functions and views."""
