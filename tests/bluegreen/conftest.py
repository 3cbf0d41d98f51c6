"""The blue/green fixture (tests/bluegreen_support.py)."""

from bluegreen_support import make_bluegreen  # noqa: F401  (a fixture: found by its name)
