"""Importing a resource's existing Stripe records: the import job, the list reader, the page writer."""
