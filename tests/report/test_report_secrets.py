"""RELIABILITY 27: secrets from the environment never appear in an artifact or on the terminal.

Each secret reaches the harness as ``${VAR}`` in rollback.toml. After a real run every file in
the run folder and the whole terminal output are searched for each secret, plain, URL-encoded
and base64-encoded (at any offset, as inside a Basic auth header).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest
from deployments import Deployment, read_evidence, run_dir
from report_support import leaks, secret_forms

pytestmark = pytest.mark.integration

# Characters that URL-encoding changes, so the encoded forms differ from the plain one.
DB_PASSWORD = "Tr0ub4dor+3=kx9Q"
MONITOR_PASSWORD = "m0n1tor~pw=Zq8+r"
DEPLOY_TOKEN = "dpl-7Hq2+Zk9=wX4"
METRICS_TOKEN = "mtk-4Rb8~Vn1=pL6"

USER_GATE = """
import logging
import os
import socket

import pytest


def replica_answers(dsn):
    host, port = "127.0.0.1", 1
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


@pytest.mark.gate("verify")
def test_reporting_replica_takes_the_app_credentials():
    password = os.environ["DB_PASSWORD"]
    dsn = f"host=127.0.0.1 port=1 dbname=reports user=app password={password}"
    print("connecting:", dsn)
    logging.getLogger("reports").warning("replica did not answer: %s", dsn)
    assert replica_answers(dsn), f"no answer from the replica ({dsn})"
"""


def run_texts(result: pytest.RunResult, folder: Path) -> dict[str, str]:
    """The terminal output and every file of the run folder, by name."""
    texts = {"terminal stdout": result.stdout.str(), "terminal stderr": result.stderr.str()}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        texts[path.relative_to(folder).as_posix()] = path.read_text(encoding="utf-8", errors="replace")
    return texts


def test_the_leak_finder_finds_every_form() -> None:
    """The scan below could fail: each encoded form is found inside longer text."""
    for form in secret_forms(DB_PASSWORD).values():
        assert leaks(DB_PASSWORD, {"x": f"prefix {form} suffix"})
    for prefix in ("", "a", "ab", "app:"):
        basic = base64.b64encode(f"{prefix}{DB_PASSWORD}".encode()).decode()
        assert leaks(DB_PASSWORD, {"header": f"Authorization: Basic {basic}"}), prefix


def test_secrets_stay_out_of_every_artifact_and_the_terminal(
    pytester: pytest.Pytester, demo: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PASSWORD", DB_PASSWORD)
    monkeypatch.setenv("MONITOR_PASSWORD", MONITOR_PASSWORD)
    config = demo.config()
    # Unreachable port: the database check fails, and says so with the URL.
    config["database"]["url"] = "postgresql://app:${DB_PASSWORD}@127.0.0.1:1/app"
    # Basic auth on every request to the service; the health check is made to fail as well.
    config["service"]["base_url"] = config["service"]["base_url"].replace(
        "http://", "http://monitor:${MONITOR_PASSWORD}@"
    )
    config["health"]["expect_status"] = [204]
    demo.write_config(config)
    pytester.makepyfile(test_user_gate=USER_GATE)

    result = pytester.runpytest(
        *demo.harness_args(
            pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes", "-rA", "--log-level=INFO"
        )
    )

    assert result.ret == 13, result.stdout.str()  # rolled back; verify failed (health, database, replica)
    assert demo.live_version() == "v1.2.9"
    # The failures were reported, with the secrets replaced.
    result.stdout.fnmatch_lines(
        [
            "*postgresql://app:[*][*][*]@127.0.0.1:1/app*",
            "*no answer from the replica (host=127.0.0.1 port=1 dbname=reports user=app password=[*][*][*])*",
            "connecting: host=127.0.0.1 port=1 dbname=reports user=app password=[*][*][*]",
            "*replica did not answer: host=127.0.0.1 port=1 dbname=reports user=app password=[*][*][*]",
        ]
    )
    folder = run_dir(pytester.path / "reports")
    texts = run_texts(result, folder)
    assert {"report.html", "evidence.json", "journal.jsonl", "manifest.sha256"} <= set(texts)
    evidence = read_evidence(pytester.path / "reports")
    failed = {t["nodeid"].rpartition("::")[2] for t in evidence["tests"] if t["outcome"] == "failed"}
    assert failed == {"verify-health", "verify-database", "test_reporting_replica_takes_the_app_credentials"}

    found = leaks(DB_PASSWORD, texts) + leaks(MONITOR_PASSWORD, texts)
    assert not found, "secrets leaked:\n" + "\n".join(found)


def test_a_secret_in_the_restart_command_stays_out(
    pytester: pytest.Pytester, demo: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", DEPLOY_TOKEN)
    config = demo.config()
    target = config["targets"]["app"]
    target["restart"] = ["env", "DEPLOY_TOKEN=${DEPLOY_TOKEN}", *target["restart"]]
    demo.write_config(config)

    result = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes")
    )

    assert result.ret == 0, result.stdout.str()
    texts = run_texts(result, run_dir(pytester.path / "reports"))
    found = leaks(DEPLOY_TOKEN, texts)
    assert not found, "secret leaked:\n" + "\n".join(found)


def test_a_secret_in_an_endpoint_path_stays_out(
    pytester: pytest.Pytester, demo: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METRICS_TOKEN", METRICS_TOKEN)
    config = demo.config()
    config["endpoints"].append({"path": "/?token=${METRICS_TOKEN}"})
    demo.write_config(config)

    result = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--gate", "verify", "--expect-version", "v1.3.0", "-rA")
    )

    assert result.ret == 13, result.stdout.str()
    texts = run_texts(result, run_dir(pytester.path / "reports"))
    found = leaks(METRICS_TOKEN, texts)
    assert not found, "secret leaked:\n" + "\n".join(found)


# Prints a long output whose last 2000 characters begin inside the token (the old cut point),
# then runs the real restart command quietly.
NOISY_RESTART = """
import subprocess, sys
print("x" * 3000 + sys.argv[1] + "y" * 1992, flush=True)
sys.exit(subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL).returncode)
"""


def test_long_restart_output_is_redacted_before_it_is_cut(
    pytester: pytest.Pytester, demo: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cut used to come first: the token's tail survived, and no redactor knew it."""
    monkeypatch.setenv("DEPLOY_TOKEN", DEPLOY_TOKEN)
    config = demo.config()
    target = config["targets"]["app"]
    target["restart"] = [sys.executable, "-c", NOISY_RESTART, "${DEPLOY_TOKEN}", *target["restart"]]
    demo.write_config(config)

    result = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes")
    )

    assert result.ret == 0, result.stdout.str()
    folder = run_dir(pytester.path / "reports")
    entries = [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]
    [restart] = [e for e in entries if e["step"] == "restart" and e["status"] == "done"]
    assert restart["output"].endswith("x***" + "y" * 1992), restart["output"][:100]
    texts = run_texts(result, folder)
    for piece in (DEPLOY_TOKEN[i:] for i in range(len(DEPLOY_TOKEN) - 5)):
        assert not [name for name, text in texts.items() if piece in text], piece
