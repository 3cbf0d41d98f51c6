from fleet_support import fleet  # noqa: F401  (the fixture, defined beside its helpers)
