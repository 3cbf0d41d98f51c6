"""The pytest11 entry point: options, markers, collection and phase ordering.

Inert unless ``--rollback-to`` or ``--gate`` is given, so installing the harness changes nothing
for ordinary test runs. Evidence, the HTML report and exit codes live in plugins/report.py.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections.abc import Callable, Generator
from pathlib import Path

import pytest

from rollback_harness.plugins.fixtures import (  # noqa: F401  (fixtures are found in the plugin's namespace)
    _rollback_gate,
    gate_phase,
    rollback_base_url,
    rollback_db_engine,
    rollback_http,
    rollback_outcome,
)
from rollback_harness.plugins.items import GATE_PROPERTY, RunbookFile, remember_selected
from rollback_harness.plugins.state import (
    MODE_GATE_PREFLIGHT,
    MODE_GATE_VERIFY,
    MODE_ROLLBACK,
    PHASE_ORDER,
    RUN_KEY,
    UNGATED_ORDER,
    XDIST_GROUP,
    HarnessRun,
    new_run_id,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rollback", "rollback harness")
    group.addoption(
        "--rollback-to",
        dest="rollback_to",
        metavar="VERSION",
        help="Roll the target back to VERSION ('previous' means the one before the live one)",
    )
    group.addoption(
        "--rollback-config",
        dest="rollback_config",
        metavar="PATH",
        help="Harness config file (default: rollback.toml in the rootdir, else [tool.rollback] in pyproject.toml)",
    )
    group.addoption(
        "--rollback-target",
        dest="rollback_target",
        metavar="NAME",
        help="Target to act on when the config names several",
    )
    group.addoption(
        "--rollback-dry-run",
        dest="rollback_dry_run",
        action="store_true",
        help="Run preflight and baseline and print the plan, but change nothing",
    )
    group.addoption(
        "--rollback-yes",
        dest="rollback_yes",
        action="store_true",
        help="Proceed without the confirmation prompt (needed without a TTY)",
    )
    group.addoption(
        "--gate",
        dest="rollback_gate",
        choices=("preflight", "verify"),
        help="Run one gate only, without a rollback: 'preflight' (needs --rollback-to) or 'verify'",
    )
    group.addoption(
        "--expect-version",
        dest="rollback_expect_version",
        metavar="VERSION",
        help="Version the verify gate expects the service to answer",
    )
    group.addoption(
        "--report-dir",
        dest="rollback_report_dir",
        metavar="DIR",
        help="Where each run's report folder is written (default: reports/ in the rootdir)",
    )


def _check_version_option(value: str | None) -> None:
    """An empty or path-like --rollback-to is a usage error (pytest would even take a path as rootdir)."""
    if value is None:
        return
    if not value.strip():
        raise pytest.UsageError("--rollback-to needs a version, e.g. --rollback-to v1.2.9 or --rollback-to previous")
    if "/" in value or "\\" in value or value.startswith(("~", ".")):
        raise pytest.UsageError(
            f"--rollback-to {value!r} looks like a path, not a version: give a release name such as v1.2.9"
        )


def _mode(config: pytest.Config) -> str | None:
    option = config.option
    gate = option.rollback_gate
    _check_version_option(option.rollback_to)
    if gate == "verify":
        if option.rollback_to:
            raise pytest.UsageError("--gate verify runs no rollback: drop --rollback-to, or drop --gate")
        if option.rollback_dry_run:
            raise pytest.UsageError("--rollback-dry-run applies to a rollback; --gate verify changes nothing anyway")
        return MODE_GATE_VERIFY
    if gate == "preflight":
        if not option.rollback_to:
            raise pytest.UsageError("--gate preflight needs --rollback-to VERSION: the version to check")
        return MODE_GATE_PREFLIGHT
    if option.rollback_to:
        if option.rollback_expect_version:
            raise pytest.UsageError(
                "--expect-version is for --gate verify; after --rollback-to the verify gate expects the target"
            )
        return MODE_ROLLBACK
    for flag, value in (
        ("--rollback-dry-run", option.rollback_dry_run),
        ("--expect-version", option.rollback_expect_version),
    ):
        if value:
            raise pytest.UsageError(f"{flag} needs --rollback-to VERSION or --gate verify")
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gate(phase): run this test as a gate of the rollback runbook; phase is 'preflight' "
        "(before any change; a failure refuses the rollback), 'baseline' (evidence before) or "
        "'verify' (after the rollback)",
    )
    mode = _mode(config)
    if mode is None:
        return
    from rollback_harness.rollback.config import find_config_path, load_config
    from rollback_harness.rollback.errors import ConfigError

    try:
        path = find_config_path(config.option.rollback_config, config.invocation_params.dir, config.rootpath)
        harness_config = load_config(path)
        target_spec = None
        if mode != MODE_GATE_VERIFY:
            target_spec = harness_config.target(config.option.rollback_target)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None

    worker = getattr(config, "workerinput", None)
    if worker is not None:
        run_id, run_dir = worker["rollback_run_id"], Path(worker["rollback_run_dir"])
        if worker.get("rollback_loadgroup"):
            # Workers parse the original command line, not the controller's options: this is
            # how xdist's worker side learns that the controller schedules by group.
            config.option.loadgroup = True
            config.pluginmanager.register(XdistGroupNames(), "rollback-xdist-group-names")
    else:
        run_id = new_run_id()
        report_dir = config.option.rollback_report_dir
        base = Path(report_dir).expanduser().resolve() if report_dir else config.rootpath / "reports"
        run_dir = base / run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise pytest.UsageError(f"--report-dir: cannot create {run_dir}: {exc.strerror}") from None
    if worker is None:
        problem = _write_test(run_dir)
        if problem is not None:
            _remove_empty(run_dir)
            raise pytest.UsageError(
                f"--report-dir: cannot write in {run_dir}: {problem}; nothing was changed. "
                "Free space there or pass --report-dir DIR"
            )

    run = HarnessRun(
        mode=mode,
        config=harness_config,
        target_spec=target_spec,
        requested=config.option.rollback_to,
        expect_version=config.option.rollback_expect_version,
        dry_run=config.option.rollback_dry_run,
        assume_yes=config.option.rollback_yes,
        run_id=run_id,
        run_dir=run_dir,
        is_worker=worker is not None,
    )
    run.progress = _progress_writer(config, run.redactor.text)
    config.stash[RUN_KEY] = run
    _handle_sigterm(config, run)

    if config.option.collectonly:
        # Listing the runbook's checks is not a run: no evidence, no report folder.
        run_dir.rmdir()
        return
    # Each only when its plugin is there: -p no:html or -p no:junitxml leave the option out.
    if worker is None and hasattr(config.option, "htmlpath") and not config.option.htmlpath:
        config.option.htmlpath = str(run_dir / "report.html")
        config.option.self_contained_html = True
    if worker is None and hasattr(config.option, "xmlpath") and not config.option.xmlpath:
        # JUnit XML for CI systems that read test results, beside the other evidence.
        config.option.xmlpath = str(run_dir / "junit.xml")
    if getattr(config.option, "dist", "no") not in ("no", "loadgroup"):
        # The runbook is a sequence, and a phase's checks run together: every gate goes to one
        # worker, in order. Other tests still spread over the workers.
        config.option.dist = "loadgroup"

    from rollback_harness.plugins.report import EvidenceReporter

    config.pluginmanager.register(EvidenceReporter(run, config), "rollback-evidence")


def _progress_writer(config: pytest.Config, redact: Callable[[str], str]) -> Callable[[str], None]:
    """Progress lines on the terminal, shown even while pytest captures output."""

    def write(message: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        line = f"[rollback] {redact(message)}"
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            reporter.write_line(line)

    return write


# Written and removed before anything changes: evidence must fit where it will be written.
WRITE_TEST_BYTES = 256 * 1024


def _write_test(run_dir: Path) -> str | None:
    """None when ``run_dir`` takes a file of WRITE_TEST_BYTES, else the OS's reason why not."""
    probe = run_dir / ".write-test"
    try:
        with probe.open("wb") as handle:
            handle.write(bytes(WRITE_TEST_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
        code = errno.errorcode.get(exc.errno or 0)
        return f"{exc.strerror or exc} ({code})" if code else str(exc.strerror or exc)
    return None


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _handle_sigterm(config: pytest.Config, run: HarnessRun) -> None:
    """SIGTERM (a CI cancel, ``timeout``) ends the run the way Ctrl-C does.

    pytest's interrupted path then runs: the step in flight is journaled as interrupted, the
    evidence is written, and the exit code is 2 with a headline that says it was terminated.
    The previous handler comes back when pytest unconfigures.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def terminated(signum: int, frame: object) -> None:
        run.terminated_by = "SIGTERM"
        raise KeyboardInterrupt("terminated by SIGTERM")

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

    signal.signal(signal.SIGTERM, terminated)
    config.add_cleanup(restore)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    """The process that ran the runbook lets go of the target's lock, after every writer,
    whether they succeeded or not."""
    try:
        return (yield)
    finally:
        run = session.config.stash.get(RUN_KEY, None)
        if run is not None and run.runbook is not None:
            run.runbook.close()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # type: ignore[no-untyped-def]
    """xdist: every worker shares the controller's run id and run folder."""
    run = node.config.stash.get(RUN_KEY, None)
    if run is not None:
        node.workerinput["rollback_run_id"] = run.run_id
        node.workerinput["rollback_run_dir"] = str(run.run_dir)
        node.workerinput["rollback_loadgroup"] = node.config.option.dist == "loadgroup"


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if isinstance(collector, pytest.Session) and RUN_KEY in collector.config.stash:
        run = collector.config.stash[RUN_KEY]
        path = run.config.path
        # Named by its path from the rootdir; a config outside it by its file name alone.
        nodeid = (
            path.relative_to(collector.config.rootpath).as_posix()
            if path.is_relative_to(collector.config.rootpath)
            else path.name
        )
        runbook = RunbookFile.from_parent(collector, path=path, nodeid=nodeid)
        report.result.insert(0, runbook)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if RUN_KEY not in config.stash:
        return
    run = config.stash[RUN_KEY]
    deselected = []
    kept = []
    for item in items:
        phase = _item_phase(item)
        if phase is not None and phase not in run.phases:
            deselected.append(item)
            continue
        if phase is not None:
            item.user_properties.append((GATE_PROPERTY, phase))
            if config.pluginmanager.has_plugin("xdist"):
                # With --dist loadgroup (set in pytest_configure) every gate goes to one
                # worker, in this order. (On a worker, config.option.dist already reads "no".)
                item.add_marker(pytest.mark.xdist_group(XDIST_GROUP))
        kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    # A stable sort: within a phase, collection order is kept.
    kept.sort(key=lambda item: PHASE_ORDER.get(_item_phase(item) or "", UNGATED_ORDER))
    items[:] = kept


def pytest_collection_finish(session: pytest.Session) -> None:
    if RUN_KEY in session.config.stash:
        run = session.config.stash[RUN_KEY]
        remember_selected(session.items, run)
        # Under xdist the controller has no items and workers cannot refuse: the exit code does it.
        in_process = not run.is_worker and getattr(session.config.option, "dist", "no") == "no"
        if run.rolls_back and not run.dry_run and in_process:
            if not any(_item_phase(item) == "verify" for item in session.items):
                # Refused before anything changes: a rollback nobody verifies is never a success.
                raise pytest.UsageError(
                    "-k/-m deselected every verify gate: a rollback must be verified, nothing was changed; "
                    "keep at least verify-version selected, or use --rollback-dry-run / --gate preflight"
                )


def _item_phase(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("gate")
    if marker is None:
        return None
    try:
        return gate_phase(*marker.args, **marker.kwargs)
    except (TypeError, ValueError) as exc:
        raise pytest.UsageError(f"{item.nodeid}: bad @pytest.mark.gate: {exc}") from None


class XdistGroupNames:
    """Makes ``--dist loadgroup`` group the runbook's gates under pytest >= 9.2.

    xdist's worker appends ``@group`` to node ids by assigning ``item._nodeid``; pytest 9.2
    keeps node ids in ``item._id`` instead, so the suffix silently never appears and the
    controller spreads the gates over all workers. This runs after xdist's own hook and adds
    the suffix where it is missing, for any pytest version.
    """

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            marker = item.get_closest_marker("xdist_group")
            if marker is None:
                continue
            suffix = "@" + str(marker.args[0] if marker.args else marker.kwargs.get("name", "default"))
            if item.nodeid.endswith(suffix):
                continue  # xdist managed it (pytest < 9.2)
            renamed = item.nodeid + suffix
            if hasattr(item, "_id"):
                from _pytest.nodeid import coerce_node_id

                item._id = coerce_node_id(renamed)
            else:
                item._nodeid = renamed  # type: ignore[attr-defined]
