"""An active run's start-up imports what its config uses, nothing more (issue 19: start-up).

``pytest --rollback-to X --co`` in a fresh interpreter: collecting the runbook names each action's
preflight findings, which must not import the modules of actions the config does not configure
(the traffic action alone pulls in requests and its probes), nor SQLAlchemy to judge the database
URL (0.15-0.2 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tomli_w

from demo import deployment

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SCRIPT = """
import json, sys, pytest
code = pytest.main(sys.argv[1:])
actions = sorted(m.rsplit(".", 1)[-1] for m in sys.modules if m.startswith("rollback_harness.rollback.actions."))
heavy = {name: name in sys.modules for name in ("requests", "sqlalchemy")}
print("IMPORTED " + json.dumps({"code": int(code), "actions": actions, **heavy}))
"""


def imported(config: Path, cwd: Path) -> dict[str, object]:
    args = ["--co", "-q", "-p", "no:cacheprovider", f"--rollback-config={config}", "--rollback-to", "v1.2.9"]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    line = next((line for line in done.stdout.splitlines() if line.startswith("IMPORTED ")), None)
    assert line is not None, done.stdout[-2000:] + done.stderr[-2000:]
    found: dict[str, object] = json.loads(line.removeprefix("IMPORTED "))
    return found


def test_collecting_imports_only_the_configured_actions(tmp_path: Path) -> None:
    layout = deployment.lay_out(tmp_path / "deploy", live="v1.3.0", migrations=True)  # not started
    plain = imported(layout.config_path, tmp_path)
    assert plain["code"] == 0
    assert "database" in plain["actions"]  # migrations configured: the database action's findings
    assert "traffic" not in plain["actions"] and "flags" not in plain["actions"], plain
    assert "load_balancer" not in plain["actions"] and "cdn" not in plain["actions"], plain
    assert plain["requests"] is False  # no probe runs in --co, and no traffic action is configured
    assert plain["sqlalchemy"] is False  # the database URL is judged by SQLAlchemy's grammar, not by it

    config = tomllib.loads(layout.config_path.read_text())
    nginx = {"nginx_config": "nginx.conf", "include": "maintenance.conf", "page": "maintenance.html"}
    config["traffic"] = {"maintenance": nginx}  # checked at preflight, not at collection
    layout.config_path.write_text(tomli_w.dumps(config))
    with_traffic = imported(layout.config_path, tmp_path)
    assert with_traffic["code"] == 0
    assert "traffic" in with_traffic["actions"]
