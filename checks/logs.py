"""The logs check: ERROR / WARN / EXCEPTION counts in log files, or in a command's output.

Only lines written after a *mark* count. A mark remembers, for each file, the open file and the
offset of its end at that moment; reading later starts there and goes to the end the file has
when the read starts (a file that keeps growing is not chased), at most ``max_bytes`` per file:

- rotated (the path now names another file): the rest of the old file is read through the file
  still open since the mark, then the new file from its start;
- truncated in place (copytruncate, supervisord): read from the start again;
- missing at the mark but there now: read from its start (it was created since);
- missing now: a failure that names the path.

A command (``journalctl -u app --since {since}``) is run as an argument list, with ``{since}``,
``{since_iso}`` and ``{since_epoch}`` replaced by the mark's time, under a total deadline; its
output is read up to ``max_bytes`` and counted whole (the command filters by time itself).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from ..rollback.results import CheckResult

_CHUNK = 64 * 1024
_EXAMPLES = 3  # first matching lines kept per pattern, for the report
_EXAMPLE_LIMIT = 200


class LineCounter:
    """Counts lines matching each pattern, fed bytes in any pieces."""

    def __init__(self, patterns: Mapping[str, str]) -> None:
        # MULTILINE: ^ and $ match at each line's start and end, as they would on the line alone.
        self._patterns = {name: re.compile(pattern, re.MULTILINE) for name, pattern in patterns.items()}
        self.counts = dict.fromkeys(patterns, 0)
        self.examples: dict[str, list[str]] = {name: [] for name in patterns}
        self.lines = 0
        self.bytes = 0
        self._partial = b""

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n")
        if cut < 0:
            self._partial = data
            return
        self._partial = data[cut + 1 :]
        self._block(data[: cut + 1].decode("utf-8", errors="replace"))

    def close(self) -> None:
        """The last line, when the text does not end with a newline."""
        if self._partial:
            partial, self._partial = self._partial, b""
            self._block(partial.decode("utf-8", errors="replace") + "\n")

    def _block(self, text: str) -> None:
        """Whole lines (``text`` ends with a newline): each pattern searches the block at C speed
        and counts each line it matches once; matches are rare, lines are many."""
        self.lines += text.count("\n")
        for name, pattern in self._patterns.items():
            position = 0
            while (found := pattern.search(text, position)) is not None:
                start = text.rfind("\n", 0, found.start()) + 1
                end = text.find("\n", found.start())
                line = text[start:end]
                # A pattern that reached across a newline is judged on the line alone.
                if found.end() <= end or pattern.search(line):
                    self.counts[name] += 1
                    if len(self.examples[name]) < _EXAMPLES:
                        self.examples[name].append(line.strip()[:_EXAMPLE_LIMIT])
                position = end + 1


@dataclass
class _FileMark:
    path: Path
    handle: IO[bytes] | None
    offset: int
    problem: str | None = None


@dataclass
class LogMark:
    """Where each file ended at ``taken`` (``time.time()``); close() when done with it."""

    taken: float
    files: list[_FileMark] = field(default_factory=list)

    def close(self) -> None:
        for mark in self.files:
            if mark.handle is not None:
                mark.handle.close()
                mark.handle = None


def mark(paths: Iterable[Path], taken: float | None = None) -> LogMark:
    """Remember where each file ends now. Never raises: a missing file is noted in the mark."""
    result = LogMark(time.time() if taken is None else taken)
    for path in paths:
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            result.files.append(_FileMark(path, None, 0, "missing"))
            continue
        except OSError as exc:
            result.files.append(_FileMark(path, None, 0, _reason(exc)))
            continue
        offset = os.fstat(handle.fileno()).st_size
        result.files.append(_FileMark(path, handle, offset))
    return result


@dataclass
class _Read:
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Bytes not read because of max_bytes: the counts are lower bounds.
    skipped: int = 0


def _read_range(handle: IO[bytes], start: int, end: int, counter: LineCounter, budget: int) -> int:
    """Feed bytes start..end of ``handle`` to ``counter``, at most ``budget``; the bytes left unread."""
    handle.seek(start)
    left = min(end - start, budget)
    while left > 0:
        chunk = handle.read(min(_CHUNK, left))
        if not chunk:
            break
        counter.feed(chunk)
        left -= len(chunk)
    counter.close()
    return max(0, end - start - budget)


def _read_file(mark: _FileMark, counter: LineCounter, max_bytes: int, read: _Read) -> None:
    path = mark.path
    try:
        current = path.stat()
    except FileNotFoundError:
        current = None
    except OSError as exc:
        read.problems.append(f"{path}: {_reason(exc)}")
        return
    if mark.handle is None:
        if current is None:
            read.problems.append(f"{path}: no such file" + (" (missing at the mark too)" if mark.problem else ""))
            return
        if mark.problem not in (None, "missing"):
            read.problems.append(f"{path}: {mark.problem}")
            return
        read.notes.append(f"{path}: created since the mark, read from its start")
        _read_new_file(path, 0, counter, max_bytes, read)
        return
    old = os.fstat(mark.handle.fileno())
    same = current is not None and (current.st_dev, current.st_ino) == (old.st_dev, old.st_ino)
    if same:
        if old.st_size < mark.offset:
            read.notes.append(f"{path}: truncated since the mark ({mark.offset} -> {old.st_size} bytes), read again")
            read.skipped += _read_range(mark.handle, 0, old.st_size, counter, max_bytes)
        else:
            read.skipped += _read_range(mark.handle, mark.offset, old.st_size, counter, max_bytes)
        return
    # Rotated (or removed): the rest of the file that was there at the mark, then the new one.
    start = mark.offset if old.st_size >= mark.offset else 0
    read.skipped += _read_range(mark.handle, start, old.st_size, counter, max_bytes)
    if current is None:
        read.problems.append(f"{path}: no such file (it was there at the mark: rotated away and not recreated)")
        return
    read.notes.append(f"{path}: rotated since the mark; read the rest of the old file and the new one")
    _read_new_file(path, 0, counter, max_bytes - min(max_bytes, old.st_size - start), read)


def _read_new_file(path: Path, start: int, counter: LineCounter, budget: int, read: _Read) -> None:
    try:
        with path.open("rb") as handle:
            end = os.fstat(handle.fileno()).st_size
            read.skipped += _read_range(handle, start, end, counter, max(0, budget))
    except OSError as exc:
        read.problems.append(f"{path}: {_reason(exc)}")


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower() if exc.strerror else str(exc)


def check_log_files(
    log_mark: LogMark,
    *,
    patterns: Mapping[str, str],
    limits: Mapping[str, int],
    max_bytes: int,
    window: float = 0.0,
    name: str = "logs",
) -> CheckResult:
    """Count matching lines written to the marked files since the mark.

    Waits until ``window`` seconds after the mark first, so every phase counts at least that long.
    """
    _wait_until(log_mark.taken + window)
    counter = LineCounter(patterns)
    read = _Read()
    for file_mark in log_mark.files:
        _read_file(file_mark, counter, max_bytes, read)
    since = _iso(log_mark.taken)
    files = ", ".join(str(m.path) for m in log_mark.files)
    return _judge(name, counter, limits, read, since, f"{files}", max_bytes)


def check_log_command(
    command: Sequence[str],
    *,
    since: float,
    patterns: Mapping[str, str],
    limits: Mapping[str, int],
    max_bytes: int,
    timeout: float,
    window: float = 0.0,
    cwd: Path | None = None,
    name: str = "logs",
) -> CheckResult:
    """Run ``command`` (placeholders replaced) and count matching lines of its standard output."""
    _wait_until(since + window)
    args = [_placeholders(arg, since) for arg in command]
    counter = LineCounter(patterns)
    read = _Read()
    shown = " ".join(args)
    problem = _run_counting(args, counter, max_bytes, timeout, cwd, read)
    if problem is not None:
        measured = {"source": shown, "since": _iso(since), "error": problem}
        return CheckResult(name, "failed", f"{shown}: {problem}", measured)
    return _judge(name, counter, limits, read, _iso(since), shown, max_bytes)


def _run_counting(
    args: list[str], counter: LineCounter, max_bytes: int, timeout: float, cwd: Path | None, read: _Read
) -> str | None:
    """Feed the command's output to ``counter``; None, or why the output cannot be trusted."""
    try:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd
        )
    except FileNotFoundError:
        return f"command not found: {args[0]}"
    except OSError as exc:
        return f"cannot run {args[0]}: {_reason(exc)}"
    assert process.stdout is not None and process.stderr is not None
    errors: list[bytes] = []
    cut = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        left = max_bytes
        while chunk := process.stdout.read1(_CHUNK):  # type: ignore[attr-defined]
            counter.feed(chunk[:left])
            left -= len(chunk)
            if left < 0:
                cut.set()
                break
        counter.close()

    def drain() -> None:
        assert process.stderr is not None
        errors.append(process.stderr.read(_CHUNK))
        while process.stderr.read(_CHUNK):
            pass

    threads = [threading.Thread(target=pump, daemon=True), threading.Thread(target=drain, daemon=True)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    threads[0].join(timeout)
    if threads[0].is_alive() or cut.is_set():
        process.kill()
    try:
        code = process.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    for thread in threads:
        thread.join(1.0)
    process.stdout.close()
    process.stderr.close()
    if cut.is_set():
        read.skipped = 1  # more output than max_bytes: the counts are lower bounds
        read.notes.append(f"output cut after {max_bytes} bytes")
        return None
    if time.monotonic() >= deadline and code != 0:
        return f"timed out after {timeout:g}s"
    if code != 0:
        said = b"".join(errors).decode("utf-8", errors="replace").strip().splitlines()
        return f"exited {code}" + (f": {said[-1][:200]}" if said else "")
    return None


def _judge(
    name: str, counter: LineCounter, limits: Mapping[str, int], read: _Read, since: str, source: str, max_bytes: int
) -> CheckResult:
    measured: dict[str, Any] = {
        "source": source,
        "since": since,
        "lines": counter.lines,
        "bytes_read": counter.bytes,
        "counts": dict(counter.counts),
        "max": dict(limits),
        "examples": {k: v for k, v in counter.examples.items() if v},
        "notes": read.notes,
    }
    counts = ", ".join(f"{n} {k.upper()}" for k, n in counter.counts.items())
    if read.problems:
        measured["problems"] = read.problems
        return CheckResult(name, "failed", "; ".join(read.problems), measured)
    over = [
        f"{key.upper()} {counter.counts[key]} > {limit}" for key, limit in limits.items() if counter.counts[key] > limit
    ]
    what = f"{counter.lines} new line{'s' if counter.lines != 1 else ''} since {since[11:19]} UTC: {counts}"
    if over:
        return CheckResult(name, "failed", f"{what}; over the limit: {', '.join(over)}", measured)
    if read.skipped:
        measured["unread_bytes"] = read.skipped
        summary = f"{what}; only the first {max_bytes} new bytes were read (max_bytes): not judged"
        return CheckResult(name, "inconclusive", summary, measured)
    return CheckResult(name, "passed", what, measured)


def _wait_until(instant: float) -> None:
    delay = instant - time.time()
    if delay > 0:
        time.sleep(delay)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def _placeholders(arg: str, since: float) -> str:
    local = datetime.fromtimestamp(since).strftime("%Y-%m-%d %H:%M:%S")
    return arg.replace("{since_iso}", _iso(since)).replace("{since_epoch}", str(int(since))).replace("{since}", local)
