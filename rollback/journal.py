"""The step journal: one JSON line per event, appended and flushed as it happens.

Each action is written as ``started`` before it begins and ``done`` or ``failed`` after, so a run
that is killed half way leaves a journal that says exactly which step was in flight.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

STEP_STATES = ("started", "done", "failed", "interrupted", "skipped")
# Every record names its run and incident under these keys (not ``run_id``: a lock record's
# ``run_id`` is the holder's); ``entries()`` leaves them out, as they are the journal's, not the step's.
IDENTITY_KEYS = ("run", "incident")
# Longer strings (a restart command's output) keep their last characters: errors come last.
MAX_TEXT = 2000


def cut_long_text(value: Any, limit: int = MAX_TEXT) -> Any:
    """Strings longer than ``limit`` cut to their tail, in nested data too.

    Only ever applied to data that is already redacted: cutting first could leave the first
    characters of a secret that redaction would no longer recognise.
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return f"[{len(value) - limit} characters cut] " + value[-limit:]
    if isinstance(value, dict):
        return {k: cut_long_text(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [cut_long_text(v, limit) for v in value]
    return value


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class JournalNotWritten(OSError):
    """The journal refused a record (a full or read-only disk): nothing more may start unrecorded."""


@dataclass
class StepHandle:
    """Lets a running step add facts to its ``done`` record."""

    detail: dict[str, Any] = field(default_factory=dict)


class Journal:
    def __init__(self, path: Path, redact: Callable[[Any], Any] | None = None) -> None:
        """``redact`` cleans every entry before it is written (secrets never reach the disk)."""
        self.path = path
        self.redact = redact or (lambda value: value)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Several threads may write (a driver's hosts in one batch): one whole line at a time.
        self._lock = threading.Lock()
        self.identity: dict[str, str] = {}
        # Records of what already happened that the disk refused (record_after): still this run's
        # truth, so they are read back with the rest; ``write_error`` says why (the run exits 22).
        self.unwritten: list[dict[str, Any]] = []
        self.write_error: str | None = None

    def identify(self, run_id: str, incident_id: str | None = None) -> None:
        """Name the run (and the incident, when there is one) in every record written from now on."""
        self.identity = {"run": run_id, **({"incident": incident_id} if incident_id else {})}

    def record(self, step: str, status: str, **detail: Any) -> dict[str, Any]:
        """Write one record; an OSError (a full disk) is raised: nothing may start unjournaled."""
        facts = {k: v for k, v in detail.items() if k not in IDENTITY_KEYS}  # the run's ids are never overwritten
        # Redact first, then cut: a cut through a secret would leave part of it unrecognised.
        entry: dict[str, Any] = cut_long_text(
            self.redact({"ts": utc_now(), "step": step, "status": status, **self.identity, **facts})
        )
        line = json.dumps(entry, default=str, sort_keys=False)
        try:
            with self._lock, self.path.open("a", encoding="utf-8") as handle:
                if handle.tell() and not self._ends_with_newline():
                    # The last line was cut short by a crash: start a new line, so this entry is not
                    # glued to the partial one and lost with it.
                    line = "\n" + line
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            code = errno.errorcode.get(exc.errno or 0)
            reason = f"{exc.strerror or exc}" + (f" ({code})" if code else "")
            raise JournalNotWritten(f"cannot write the journal {self.path}: {reason}") from exc
        return entry

    def record_after(self, step: str, status: str, **detail: Any) -> dict[str, Any]:
        """Write the record of something that already happened (a step's end, the outcome).

        When the disk refuses it, the record is kept in memory and read back with the others, and
        ``write_error`` names the reason: what happened stays known to this run and its report
        (which then says the journal is incomplete) instead of turning into a traceback.
        """
        try:
            return self.record(step, status, **detail)
        except OSError as exc:
            facts = {k: v for k, v in detail.items() if k not in IDENTITY_KEYS}
            entry: dict[str, Any] = cut_long_text(
                self.redact({"ts": utc_now(), "step": step, "status": status, **self.identity, **facts})
            )
            with self._lock:
                self.unwritten.append(entry)
                self.write_error = str(exc)
            return entry

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    @contextmanager
    def step(self, step: str, **detail: Any) -> Iterator[StepHandle]:
        """Journal one action: ``started``, then ``done`` with its duration, or ``failed``."""
        handle = StepHandle()
        started = time.monotonic()
        begun = False
        try:
            # Inside the try: a Ctrl-C or SIGTERM landing while "started" is being written (the
            # fsync can take a while) still leaves "interrupted" after it, never a step left open.
            self.record(step, "started", **detail)
            begun = True
            yield handle
        except BaseException as exc:
            if not begun and isinstance(exc, Exception):
                raise  # writing "started" itself failed (a full disk): nothing began
            self.record_after(
                step,
                # Ctrl-C or SystemExit: the step was cut short, not refused by the platform.
                "failed" if isinstance(exc, Exception) else "interrupted",
                duration_s=round(time.monotonic() - started, 3),
                error=str(exc) or type(exc).__name__,
                **handle.detail,
            )
            raise
        self.record_after(step, "done", duration_s=round(time.monotonic() - started, 3), **handle.detail)

    def records(self) -> list[dict[str, Any]]:
        """Every line as written, the run's and incident's ids included; then what the disk refused."""
        records = []
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    # A line cut short by a crash: keep what can be read.
                    continue
        with self._lock:
            return records + list(self.unwritten)

    def entries(self) -> list[dict[str, Any]]:
        """Every step's record: ``ts``, ``step``, ``status`` and its facts, without the run's ids."""
        return [{k: v for k, v in record.items() if k not in IDENTITY_KEYS} for record in self.records()]

    def step_states(self) -> dict[str, str]:
        """The last status of every step: done / failed / interrupted / skipped, or started
        (in flight when the process died)."""
        states: dict[str, str] = {}
        for entry in self.entries():
            if entry.get("status") in STEP_STATES:
                states[entry["step"]] = entry["status"]
        return states
