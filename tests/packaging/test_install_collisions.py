"""The harness as users install it (a wheel, not editable) beside projects with names like ours.

Before the package had one import name, each of these four projects broke (the issue "good
citizen among pytest plugins"):

- its own ``plugins/`` package, run with ``python -m pytest``: pytest could not start
  (``Error while loading plugin "pytest11"``, exit 3);
- ``pytest_plugins = ["plugins.fixtures"]`` in its conftest silently loaded our module instead
  (``fixture 'user_thing' not found``);
- its own ``checks/`` package (``pythonpath = .``): ``No module named 'checks.database'``;
- an ops repository with ``rollback.py`` at its root: the file ran at pytest start-up, then
  ``'rollback' is not a package`` (exit 3).

One wheel is built and installed into one fresh venv for the whole module (shared by xdist
workers through a file lock). Each project then runs its own tests, and a dry run of the harness
against a demo deployment runs beside them, in the same session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from textwrap import dedent

import pytest
from deployments import Deployment, read_evidence
from filelock import FileLock

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# What a wheel build needs from the checkout; everything else (venvs, old build/ folders, reports)
# stays out, so a stale build/lib can never leak a file into the wheel under test.
NOT_PACKAGED = (".git", ".venv", "build", "*.egg-info", "reports", ".demo", "__pycache__", "*_cache", "tests", "bench")
INSTALL_TIMEOUT = 900


@dataclass(frozen=True)
class Installed:
    wheel: str
    python: str
    build_output: str

    @property
    def bin(self) -> Path:
        return Path(self.python).parent


def _run(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout)


def _clean_env(venv_bin: Path | None = None) -> dict[str, str]:
    """The environment of a user's shell: nothing of this test session's Python set-up."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONHOME")
        and not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))
    }
    if venv_bin is not None:
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv_bin.parent)
    return env


def _build_and_install(root: Path) -> Installed:
    source = root / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_PACKAGED))
    dist = root / "dist"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(dist), str(source)],
        cwd=root,
        timeout=INSTALL_TIMEOUT,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("*.whl")
    venv = root / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], cwd=root)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # Plain install of the wheel; its dependencies come from the index (or pip's cache).
    installed = _run([str(python), "-m", "pip", "install", "-q", str(wheel)], cwd=root, timeout=INSTALL_TIMEOUT)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return Installed(wheel=str(wheel), python=str(python), build_output=built.stdout + built.stderr)


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel, built once and installed once into a fresh venv, for every xdist worker."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "installed-harness"
    done = root / "installed.json"
    with FileLock(str(shared / "installed-harness.lock")):
        if not done.exists():
            if root.exists():
                shutil.rmtree(root)  # a build that failed half way in another worker
            root.mkdir()
            done.write_text(json.dumps(asdict(_build_and_install(root))))
    return Installed(**json.loads(done.read_text()))


# -- the wheel ------------------------------------------------------------------------------


def test_wheel_adds_exactly_one_import_name(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        (record,) = [n for n in names if n.endswith(".dist-info/RECORD")]
        recorded = [line.split(",")[0] for line in wheel.read(record).decode().splitlines() if line]
        top_level_files = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        top_level = {line for f in top_level_files for line in wheel.read(f).decode().split() if line}
        entry_points = wheel.read(record.replace("RECORD", "entry_points.txt")).decode()

    importable = {path.split("/")[0].removesuffix(".py") for path in recorded if ".dist-info/" not in path}
    assert importable == {"rollback_harness"}
    assert top_level in (set(), {"rollback_harness"})
    assert re.search(r"^\[pytest11\]\s*\nrollback = rollback_harness\.plugins\.harness$", entry_points, re.M)
    # The three parts are mapped in, and nothing outside the package went along.
    for module in ("rollback/config.py", "checks/database.py", "plugins/harness.py", "rollback/targets/symlink.py"):
        assert f"rollback_harness/{module}" in recorded


def test_driver_clients_are_extras_not_dependencies(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        lines = wheel.read(metadata).decode().splitlines()

    requires = [line.removeprefix("Requires-Dist: ") for line in lines if line.startswith("Requires-Dist: ")]
    extras = {line.removeprefix("Provides-Extra: ") for line in lines if line.startswith("Provides-Extra: ")}
    assert {"kubernetes", "swarm", "all"} <= extras
    kubernetes = [r for r in requires if r.startswith("kubernetes")]
    docker = [r for r in requires if r.startswith("docker")]
    assert kubernetes and all('extra == "kubernetes"' in r for r in kubernetes), kubernetes
    assert docker and all('extra == "swarm"' in r for r in docker), docker
    everything = [r for r in requires if r.startswith("pytest-rollback-harness[") and 'extra == "all"' in r]
    assert everything and {"kubernetes", "swarm"} <= set(everything[0].split("[")[1].split("]")[0].split(","))

    # The plain install pulled in neither client.
    probe = _run([installed.python, "-c", "import importlib.util as u; print(u.find_spec('kubernetes'))"], REPO)
    assert probe.stdout.strip() == "None"


def test_wheel_builds_without_deprecation_warnings(installed: Installed) -> None:
    warnings = [
        line
        for line in installed.build_output.splitlines()
        if re.search(r"deprecat|SetuptoolsWarning|License classifiers", line, re.I)
    ]
    assert warnings == []
    # The verbose log is really the backend's: an empty log would pass the check above by itself.
    assert "running bdist_wheel" in installed.build_output


def test_installed_plainly_not_editable(installed: Installed) -> None:
    code = (
        "import json, importlib.metadata as m, rollback_harness; "
        "d = m.distribution('pytest-rollback-harness'); "
        "print(json.dumps({'file': rollback_harness.__file__, 'direct_url': d.read_text('direct_url.json')}))"
    )
    shown = _run([installed.python, "-c", code], cwd=Path(installed.wheel).parent)
    assert shown.returncode == 0, shown.stderr
    facts = json.loads(shown.stdout)
    venv = Path(installed.python).parent.parent
    assert Path(facts["file"]).is_relative_to(venv), facts
    assert "editable" not in (facts["direct_url"] or "")
    checked = _run([installed.python, "-m", "pip", "check"], cwd=Path(installed.wheel).parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr  # every requirement is met


def test_the_verify_console_script_is_installed(installed: Installed) -> None:
    """`rollback-harness verify` (docs/evidence.md) comes with a plain install, and `python -m` runs it too."""
    script = Path(installed.python).parent / "rollback-harness"
    for argv in ([str(script)], [installed.python, "-m", "rollback_harness"]):
        shown = _run([*argv, "verify", "--help"], cwd=Path(installed.wheel).parent)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "usage: rollback-harness verify" in shown.stdout and "exit codes:" in shown.stdout


def test_the_built_in_write_up_templates_render_in_the_installed_package(installed: Installed) -> None:
    # The templates are package data: a plain install that left them out writes no incident.md.
    evidence = {
        "incident": {"id": "INC-1", "reason": None},
        "decision": {
            "verdict": "not-assessed",
            "rule": "no decision asked for",
            "inputs": {"severity": None, "data_impact": None, "time_to_fix": None, "migrations_present": None},
            "enforced": False,
            "forced": False,
        },
        "run_id": "INC-1-run",
        "mode": "rollback",
        "headline": "shop: rolled back",
        "service": {"name": "shop"},
        "target": {"name": "app", "kind": "swarm"},
        "requested": "v1.2.9",
        "expect_version": None,
        "from_version": "v1.3.0",
        "to_version": "v1.2.9",
        "outcome": {"status": "rolled-back", "message": ""},
        "exit": {"code": 0, "meaning": "success"},
        "started": "2026-12-03T02:00:00+00:00",
        "finished": "2026-12-03T02:01:00+00:00",
        "duration_s": 60.0,
        "comparisons": [],
        "timeline": [],
        "tests": [],
    }
    code = (
        "import json, sys; from rollback_harness.rollback import incident as i; e = json.loads(sys.argv[1]); "
        "print(json.dumps({'folder': str(i.BUILT_IN_TEMPLATES), 'incident': i.incident_markdown(e), "
        "'status': i.status_markdown(e)}))"
    )
    shown = _run([installed.python, "-c", code, json.dumps(evidence)], cwd=Path(installed.wheel).parent)
    assert shown.returncode == 0, shown.stderr
    facts = json.loads(shown.stdout)
    assert Path(facts["folder"]).is_relative_to(Path(installed.python).parent.parent), facts["folder"]
    assert facts["incident"].startswith("# Incident INC-1: shop, v1.3.0 -> v1.2.9\n")
    assert "## Root cause" in facts["incident"]
    assert facts["status"].startswith("# shop: Mitigated, monitoring\n")


# -- four projects with names like ours --------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """A user's project: files to write, how its tests are run, and its module that must win."""

    files: dict[str, str]
    command: tuple[str, ...]  # ("python", "-m", "pytest") or ("pytest",) with pythonpath = .
    own_module: str
    tests: int

    def write(self, root: Path) -> Path:
        for name, text in self.files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(dedent(text).lstrip())
        return root

    def argv(self, installed: Installed, *args: str) -> list[str]:
        if self.command[0] == "python":
            return [installed.python, *self.command[1:], "-p", "no:cacheprovider", *args]
        return [str(installed.bin / self.command[0]), *self.command[1:], "-p", "no:cacheprovider", *args]


def with_own_module_test(tests: str, name: str) -> str:
    """``tests`` plus a test that ``import name`` finds the project's own module, not ours."""
    folder = "parent" if name == "rollback" else "parent.parent"  # rollback.py is a module, the others packages
    return dedent(tests).lstrip() + dedent(
        f"""

        def test_the_{name}_module_is_the_projects_own():
            from pathlib import Path
            import {name}
            assert Path({name}.__file__).resolve().{folder} == Path(__file__).resolve().parents[1]
        """
    )


PROJECTS = {
    # pytest could not start: Error while loading plugin "pytest11" ... No module named 'plugins.harness'
    "own-plugins-package": Project(
        files={
            "pytest.ini": "[pytest]\ntestpaths = tests\n",
            "plugins/__init__.py": "",
            "plugins/slugs.py": """
                def slug(text):
                    return text.strip().lower().replace(" ", "-")
            """,
            "tests/test_slugs.py": with_own_module_test(
                """
                from plugins.slugs import slug

                def test_slug():
                    assert slug(" Hello World ") == "hello-world"
            """,
                "plugins",
            ),
        },
        command=("python", "-m", "pytest"),
        own_module="plugins",
        tests=2,
    ),
    # Silently loaded the harness's plugins.fixtures: fixture 'user_thing' not found
    "pytest-plugins-in-conftest": Project(
        files={
            "pytest.ini": "[pytest]\ntestpaths = tests\npythonpath = .\n",
            "conftest.py": 'pytest_plugins = ["plugins.fixtures"]\n',
            "plugins/__init__.py": "",
            "plugins/fixtures.py": """
                import pytest

                @pytest.fixture
                def user_thing():
                    return {"owner": "the user"}
            """,
            "tests/test_thing.py": with_own_module_test(
                """
                def test_user_thing(user_thing):
                    assert user_thing == {"owner": "the user"}
            """,
                "plugins",
            ),
        },
        command=("pytest",),
        own_module="plugins",
        tests=2,
    ),
    # No module named 'checks.database', then a collection failure
    "own-checks-package": Project(
        files={
            "pyproject.toml": '[tool.pytest.ini_options]\ntestpaths = ["tests"]\npythonpath = ["."]\n',
            "checks/__init__.py": "",
            "checks/disk.py": """
                def enough_space(free_bytes, needed_bytes):
                    return free_bytes >= needed_bytes
            """,
            "tests/test_disk.py": with_own_module_test(
                """
                from checks.disk import enough_space

                def test_enough_space():
                    assert enough_space(10, 5) and not enough_space(1, 5)
            """,
                "checks",
            ),
        },
        command=("pytest",),
        own_module="checks",
        tests=2,
    ),
    # rollback.py ran at pytest start-up, then: 'rollback' is not a package (exit 3)
    "ops-repo-rollback-py": Project(
        files={
            "pytest.ini": "[pytest]\ntestpaths = tests\n",
            "rollback.py": """
                import sys
                from pathlib import Path

                # An ops script: importing it leaves a trace, so a test can tell who imported it.
                with open(Path(__file__).with_name("rollback-imported.log"), "a") as log:
                    log.write(" ".join(sys.argv) + "\\n")

                def previous(releases, live):
                    return releases[releases.index(live) - 1]
            """,
            "tests/test_rollback_script.py": with_own_module_test(
                """
                import rollback

                def test_previous():
                    assert rollback.previous(["a", "b", "c"], "c") == "b"
            """,
                "rollback",
            ),
        },
        command=("python", "-m", "pytest"),
        own_module="rollback",
        tests=2,
    ),
}


@pytest.fixture(params=sorted(PROJECTS))
def project(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Project, Path]:
    spec = PROJECTS[request.param]
    return spec, spec.write(tmp_path / "project")


def test_project_own_tests_pass(installed: Installed, project: tuple[Project, Path]) -> None:
    spec, root = project

    result = _run(spec.argv(installed), cwd=root)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{spec.tests} passed" in result.stdout


def test_harness_options_and_import_beside_the_project(installed: Installed, project: tuple[Project, Path]) -> None:
    spec, root = project

    helped = _run(spec.argv(installed, "--help"), cwd=root)
    # Their module and ours, imported side by side from the project's folder.
    code = (
        f"import json, rollback_harness, {spec.own_module}; "
        f"print(json.dumps([rollback_harness.__file__, {spec.own_module}.__file__]))"
    )
    imported = _run([installed.python, "-c", code], cwd=root)

    assert helped.returncode == 0, helped.stdout + helped.stderr
    assert "--rollback-to=VERSION" in helped.stdout and "--rollback-dry-run" in helped.stdout
    assert imported.returncode == 0, imported.stderr
    ours, theirs = (Path(p) for p in json.loads(imported.stdout))
    assert ours.is_relative_to(Path(installed.python).parent.parent)
    assert theirs.is_relative_to(root)
    if spec.own_module == "rollback":
        # Only the python -c above imported it: pytest --help never ran the user's script.
        assert (root / "rollback-imported.log").read_text().splitlines() == ["-c"]


def test_harness_dry_run_beside_the_project(
    installed: Installed, project: tuple[Project, Path], demo: Deployment
) -> None:
    spec, root = project
    reports = root.parent / "reports"

    result = _run(
        spec.argv(
            installed,
            f"--rollback-config={demo.config_path}",
            f"--report-dir={reports}",
            "--rollback-to",
            "v1.2.9",
            "--rollback-dry-run",
        ),
        cwd=root,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo: dry run: nothing was changed" in result.stdout
    evidence = read_evidence(reports)
    assert evidence["outcome"]["status"] == "dry-run"
    # The runbook's gates and the project's own tests ran in one session.
    assert any(t["gate"] == "preflight" for t in evidence["tests"])
    own = [t for t in evidence["tests"] if t["gate"] is None]
    assert len(own) == spec.tests and all(t["outcome"] == "passed" for t in own), own
    assert demo.linked_version() == "v1.3.0"
