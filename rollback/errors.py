"""Errors the engine raises. Each carries a message written for the person running the tool."""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness reports to the user without a traceback."""


class ConfigError(HarnessError):
    """The configuration is missing, malformed or names something that does not exist.

    The message names the file, the key, the bad value and what is accepted.
    """


class UnknownTargetKind(ConfigError):
    """A target's ``kind`` names no known driver."""


class RollbackFailed(HarnessError):
    """A rollback step failed; the journal says which steps were done."""


class Conflict(HarnessError):
    """The target changed between preflight's read and the driver's write (another deploy landed).

    The run stops before its write and says what it found; it never retries blindly.
    """
