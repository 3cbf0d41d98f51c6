"""Webhooks hear the run's start, each gate, the rollback and the end; a bad receiver changes nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from deployments import Deployment, read_evidence, run_dir

pytestmark = pytest.mark.integration

TOKEN = "hook-token-5f1c9e2a7d"


def rollback(pytester: pytest.Pytester, demo: Deployment, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes", *args)
    )


def artifacts_text(pytester: pytest.Pytester) -> str:
    folder = run_dir(pytester.path / "reports")
    return "".join(path.read_text(errors="replace") for path in folder.iterdir() if path.is_file())


def test_notifications_reach_a_local_receiver(
    pytester: pytest.Pytester, demo: Deployment, receivers: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = receivers("ok")
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    demo.update_config(
        notify=[
            {
                "name": "events",
                "url": receiver.url + "/events?token=${HOOK_TOKEN}",
                "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"},
                "status_channel": "#inc-status",
                "eta": "10 min",
            },
            {"name": "chat", "url": receiver.url + "/slack", "format": "slack", "events": ["start", "end"]},
        ]
    )

    result = rollback(pytester, demo)

    assert result.ret == 0, result.stdout.str()
    events = receiver.events("/events")
    kinds = [(e["event"], e.get("gate")) for e in events]
    assert kinds == [
        ("start", None),
        ("gate", "preflight"),
        ("gate", "baseline"),
        ("rollback", None),
        ("gate", "verify"),
        ("end", None),
    ]
    start, end = events[0], events[-1]
    assert start["action"] == "rollback" and start["to"] == "v1.2.9"
    assert start["status_channel"] == "#inc-status" and start["eta"] == "10 min"
    assert "status: #inc-status" in start["text"]
    rolled = events[3]
    assert (rolled["from"], rolled["to"], rolled["status"]) == ("v1.3.0", "v1.2.9", "rolled-back")
    assert events[4]["result"] == "passed"
    assert end["exit_code"] == 0 and "verified" in end["headline"]
    # The receiver got the token; the evidence names the receiver, never the token.
    headers = [h for path, h, _ in receiver.posts if path.startswith("/events")]
    assert all(h["Authorization"] == f"Bearer {TOKEN}" for h in headers)
    assert [body for body in receiver.events("/slack")] == [
        {"text": events[0]["text"]},
        {"text": end["text"]},
    ]
    evidence = read_evidence(pytester.path / "reports")
    delivered = evidence["notifications"]
    assert len(delivered) == 8 and {d["status"] for d in delivered} == {"sent"}
    assert {d["receiver"] for d in delivered} == {"events (127.0.0.1)", "chat (127.0.0.1)"}
    assert TOKEN not in artifacts_text(pytester) and TOKEN not in result.stdout.str()


def test_a_hanging_and_a_failing_receiver_change_nothing(
    pytester: pytest.Pytester, demo: Deployment, receivers: Callable[[str], Any]
) -> None:
    hanging, failing = receivers("hang"), receivers("fail")
    demo.update_config(
        notify=[
            {"name": "hanging", "url": hanging.url + "/hook", "timeout": "1s"},
            {"name": "failing", "url": failing.url + "/hook", "format": "slack"},
        ]
    )

    started = time.monotonic()
    result = rollback(pytester, demo)
    took = time.monotonic() - started

    # The outcome and exit code are those of a run without webhooks...
    assert result.ret == 0, result.stdout.str()
    assert demo.live_version() == "v1.2.9"
    result.stdout.fnmatch_lines(["*rolled back from v1.3.0 to v1.2.9; verified*", "exit code 0: success"])
    # ...and the run did not wait for the hanging receiver (it holds each request for 120 s).
    assert took < 60
    assert failing.events() and hanging.events()
    evidence = read_evidence(pytester.path / "reports")
    by_receiver: dict[str, list[dict[str, Any]]] = {}
    for delivery in evidence["notifications"]:
        by_receiver.setdefault(delivery["receiver"].split()[0], []).append(delivery)
    assert {d["status"] for d in by_receiver["failing"]} == {"failed"}
    assert {d["detail"] for d in by_receiver["failing"]} == {"answered HTTP 500"}
    assert by_receiver["hanging"][0]["status"] == "failed"
    assert by_receiver["hanging"][0]["detail"] == "no answer within 1 s"
    assert {d["status"] for d in by_receiver["hanging"]} <= {"failed", "not sent"}
    result.stdout.fnmatch_lines(["*notification start to failing (127.0.0.1) failed: answered HTTP 500*"])
    journal = (run_dir(pytester.path / "reports") / "journal.jsonl").read_text()
    assert '"step": "notify", "status": "undelivered"' in journal


def test_a_receiver_that_refuses_connections_changes_nothing(pytester: pytest.Pytester, demo: Deployment) -> None:
    demo.update_config(notify=[{"name": "dead", "url": "http://127.0.0.1:9/hook", "timeout": "2s"}])

    result = rollback(pytester, demo)

    assert result.ret == 0, result.stdout.str()
    evidence = read_evidence(pytester.path / "reports")
    assert {d["status"] for d in evidence["notifications"]} == {"failed"}
    assert evidence["notifications"][0]["detail"].startswith("could not deliver")


def test_a_dead_receiver_leaves_a_refusal_a_refusal(pytester: pytest.Pytester, demo: Deployment) -> None:
    demo.update_config(notify=[{"name": "dead", "url": "http://127.0.0.1:9/hook", "timeout": "1s"}])

    result = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v9.9.9", "--rollback-yes")
    )

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*preflight refused*v9.9.9 is not in history*", "exit code 10: *"])
    evidence = read_evidence(pytester.path / "reports")
    assert {d["event"] for d in evidence["notifications"]} == {"start", "gate", "rollback", "end"}
    # Undelivered messages are in the timeline, but never as a step of the rollback.
    notify_rows = [e for e in evidence["timeline"] if e["what"] == "notify"]
    assert notify_rows and {e["status"] for e in notify_rows} == {"undelivered"}
