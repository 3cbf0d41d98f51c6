"""Lock backends other than the file lock (rollback/lock.py has the interface and the registry)."""
