"""The demo deployment: release folders, a `current` symlink, the app under supervisor, SQLite."""
