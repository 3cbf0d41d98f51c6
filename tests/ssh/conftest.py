from ssh_fixtures import ssh_fleet  # noqa: F401  (the fixture, defined beside its helpers)
