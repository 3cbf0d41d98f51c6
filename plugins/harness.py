"""The pytest11 entry point: options, markers, collection and phase ordering.

Inert unless ``--rollback-to`` or ``--rollback-gate`` is given, so installing the harness changes
nothing for ordinary test runs (gate-marked tests are skipped there, saying why). Evidence, the
HTML report and exit codes live in plugins/report.py.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..rollback import run_files
from .fixtures import (  # noqa: F401  (fixtures are found in the plugin's namespace)
    _rollback_gate,
    gate_marker,
    gate_phase,
    recorded_outcome,
    rollback_base_url,
    rollback_db_engine,
    rollback_http,
    rollback_outcome,
)
from .ini import INI_CONFIG, INI_REPORT_DIR, INI_TARGET, ini_path, target_option
from .items import (
    GATE_PROPERTY,
    OWN_SECONDS_KEY,
    PHASE_KEY,
    SPEC_KEY,
    RunbookFile,
    check_specs,
    remember_selected,
)
from .progress import ProgressRelay, WorkerProgress
from .state import (
    MODE_GATE_PREFLIGHT,
    MODE_GATE_VERIFY,
    MODE_ROLLBACK,
    PHASE_ORDER,
    RUN_KEY,
    TARGET_KEY,
    UNGATED_ORDER,
    HarnessRun,
    new_run_id,
    run_for,
)

if TYPE_CHECKING:
    from ..rollback.config import HarnessConfig, TargetSpec


# The features: plugins implementing the hooks below, registered with this module (plugins/features.py).
pytest_plugins = ("rollback_harness.plugins.features",)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


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
        help="Harness config file (default: ini rollback_config, else rollback.toml or [tool.rollback] in "
        "pyproject.toml in the current folder or a parent up to the rootdir)",
    )
    group.addoption(
        "--rollback-target",
        dest="rollback_target",
        metavar="NAME",
        help="Target to act on when the config names several (default: ini rollback_target)",
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
        "--rollback-fast",
        dest="rollback_fast",
        action="store_true",
        help="Emergency mode: the baseline takes one probe per check, and a driver with an emergency mode "
        "trades its rollout safety for speed (swarm: every task at once, a 1 s failure watch); preflight and "
        "verify run in full; the report says what was traded",
    )
    # The short spellings came first; they stay as aliases.
    group.addoption(
        "--rollback-gate",
        "--gate",
        dest="rollback_gate",
        choices=("preflight", "verify"),
        help="Run one gate only, without a rollback: 'preflight' (needs --rollback-to) or 'verify'",
    )
    group.addoption(
        "--rollback-expect-version",
        "--expect-version",
        dest="rollback_expect_version",
        metavar="VERSION",
        help="Version the verify gate expects (default: the version the target's platform says is live)",
    )
    group.addoption(
        "--rollback-report-dir",
        "--report-dir",
        dest="rollback_report_dir",
        metavar="DIR",
        help="Where each run's report folder is written (default: ini rollback_report_dir, else reports/ "
        "in the rootdir)",
    )
    parser.addini(INI_CONFIG, "Harness config file, relative to the ini file (--rollback-config wins)")
    parser.addini(
        INI_REPORT_DIR, "Where run folders are written, relative to the ini file (--rollback-report-dir wins)"
    )
    parser.addini(INI_TARGET, "Target to act on when the config names several (--rollback-target wins)")


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
    """The kind of run the options ask for; a usage error for options that would do nothing."""
    option = config.option
    gate = option.rollback_gate
    _check_version_option(option.rollback_to)
    given = {
        "--rollback-dry-run": option.rollback_dry_run,
        "--rollback-yes": option.rollback_yes,
        "--rollback-fast": option.rollback_fast,
        "--rollback-expect-version": option.rollback_expect_version,
    }
    if gate == "verify":
        if option.rollback_to:
            raise pytest.UsageError("--rollback-gate verify runs no rollback: drop --rollback-to, or drop the gate")
        _refuse(
            given,
            ("--rollback-dry-run", "--rollback-yes", "--rollback-fast"),
            "applies to a rollback; --rollback-gate verify changes nothing",
        )
        return MODE_GATE_VERIFY
    if gate == "preflight":
        if not option.rollback_to:
            raise pytest.UsageError("--rollback-gate preflight needs --rollback-to VERSION: the version to check")
        _refuse(
            given,
            ("--rollback-dry-run", "--rollback-yes", "--rollback-expect-version"),
            "does nothing in --rollback-gate preflight, which only checks and changes nothing",
        )
        return MODE_GATE_PREFLIGHT
    if option.rollback_to:
        if option.rollback_dry_run and option.rollback_yes:
            raise pytest.UsageError(
                "--rollback-yes answers the confirmation prompt, which --rollback-dry-run never asks: drop one of them"
            )
        if option.rollback_expect_version:
            raise pytest.UsageError(
                "--rollback-expect-version is for --rollback-gate verify; after --rollback-to the verify gate "
                "expects the target"
            )
        return MODE_ROLLBACK
    ini_names = {
        "--rollback-target": INI_TARGET,
        "--rollback-config": INI_CONFIG,
        "--rollback-report-dir": INI_REPORT_DIR,
    }
    # The ini options share their names with these options' dests.
    given.update({flag: getattr(option, name) for flag, name in ini_names.items()})
    for flag, value in given.items():
        if value:
            hint = f"; a default kept in the ini file goes in its {ini_names[flag]} option" if flag in ini_names else ""
            raise pytest.UsageError(f"{flag} needs --rollback-to VERSION or --rollback-gate verify{hint}")
    return None


def _refuse(given: dict[str, object], flags: tuple[str, ...], why: str) -> None:
    for flag in flags:
        if given[flag]:
            raise pytest.UsageError(f"{flag} {why}: drop {flag}")


def _config_path(config: pytest.Config) -> Path:
    """--rollback-config, else the ini option, else the first config found from here up to the rootdir."""
    from ..rollback.config import find_config_path
    from ..rollback.errors import ConfigError

    explicit = config.option.rollback_config
    if not explicit:
        ini = ini_path(config, INI_CONFIG)
        if ini is not None:
            if not ini.is_file():
                raise ConfigError(f"{INI_CONFIG} = {ini} (in {config.inipath}): no such file")
            return ini.resolve()
    here, root = config.invocation_params.dir, config.rootpath
    folders = [here]
    if here.is_relative_to(root):
        folders += [parent for parent in here.parents if parent.is_relative_to(root)]
    return find_config_path(explicit, *folders, root)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for name in ("rollback_gate", "gate"):  # gate: the short alias, kept
        config.addinivalue_line(
            "markers",
            f"{name}(phase): run this test as a gate of the rollback runbook; phase is 'preflight' "
            "(before any change; a failure refuses the rollback), 'baseline' (evidence before) or "
            "'verify' (after the rollback)",
        )
    mode = _mode(config)
    config.hook.pytest_rollback_check_options(config=config, mode=mode)
    if mode is None:
        return
    if getattr(config.option, "dist", "no") == "each":
        raise pytest.UsageError("--dist each would run the runbook on every worker: use -n N with another --dist mode")
    _handle_sigterm(config)  # from here on: a CI cancel during start-up must leave nothing behind either
    try:
        _configure_run(config, mode)
    except KeyboardInterrupt as exc:
        # pytest says nothing of an interrupt before the session starts: say it, and that nothing changed.
        why = str(exc) or "interrupted (Ctrl-C)"
        sys.stderr.write(f"[rollback] {why} during start-up, before any check ran: nothing was changed\n")
        raise


def _configure_run(config: pytest.Config, mode: str) -> None:
    """Read the config, make the run folder and the run, and set up the evidence."""
    harness_config, target_spec = _load(config, mode)
    config.hook.pytest_rollback_config_loaded(
        config=config, harness_config=harness_config, target_spec=target_spec, report_base=_report_base(config)[0]
    )
    worker = getattr(config, "workerinput", None)
    run_id, run_dir = _run_folder(config, worker)
    try:
        run = _start_run(config, mode, harness_config, target_spec, (run_id, run_dir), worker)
    except BaseException:  # a usage error or SIGTERM before the evidence is set up: leave no empty folders
        started = config.stash.get(RUN_KEY, None)
        if worker is None and started is not None:
            config.hook.pytest_rollback_remove_empty_folders(run=started)
        if worker is None:
            _remove_empty(run_dir)
        raise
    if config.option.collectonly:
        # Listing the runbook's checks is not a run: no evidence, no report folder.
        config.hook.pytest_rollback_remove_empty_folders(run=run)
        run_dir.rmdir()
        return
    _default_report_paths(config, run_dir, worker)
    from .report import EvidenceReporter

    config.pluginmanager.register(EvidenceReporter(run, config), "rollback-evidence")


def _start_run(
    config: pytest.Config,
    mode: str,
    harness_config: HarnessConfig,
    target_spec: TargetSpec | None,
    folder: tuple[str, Path],
    worker: dict[str, str] | None,
) -> HarnessRun:
    """The run, in ``config.stash``, with every feature's part set up (plugins/hookspecs.py)."""
    settings: dict[str, object] = {}
    for found in config.hook.pytest_rollback_run_settings(config=config, mode=mode):
        settings.update(found)
    run = HarnessRun(
        mode=mode,
        config=harness_config,
        target_spec=target_spec,
        requested=config.option.rollback_to,
        expect_version=config.option.rollback_expect_version,
        dry_run=config.option.rollback_dry_run,
        assume_yes=config.option.rollback_yes,
        fast=config.option.rollback_fast,
        run_id=folder[0],
        run_dir=folder[1],
        is_worker=worker is not None,
        **settings,  # type: ignore[arg-type]
    )
    run.hook = config.hook
    _attach_progress(config, run, worker)
    config.stash[RUN_KEY] = run
    config.hook.pytest_rollback_run_made(config=config, run=run)
    return run


def _load(config: pytest.Config, mode: str) -> tuple[HarnessConfig, TargetSpec | None]:
    """The config file, and the target it picks (None for a fleet); a usage error when it is wrong."""
    from ..rollback.config import load_config
    from ..rollback.errors import ConfigError

    try:
        harness_config = load_config(_config_path(config))
        fleet_targets = config.hook.pytest_rollback_fleet_targets(config=config, harness_config=harness_config)
        target_spec = None if fleet_targets is not None else _target_spec(config, harness_config, mode)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    return harness_config, target_spec


def _run_folder(config: pytest.Config, worker: dict[str, str] | None) -> tuple[str, Path]:
    """The run's id and folder: the controller's on an xdist worker, else made here and proven writable."""
    if worker is not None:
        return worker["rollback_run_id"], Path(worker["rollback_run_dir"])
    default = new_run_id()
    run_id = config.hook.pytest_rollback_run_id(config=config, default=default) or default
    base, source = _report_base(config)
    run_dir = base / run_id
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise pytest.UsageError(
            f"{source}: cannot create {run_dir}: {_os_reason(exc)}; nothing was changed. "
            "Pass --rollback-report-dir DIR with a folder this user can write"
        ) from None
    # --co writes nothing: no need to prove the folder takes the evidence (an fsync of 256 KB).
    try:
        problem = None if config.option.collectonly else _write_test(run_dir)
    except BaseException:  # SIGTERM or Ctrl-C during the test: the folder holds nothing yet
        _remove_empty(run_dir)
        raise
    if problem is not None:
        _remove_empty(run_dir)
        raise pytest.UsageError(
            f"{source}: cannot write in {run_dir}: {problem}; nothing was changed. "
            "Free space there or pass --rollback-report-dir DIR"
        )
    return run_id, run_dir


def _attach_progress(config: pytest.Config, run: HarnessRun, worker: dict[str, str] | None) -> None:
    if worker is not None:
        # The controller shows it (plugins/progress.py): a worker's terminal goes nowhere.
        progress = WorkerProgress(run.run_dir, worker["workerid"], run.redactor.text)
        config.pluginmanager.register(progress, "rollback-worker-progress")
        run.progress = progress.write
    else:
        run.progress = _progress_writer(config, run.redactor.text)


def _default_report_paths(config: pytest.Config, run_dir: Path, worker: object) -> None:
    """The HTML report and JUnit XML go in the run folder unless the command line put them elsewhere."""
    # Each only when its plugin is there: -p no:html or -p no:junitxml leave the option out.
    if worker is None and hasattr(config.option, "htmlpath") and not config.option.htmlpath:
        config.option.htmlpath = str(run_dir / run_files.REPORT)
        config.option.self_contained_html = True
    if worker is None and hasattr(config.option, "xmlpath") and not config.option.xmlpath:
        # JUnit XML for CI systems that read test results, beside the other evidence.
        config.option.xmlpath = str(run_dir / run_files.JUNIT)


def _target_spec(config: pytest.Config, harness_config: HarnessConfig, mode: str) -> TargetSpec | None:
    """The target, picked as a rollback picks it; a verify gate told what to expect may have none."""
    name = target_option(config)
    if mode == MODE_GATE_VERIFY and name is None and len(harness_config.targets) != 1:
        if config.option.rollback_expect_version:
            return None
        from ..rollback.errors import ConfigError

        raise ConfigError(
            f"{harness_config.path}: several targets are configured ({', '.join(sorted(harness_config.targets))}); "
            "the verify gate asks one which version is deployed: choose it with --rollback-target NAME, or pass "
            "--rollback-expect-version VERSION"
        )
    return harness_config.target(name)


def _report_base(config: pytest.Config) -> tuple[Path, str]:
    """--rollback-report-dir, else the ini option, else reports/ in the rootdir; and which it was."""
    report_dir = config.option.rollback_report_dir
    if report_dir:
        return Path(report_dir).expanduser().resolve(), "--rollback-report-dir"
    ini = ini_path(config, INI_REPORT_DIR)
    if ini is not None:
        return ini.resolve(), f"{INI_REPORT_DIR} (in {config.inipath})"
    return config.rootpath / "reports", "the report folder"


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
                _own_line(config, reporter, line)
        else:
            _own_line(config, reporter, line)

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
    except OSError as exc:
        return _os_reason(exc)
    finally:  # also when interrupted (SIGTERM, Ctrl-C): never leave 256 KB of zeros in the evidence folder
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    return None


def _os_reason(exc: OSError) -> str:
    """``No space left on device (ENOSPC)``: the OS's words and the code to search for."""
    code = errno.errorcode.get(exc.errno or 0)
    reason = exc.strerror or str(exc)
    return f"{reason} ({code})" if code else reason


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _handle_sigterm(config: pytest.Config) -> None:
    """SIGTERM (a CI cancel, ``timeout``) ends the run the way Ctrl-C does.

    pytest's interrupted path then runs: the step in flight is journaled as interrupted, the
    evidence is written, and the exit code is 2 with a headline that says it was terminated.
    The previous handler comes back when pytest unconfigures.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def terminated(signum: int, frame: object) -> None:
        run = config.stash.get(RUN_KEY, None)
        if run is not None:  # None: still starting up, nothing changed yet
            run.terminated_by = "SIGTERM"
        raise KeyboardInterrupt("terminated by SIGTERM")

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

    signal.signal(signal.SIGTERM, terminated)
    config.add_cleanup(restore)


def _own_line(config: pytest.Config, reporter: pytest.TerminalReporter, line: str) -> None:
    """A line of its own: never glued onto the progress dots of -q, nor cut into a file's dots."""
    reporter.ensure_newline()
    writer = config.get_terminal_writer()
    if writer.width_of_current_line:
        writer.line()
    writer.line(line)


RELAY_KEY = pytest.StashKey[ProgressRelay]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under xdist the controller shows the progress the runbook's worker writes."""
    config = session.config
    run = config.stash.get(RUN_KEY, None)
    if run is None or run.is_worker or not config.pluginmanager.has_plugin("dsession"):
        return
    relay = ProgressRelay(run.run_dir, run.progress)
    config.stash[RELAY_KEY] = relay
    config.pluginmanager.register(relay, "rollback-progress-relay")
    relay.start()


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    """The process that ran the runbook lets go of the target's lock, after every writer,
    whether they succeeded or not; the controller stops relaying the workers' progress."""
    run = session.config.stash.get(RUN_KEY, None)
    # A fleet: each target's run, as a run on one target.
    members = [member for member in run.members() if member.runbook is not None] if run is not None else []
    for member in members:
        _finish_actions(member, session.config)
        if session.exitstatus == 0:
            _cleanup_after_verified_rollback(member)
    try:
        return (yield)
    finally:
        for member in members:
            assert member.runbook is not None
            member.runbook.close()
        relay = session.config.stash.get(RELAY_KEY, None)
        if relay is not None:
            relay.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Tally the verify gates this process ran (the one that holds the runbook runs them all)."""
    report = yield
    run = run_for(item.config, item) if RUN_KEY in item.config.stash else None
    if run is not None:
        _own_duration(item, report)
    if run is not None and dict(report.user_properties).get(GATE_PROPERTY) == "verify":
        if report.failed:
            run.verify_failed = True
        elif report.when == "call" and report.passed:
            run.verify_passed += 1
    return report


def _own_duration(item: pytest.Item, report: pytest.TestReport) -> None:
    """Each runbook item reports its own time (junit.xml, the HTML, evidence.json): a check's call, the
    check itself (not its wait for the phase's others); the setup that ran the rollback, without it."""
    root = item.config.stash[RUN_KEY]
    if report.when == "setup" and root.rollback_wall_s:
        report.duration = max(0.0, report.duration - root.rollback_wall_s)
        root.rollback_wall_s = 0.0
    if report.when == "call" and OWN_SECONDS_KEY in item.stash:
        report.duration = item.stash[OWN_SECONDS_KEY]


def _finish_actions(run: HarnessRun, config: pytest.Config) -> None:
    """The actions around the rollback (traffic, flags...) finish once verify has spoken."""
    assert run.runbook is not None
    if not run.runbook.started_actions:
        return
    verified = not run.verify_failed and run.verify_passed > 0
    if run.mode == MODE_GATE_VERIFY:  # the runbook of --rollback-on-failure: verified after it
        verified = bool(config.hook.pytest_rollback_actions_verified(run=run, config=config))
    for problem in run.runbook.finish(verified=verified):
        run.finish_problems.append(problem)
        run.progress(problem)


def _cleanup_after_verified_rollback(run: HarnessRun) -> None:
    """The driver's cleanup (e.g. removing the replaced image), before the evidence is written."""
    from ..rollback.runbook import STATUS_ROLLED_BACK

    outcome = recorded_outcome(run)
    if outcome is None or outcome.status != STATUS_ROLLED_BACK or run.verify_failed or not run.verify_passed:
        return
    assert run.runbook is not None
    problem = run.runbook.cleanup()
    if problem is not None:
        run.progress(problem)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """xdist: the runbook's gates on one worker, in order; see plugins/scheduling.py."""
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        return None
    from .scheduling import RunbookScheduling

    return RunbookScheduling(config, log, run.run_dir)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # type: ignore[no-untyped-def]
    """xdist: every worker shares the controller's run id and run folder."""
    run = node.config.stash.get(RUN_KEY, None)
    if run is not None:
        node.workerinput["rollback_run_id"] = run.run_id
        node.workerinput["rollback_run_dir"] = str(run.run_dir)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> RunbookFile | None:
    """The config file named on the command line (``pytest rollback.toml::verify-version``)."""
    run = parent.config.stash.get(RUN_KEY, None)
    if run is not None and file_path == run.config.path and parent.session.isinitpath(file_path):
        runbook: RunbookFile = RunbookFile.from_parent(parent, path=file_path)
        return runbook
    return None


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """The runbook joins every run, first; named on the command line, it is collected from there."""
    report = yield
    if isinstance(collector, pytest.Session) and RUN_KEY in collector.config.stash:
        run = collector.config.stash[RUN_KEY]
        path = run.config.path
        if collector.isinitpath(path):
            return report  # pytest_collect_file makes it where the argument points
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
        _skip_gates(items)
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
        kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    # A stable sort: within a phase, collection order is kept.
    kept.sort(key=lambda item: PHASE_ORDER.get(_item_phase(item) or "", UNGATED_ORDER))
    items[:] = kept


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is None:
        return
    remember_selected(session.items, run)
    worker = getattr(session.config, "workerinput", None)
    if worker is not None:
        from .scheduling import write_gate_ids

        # Before xdist sends this worker's collection (tryfirst): the controller's scheduler reads it.
        gates = [item.nodeid for item in session.items if _item_phase(item) is not None]
        write_gate_ids(run.run_dir, worker["workerid"], gates)
    # Under xdist the controller has no items and workers cannot refuse: the exit code does it.
    in_process = worker is None and getattr(session.config.option, "dist", "no") == "no"
    if run.rolls_back and not run.dry_run and in_process:
        if not any(_item_phase(item) == "verify" for item in session.items):
            # Refused before anything changes: a rollback nobody verifies is never a success.
            raise pytest.UsageError(
                "-k/-m deselected every verify gate: a rollback must be verified, nothing was changed; "
                "keep at least verify-version selected, or use --rollback-dry-run / --rollback-gate preflight"
            )
        missing = missing_required_checks(run, session.items)
        if missing:
            raise pytest.UsageError(
                f"deselected {', '.join(missing)}: a rollback is verified only when the service's answers and "
                "the platform's census were both checked; nothing was changed. Keep them selected (deselect "
                "others with -k 'not latency' and the like), or use --rollback-dry-run / --rollback-gate preflight"
            )


# Verify checks a rollback cannot do without: the answers, and the platform's census.
REQUIRED_IN_A_ROLLBACK = ("version", "replicas")


def missing_required_checks(run: HarnessRun, items: list[pytest.Item]) -> list[str]:
    """The required verify items (per target of a fleet) that -k, -m, --deselect or node ids left out."""
    kept = {
        (item.stash.get(TARGET_KEY, None), item.stash[SPEC_KEY])
        for item in items
        if SPEC_KEY in item.stash and item.stash.get(PHASE_KEY, None) == "verify"
    }
    owners = list(run.fleet.items()) if run.is_fleet else [(None, run)]
    missing = []
    for target, owner in owners:
        configured = {spec.key for spec in check_specs(owner)}
        for key in REQUIRED_IN_A_ROLLBACK:
            if key in configured and (target, key) not in kept:
                missing.append(f"verify-{key}" + (f" of {target}" if target is not None else ""))
    return missing


def _skip_gates(items: list[pytest.Item]) -> None:
    """An ordinary run (no harness options): a gate has nothing to guard, so it is skipped, saying why.

    A skip mark, not a skip in a fixture: the session fixtures a gate uses would fail first.
    """
    for item in items:
        phase = _item_phase(item)
        if phase is not None:
            reason = (
                f"gate({phase!r}) runs in a harness run only: pytest --rollback-to VERSION, or --rollback-gate verify"
            )
            item.add_marker(pytest.mark.skip(reason=reason))


def _item_phase(item: pytest.Item) -> str | None:
    if PHASE_KEY in item.stash:  # the runbook's own items, in phases of their own after verify too
        return item.stash[PHASE_KEY]
    marker = gate_marker(item)
    if marker is None:
        return None
    try:
        return gate_phase(*marker.args, **marker.kwargs)
    except (TypeError, ValueError) as exc:
        raise pytest.UsageError(f"{item.nodeid}: bad @pytest.mark.{marker.name}: {exc}") from None
