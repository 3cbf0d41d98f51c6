"""Database care around a rollback: migrations (Alembic, Rails, Django), backups, the downgrade."""
