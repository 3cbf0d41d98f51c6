"""rollback/notify.py on its own: every POST ends by its deadline, whatever the receiver does."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from rollback_harness.rollback.notify import Notifier, NotifyError, Receiver, post


@pytest.fixture
def trickling() -> Iterator[str]:
    """A receiver that answers one byte of its status line every 0.2 s, for ever."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            server.settimeout(0.1)
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                    if stop.is_set():
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break
                    time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stop.set()
    thread.join(5)
    server.close()


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_deadline(trickling: str) -> None:
    started = time.monotonic()
    with pytest.raises(NotifyError, match="no answer within 1 s"):
        post(trickling, b"{}", {}, timeout=1.0)
    assert time.monotonic() - started < 10  # not the minutes the trickle would take


def test_send_never_waits_and_close_waits_a_bounded_time(trickling: str) -> None:
    notifier = Notifier([Receiver("slow", trickling, timeout=1.0)])
    started = time.monotonic()
    for _ in range(5):
        notifier.send({"event": "gate", "text": "x"})
    assert time.monotonic() - started < 1.0  # queued, not sent: the run goes on

    deliveries = notifier.close(wait_s=1.5)

    assert time.monotonic() - started < 10
    statuses = [d.status for d in deliveries]
    assert statuses[0] == "failed" and deliveries[0].detail == "no answer within 1 s"
    assert "not sent" in statuses  # the rest were still queued when the wait ended
    assert all(status in ("failed", "not sent") for status in statuses)


def test_an_unsupported_url_is_a_failed_delivery_not_an_exception() -> None:
    with pytest.raises(NotifyError, match="not an http"):
        post("ftp://127.0.0.1/hook", b"{}", {}, timeout=1.0)
