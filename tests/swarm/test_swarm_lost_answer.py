"""An update whose answer never comes back: the swarm driver reads the service again, never sends it twice.

A small proxy on loopback stands between the harness and the engine's socket. For the service's
update request it either forwards it and reads the engine's answer, then closes the client's
connection without it (the update is applied, its answer lost), or closes the connection without
forwarding it (nothing is applied). Every other request is relayed as it is.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
from swarm_helpers import Service, make_target, write_config

from rollback_harness.rollback.errors import RollbackFailed
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.targets.swarm_engine import Unanswered

pytestmark = pytest.mark.integration

DOCKER_SOCKET = "/var/run/docker.sock"
UPDATE = re.compile(r"^POST /(v[\d.]+/)?services/[^/]+/update(\?|$)")
IO_TIMEOUT = 60.0


def read_request(sock: socket.socket) -> bytes | None:
    """One HTTP request (headers and a Content-Length body) from ``sock``; None when it closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = head.decode("latin-1").split("\r\n")
    assert not any(h.lower().startswith("transfer-encoding:") for h in headers), headers
    length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    # One request per connection to the engine: it closes once it has answered, so its answer ends at EOF.
    kept = [h for h in headers if not h.lower().startswith("connection:")]
    return "\r\n".join([*kept, "Connection: close"]).encode("latin-1") + b"\r\n\r\n" + body


def ask_engine(request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as engine:
        engine.settimeout(IO_TIMEOUT)
        engine.connect(DOCKER_SOCKET)
        engine.sendall(request)
        answer = b""
        while chunk := engine.recv(65536):
            answer += chunk
    return answer


class EngineProxy:
    """tcp://127.0.0.1:PORT in front of the engine's socket; ``mode`` says what becomes of the first update:
    "lose-answer" (forwarded, the engine's answer read and not passed on), "lose-answer-and-stop" (the
    same, then the proxy stops listening) or "drop" (never forwarded)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.updates: list[tuple[str, str | None]] = []  # (request line, the engine's status line or None)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop listening: new connections are refused (shutdown wakes the thread blocked in accept)."""
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            client.settimeout(IO_TIMEOUT)
            request = read_request(client)
            if request is None:
                return
            line = request.split(b"\r\n", 1)[0].decode("latin-1")
            with self.lock:
                first_update = UPDATE.match(line) is not None and not self.updates
                if UPDATE.match(line):
                    self.updates.append((line, None))
            if first_update and self.mode == "drop":
                return  # closed without forwarding: the engine never sees it
            answer = ask_engine(request)
            if UPDATE.match(line):
                with self.lock:
                    self.updates[-1] = (line, answer.split(b"\r\n", 1)[0].decode("latin-1"))
            if first_update and self.mode in ("lose-answer", "lose-answer-and-stop"):
                if self.mode == "lose-answer-and-stop":
                    self.close()  # and the engine can no longer be read through the proxy
                return  # the engine answered; the client is closed on without it
            client.sendall(answer)


@pytest.fixture
def proxy() -> Iterator[Callable[[str], EngineProxy]]:
    made: list[EngineProxy] = []

    def make(mode: str) -> EngineProxy:
        made.append(EngineProxy(mode))
        return made[-1]

    yield make
    for one in made:
        one.close()


def config_through(path: Path, service: Service, proxy: EngineProxy) -> Path:
    config = write_config(path, service)
    data = tomllib.loads(config.read_text())
    data["targets"]["web"].update({"docker_host": proxy.url, "api_timeout": "4s"})
    config.write_text(tomli_w.dumps(data))
    return config


def run_harness(pytester: pytest.Pytester, config: Path, *more: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        f"--rollback-config={config}",
        f"--report-dir={pytester.path / 'reports'}",
        "--rollback-to",
        "previous",
        "--rollback-yes",
        *more,
    )


def update_step(report_dir: Path, status: str) -> dict[str, Any]:
    (found,) = report_dir.glob("*/evidence.json")
    timeline = json.loads(found.read_text())["timeline"]
    steps = [e for e in timeline if e["what"] == "update-service" and e["status"] == status]
    assert len(steps) == 1, timeline
    detail: dict[str, Any] = steps[0]["detail"]
    return detail


@pytest.mark.parametrize(
    ("more", "how"),
    [((), "server-side rollback"), (("--rollback-fast",), "fast image update")],
    ids=["server-side", "image-update"],
)
def test_an_update_whose_answer_is_lost_is_read_again_and_the_rollback_completes(
    pytester: pytest.Pytester,
    make_service: Callable[..., Service],
    proxy: Callable[[str], EngineProxy],
    more: tuple[str, ...],
    how: str,
) -> None:
    service = make_service("v1.2.9", history=("v1.3.0",))
    through = proxy("lose-answer")

    result = run_harness(pytester, config_through(pytester.path / "rollback.toml", service, through), *more)

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*web: rolled back from v1.3.0 to v1.2.9; verified*", "exit code 0: success"])
    assert [status for _, status in through.updates] == ["HTTP/1.1 200 OK"]  # sent once; its answer lost
    assert service.running_versions() == ["v1.2.9"] * 3
    assert service.update_state() == ("completed" if more else "rollback_completed")
    step = update_step(pytester.path / "reports", "done")
    assert step["how"] == how
    assert step["write"] == "applied (the answer was lost; a re-read confirmed it)"
    assert step["answer"].startswith("lost (ConnectionError: "), step
    assert step["reread"]["index"] > step["index"]


def test_an_update_that_never_reached_the_engine_is_not_applied(
    pytester: pytest.Pytester, make_service: Callable[..., Service], proxy: Callable[[str], EngineProxy]
) -> None:
    service = make_service("v1.2.9", history=("v1.3.0",))
    before = service.inspect()
    through = proxy("drop")

    result = run_harness(pytester, config_through(pytester.path / "rollback.toml", service, through))

    assert result.ret == 12, result.stdout.str()
    index = before["Version"]["Index"]
    result.stdout.fnmatch_lines(
        [
            f"*Swarm's server-side rollback of service {service.name} to its PreviousSpec "
            f"({service.images.name('v1.2.9')}), sent at version index "
            f"{index}, got no answer (ConnectionError: *); re-read: not applied: the version index stayed at {index} "
            "for 4.0 s of reading the service again*it was not sent again*"
        ]
    )
    assert "UNKNOWN" not in result.stdout.str()
    assert [status for _, status in through.updates] == [None]  # dropped, never resent
    after = service.inspect()
    assert after["Version"]["Index"] == index and after["Spec"] == before["Spec"]
    assert service.running_versions() == ["v1.3.0"] * 3
    step = update_step(pytester.path / "reports", "failed")
    assert step["write"] == "not applied (the answer was lost; re-read: the version index did not move)"


def test_an_update_refused_before_it_was_sent_is_not_applied_without_reading_again(
    make_service: Callable[..., Service], proxy: Callable[[str], EngineProxy]
) -> None:
    service = make_service("v1.2.9", replicas=1, history=("v1.3.0",))
    through = proxy("drop")
    target = make_target(service, docker_host=through.url)
    read = target._service()
    through.close()  # nothing listens on the port now: the connection is refused

    with pytest.raises(RollbackFailed) as caught:
        target._post_update(read["ID"], read["Spec"], {"version": read["Version"]["Index"]}, "read")

    assert not isinstance(caught.value, Unanswered)
    assert f"the update of service {service.name} was not sent: cannot reach the Docker Engine at {through.url}" in (
        str(caught.value)
    )
    assert str(caught.value).endswith("; not applied")
    assert through.updates == []
    assert service.inspect()["Version"]["Index"] == read["Version"]["Index"]


def test_an_update_whose_answer_is_lost_and_that_cannot_be_read_again_is_unknown_never_not_applied(
    make_service: Callable[..., Service], proxy: Callable[[str], EngineProxy], tmp_path: Path
) -> None:
    service = make_service("v1.2.9", replicas=1, history=("v1.3.0",))
    through = proxy("lose-answer-and-stop")
    target = make_target(service, docker_host=through.url, api_timeout="2s")
    index = service.inspect()["Version"]["Index"]
    journal = Journal(tmp_path / "journal.jsonl")

    with pytest.raises(RollbackFailed) as caught:
        target.rollback("v1.2.9", journal, expected_state=target.observe())

    message = str(caught.value)
    assert (
        f"Swarm's server-side rollback of service {service.name} to its PreviousSpec "
        f"({service.images.name('v1.2.9')}), sent at version index {index}, got no answer (ConnectionError: "
    ) in message
    assert "; the outcome is UNKNOWN: reading the service again failed too (cannot reach the Docker Engine" in message
    assert f"it was not sent again; run `docker service inspect {service.name}` to see" in message
    assert "not applied" not in message
    (failed,) = [e for e in journal.entries() if e["step"] == "update-service" and e["status"] == "failed"]
    assert failed["write"] == "unknown (the answer was lost and the service could not be read again)"
    # And it was applied: calling it "not applied" would have been wrong.
    assert [status for _, status in through.updates] == ["HTTP/1.1 200 OK"]
    assert service.inspect()["Version"]["Index"] > index
    assert service.image_version() == "v1.2.9"
