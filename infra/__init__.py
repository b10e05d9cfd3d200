"""Around the flows: databases, buckets, accounts, automations, backups, `make local`."""
