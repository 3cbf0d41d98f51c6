"""The [[logs]] check on real files (appended, rotated, truncated, huge, missing) and real commands."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from rollback_harness.checks.logs import check_log_command, check_log_files, mark
from rollback_harness.rollback.config import LOG_PATTERNS

LIMITS = {"error": 0, "exception": 0}


def append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))


def judge(log_mark, limits=LIMITS, max_bytes=1024 * 1024):  # type: ignore[no-untyped-def]
    return check_log_files(log_mark, patterns=LOG_PATTERNS, limits=limits, max_bytes=max_bytes, name="logs[app]")


def test_only_lines_written_after_the_mark_count(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "ERROR old trouble", "Traceback (most recent call last):")
    log_mark = mark([log])
    append(
        log, "INFO fine", "WARN slow disk", "WARNING again", "ERROR db timeout", "ValueError: boom NullPointerException"
    )
    result = judge(log_mark)
    log_mark.close()

    assert result.status == "failed"
    assert result.measured["counts"] == {"error": 1, "warn": 2, "exception": 1}
    assert result.measured["lines"] == 5
    assert "ERROR 1 > 0" in result.summary and "EXCEPTION 1 > 0" in result.summary
    assert result.measured["examples"]["error"] == ["ERROR db timeout"]


def test_a_quiet_log_passes(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "ERROR before the mark")
    log_mark = mark([log])
    append(log, "INFO ok", "WARN only a warning")
    result = judge(log_mark)
    log_mark.close()
    assert result.status == "passed", result.summary
    assert result.measured["counts"]["warn"] == 1


def test_rotation_reads_the_rest_of_the_old_file_and_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "ERROR before the mark")
    log_mark = mark([log])
    append(log, "ERROR after the mark, before the rotation")
    log.rename(tmp_path / "app.log.1")  # logrotate's default: rename, then a new file
    append(log, "ERROR in the new file", "INFO fine")
    result = judge(log_mark)
    log_mark.close()

    assert result.measured["counts"]["error"] == 2
    assert any("rotated" in note for note in result.measured["notes"])


def test_truncation_in_place_reads_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, *[f"INFO line {i}" for i in range(50)])
    log_mark = mark([log])
    os.truncate(log, 0)  # copytruncate, supervisord's own rotation
    append(log, "ERROR after truncation")
    result = judge(log_mark)
    log_mark.close()

    assert result.measured["counts"]["error"] == 1
    assert result.measured["lines"] == 1
    assert any("truncated" in note for note in result.measured["notes"])


def test_a_huge_file_is_read_only_from_the_mark_and_bounded(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    with log.open("wb") as handle:  # 64 MiB of old lines, never read
        handle.truncate(64 * 1024 * 1024)
    log_mark = mark([log])
    append(log, *["INFO " + "x" * 100] * 2000)  # ~210 KB of new lines, more than max_bytes
    result = judge(log_mark, max_bytes=64 * 1024)
    log_mark.close()

    assert result.status == "inconclusive"
    assert result.measured["bytes_read"] == 64 * 1024
    assert "only the first 65536 new bytes were read" in result.summary


def test_over_the_limit_within_the_bounded_part_still_fails(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    log_mark = mark([log])
    append(log, "ERROR first", *["INFO " + "x" * 100] * 2000)
    result = judge(log_mark, max_bytes=4096)
    log_mark.close()
    assert result.status == "failed"


def test_a_missing_file_is_a_clear_failure(tmp_path: Path) -> None:
    log = tmp_path / "missing.log"
    log_mark = mark([log])
    result = judge(log_mark)
    assert result.status == "failed"
    assert result.summary == f"{log}: no such file (missing at the mark too)"


def test_a_file_created_after_the_mark_is_read_whole(tmp_path: Path) -> None:
    log = tmp_path / "late.log"
    log_mark = mark([log])
    append(log, "EXCEPTION at startup")
    result = judge(log_mark)
    assert result.measured["counts"]["exception"] == 1
    assert result.status == "failed"


def test_a_file_removed_after_the_mark_fails_after_counting_what_it_had(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    log_mark = mark([log])
    append(log, "ERROR then removed")
    log.unlink()
    result = judge(log_mark)
    log_mark.close()
    assert result.status == "failed"
    assert "rotated away and not recreated" in result.summary
    assert result.measured["counts"]["error"] == 1


def test_the_window_makes_the_check_wait_for_late_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    log_mark = mark([log], taken=time.time() - 0.5)
    result = check_log_files(log_mark, patterns=LOG_PATTERNS, limits=LIMITS, max_bytes=4096, window=0.2)
    log_mark.close()
    assert result.status == "passed"


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "emit.py"
    path.write_text(body)
    return [sys.executable, str(path)]


def test_a_command_gets_the_mark_time_and_its_output_is_counted(tmp_path: Path) -> None:
    command = script(tmp_path, "import sys\nprint('since', sys.argv[1])\nprint('ERROR one')\nprint('WARN two')\n")
    since = time.time()
    result = check_log_command(
        [*command, "{since_epoch}"],
        since=since,
        patterns=LOG_PATTERNS,
        limits={"error": 1},
        max_bytes=4096,
        timeout=10,
    )
    assert result.status == "passed", result.summary
    assert result.measured["counts"] == {"error": 1, "warn": 1, "exception": 0}
    assert result.measured["source"].endswith(str(int(since)))


def test_a_failing_missing_or_hanging_command_is_a_clear_failure(tmp_path: Path) -> None:
    failing = script(tmp_path, "import sys\nsys.stderr.write('no journal files were found\\n')\nsys.exit(1)\n")
    result = check_log_command(failing, since=time.time(), patterns=LOG_PATTERNS, limits={}, max_bytes=4096, timeout=10)
    assert result.status == "failed"
    assert result.summary.endswith("exited 1: no journal files were found")

    missing = check_log_command(
        ["no-such-log-tool"], since=time.time(), patterns=LOG_PATTERNS, limits={}, max_bytes=4096, timeout=10
    )
    assert missing.summary == "no-such-log-tool: command not found: no-such-log-tool"

    hanging = script(tmp_path, "import time\nprint('ERROR x', flush=True)\ntime.sleep(60)\n")
    started = time.monotonic()
    result = check_log_command(hanging, since=time.time(), patterns=LOG_PATTERNS, limits={}, max_bytes=4096, timeout=1)
    assert result.status == "failed" and "timed out after 1s" in result.summary
    assert time.monotonic() - started < 10  # did not wait for the command's 60 s


def test_a_command_with_endless_output_is_cut_at_max_bytes(tmp_path: Path) -> None:
    endless = script(tmp_path, "while True:\n    print('INFO ' + 'x' * 100)\n")
    result = check_log_command(endless, since=time.time(), patterns=LOG_PATTERNS, limits={}, max_bytes=8192, timeout=10)
    assert result.status == "inconclusive"
    assert result.measured["bytes_read"] == 8192


def test_anchored_patterns_match_each_line(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    log_mark = mark([log])
    append(log, "INFO x", "FATAL first", "INFO FATAL not at the start", "FATAL second")
    result = check_log_files(
        log_mark, patterns={"fatal": "^FATAL", "ends": "start$"}, limits={"fatal": 1}, max_bytes=4096
    )
    log_mark.close()
    assert result.measured["counts"] == {"fatal": 2, "ends": 1}
    assert result.status == "failed"
