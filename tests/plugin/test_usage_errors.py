"""Bad options and bad config: one clear error, exit code 4, no traceback, nothing run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

GOOD = """
[service]
name = "shop"
base_url = "http://127.0.0.1:9"

[targets.web]
kind = "symlink"
releases_dir = "releases"
current_link = "current"
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text
    assert not list(pytester.path.glob("reports/*"))  # not even an empty run folder
    return result


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (GOOD + "colour = 1\n", "*rollback.toml: targets.web.colour: unknown key; accepted keys here: *current_link*"),
        (GOOD.replace('name = "shop"', 'name = "shop"\ncolour = 1'), "*service.colour: unknown key*base_url*"),
        (
            GOOD.replace('"symlink"', '"k8s-typo"'),
            "*targets.web.kind = 'k8s-typo': unknown target kind; accepted: bluegreen, command, config, kube*",
        ),
        (
            GOOD + "[[latency]]\np95 = '300 msec'\n",
            "*latency[[]0[]].p95 = '300 msec': expected a number of seconds*'250ms'*",
        ),
        (
            GOOD.replace("http://127.0.0.1:9", "127.0.0.1:9"),
            "*service.base_url = '127.0.0.1:9': expected an http:// or https:// URL*",
        ),
        (GOOD.replace("http://127.0.0.1:9", "${SHOP_URL}"), "*service.base_url uses ${SHOP_URL}*SHOP_URL is not set*"),
        ("[service\n", "*rollback.toml: not valid TOML: *line 1*"),
        (
            GOOD + '[[endpoints]]\npath = "/a"\n[[endpoints]]\npath = "/a"\n',
            "*endpoints = *path '/a' appears more than once*",
        ),
    ],
    ids=[
        "unknown-target-key",
        "unknown-service-key",
        "unknown-kind",
        "bad-duration",
        "bad-url",
        "unset-var",
        "bad-toml",
        "same-path-twice",
    ],
)
def test_bad_config_is_one_clear_error(pytester: pytest.Pytester, config: str, expected: str) -> None:
    pytester.path.joinpath("rollback.toml").write_text(config)
    result = run(pytester, "--rollback-to", "v1.2.9")
    result.stderr.fnmatch_lines([f"ERROR: {expected}"])


def test_no_config_says_where_it_looked(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--rollback-to", "v1.2.9")
    result.stderr.fnmatch_lines(["ERROR: no rollback configuration found: pass --rollback-config PATH*"])


def test_config_in_pyproject_is_found(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("pyproject.toml").write_text(
        GOOD.replace("[service]", "[tool.rollback.service]")
        .replace("[targets.web]", "[tool.rollback.targets.web]")
        .replace('kind = "symlink"', 'kind = "nope"')
    )
    result = run(pytester, "--rollback-to", "v1.2.9")
    result.stderr.fnmatch_lines(["*pyproject.toml: tool.rollback.targets.web.kind = 'nope': unknown target kind*"])


def test_several_targets_need_a_choice(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("rollback.toml").write_text(
        GOOD + GOOD.split("[targets.web]")[1].join(["[targets.api]", ""])
    )
    result = run(pytester, "--rollback-to", "v1.2.9")
    result.stderr.fnmatch_lines(["*several targets are configured (api, web); choose one with --rollback-target NAME*"])
    result = run(pytester, "--rollback-to", "v1.2.9", "--rollback-target", "db")
    result.stderr.fnmatch_lines(["*--rollback-target 'db': no such target*known: api, web*"])
    result = run(pytester, "--rollback-gate", "verify")
    result.stderr.fnmatch_lines(
        ["*several targets are configured (api, web); the verify gate asks one which version is deployed*"]
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--gate", "preflight"], "*--rollback-gate preflight needs --rollback-to VERSION*"),
        (["--gate", "verify", "--rollback-to", "v1"], "*--rollback-gate verify runs no rollback*"),
        (["--rollback-dry-run"], "*--rollback-dry-run needs --rollback-to VERSION*"),
        # Options that would do nothing are errors, not silently ignored.
        (["--rollback-yes"], "*--rollback-yes needs --rollback-to VERSION or --rollback-gate verify*"),
        (["--rollback-target", "web"], "*--rollback-target needs --rollback-to VERSION*in its rollback_target option"),
        (["--rollback-report-dir", "out"], "*--rollback-report-dir needs --rollback-to VERSION*"),
        (["--rollback-gate", "verify", "--rollback-target", "nope"], "*--rollback-target 'nope': no such target*web*"),
        (["--rollback-to", "v1", "--rollback-target", "nope"], "*--rollback-target 'nope': no such target*web*"),
        (["--rollback-gate", "verify", "--rollback-yes"], "*--rollback-yes applies to a rollback*drop --rollback-yes*"),
        (
            ["--rollback-gate", "preflight", "--rollback-to", "v1", "--rollback-dry-run"],
            "*--rollback-dry-run does nothing in --rollback-gate preflight*",
        ),
        (["--rollback-to", "v1", "--rollback-dry-run", "--rollback-yes"], "*--rollback-yes answers the confirmation*"),
        (["--rollback-to", "v1", "-n", "2", "--dist", "each"], "*--dist each would run the runbook on every worker*"),
    ],
    ids=[
        "preflight-without-version",
        "verify-with-rollback",
        "dry-run-alone",
        "yes-alone",
        "target-alone",
        "report-dir-alone",
        "unknown-target-in-verify-gate",
        "unknown-target-in-rollback",
        "yes-in-verify-gate",
        "dry-run-in-preflight-gate",
        "yes-in-dry-run",
        "dist-each",
    ],
)
def test_conflicting_options(pytester: pytest.Pytester, args: list[str], expected: str) -> None:
    pytester.path.joinpath("rollback.toml").write_text(GOOD)
    run(pytester, *args).stderr.fnmatch_lines([expected])


def test_harness_options_have_one_prefix_and_the_old_spellings_still_work(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", "--help")
    result.stdout.fnmatch_lines(
        [
            "*--rollback-gate={preflight,verify}, --gate={preflight,verify}",
            "*--rollback-expect-version=VERSION, --expect-version=VERSION",
            "*--rollback-report-dir=DIR, --report-dir=DIR",
            "*rollback_config (string):*",
            "*rollback_report_dir (string):*",
            "*rollback_target (string):*",
        ]
    )
    pytester.path.joinpath("rollback.toml").write_text(GOOD)
    for gate in ("--gate", "--rollback-gate"):
        listed = pytester.runpytest("-p", "no:cacheprovider", gate, "verify", "--expect-version", "v1", "--co", "-q")
        assert listed.ret == 0
        listed.stdout.fnmatch_lines(["rollback.toml::verify-version"])


def test_ini_options_hold_what_a_team_sets_once(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("ops").mkdir()
    pytester.path.joinpath("ops", "harness.toml").write_text(
        GOOD + GOOD.split("[targets.web]")[1].join(["[targets.api]", ""])
    )
    pytester.makeini("[pytest]\nrollback_config = ops/harness.toml\nrollback_target = web\nrollback_report_dir = out\n")
    args = ("-p", "no:cacheprovider", "--rollback-gate", "verify", "-k", "version")

    result = pytester.runpytest(*args)
    assert result.ret == 13  # nothing answers on port 9
    evidence = read_only_evidence(pytester.path / "out")
    assert evidence["config"] == str(pytester.path / "ops" / "harness.toml")
    assert evidence["target"]["name"] == "web"

    # The command line wins over the ini file.
    result = pytester.runpytest(*args, "--rollback-target", "api", "--rollback-report-dir", "elsewhere")
    assert result.ret == 13
    assert read_only_evidence(pytester.path / "elsewhere")["target"]["name"] == "api"


def read_only_evidence(folder: Path) -> dict[str, Any]:
    runs = list(folder.glob("*/evidence.json"))
    assert len(runs) == 1, runs
    data: dict[str, Any] = json.loads(runs[0].read_text())
    return data


def test_config_is_found_from_a_subfolder(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\n")  # the rootdir, above the service's own folder
    service = pytester.path / "services" / "shop"
    (service / "tests" / "smoke").mkdir(parents=True)
    service.joinpath("rollback.toml").write_text(GOOD)
    monkeypatch.chdir(service / "tests" / "smoke")

    result = pytester.runpytest("-p", "no:cacheprovider", "--rollback-gate", "verify", "--co", "-q")

    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["services/shop/rollback.toml::verify-version"])


def test_listed_node_ids_can_be_run(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("rollback.toml").write_text(GOOD + '[[endpoints]]\npath = "/api/orders"\n')
    pytester.makepyfile("def test_plain(): pass\n")
    args = ("-p", "no:cacheprovider", "--rollback-gate", "verify", "--rollback-expect-version", "v1")
    listed = pytester.runpytest(*args, "--co", "-q")
    ids = [line for line in listed.stdout.lines if line.startswith("rollback.toml::")]
    assert "rollback.toml::verify-version" in ids and "rollback.toml::verify-endpoint[/api/orders]" in ids

    result = pytester.runpytest(*args, "rollback.toml::verify-version", "rollback.toml::verify-endpoint[/api/orders]")

    assert result.ret == 13  # ran, and failed: nothing answers on port 9
    ran = [r.nodeid for r in result.reprec.getreports("pytest_runtest_logreport") if r.when == "call"]
    assert ran == ["rollback.toml::verify-version", "rollback.toml::verify-endpoint[/api/orders]"]


def test_gate_tests_in_an_ordinary_run_are_skipped_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.gate("verify")
        def test_orders(rollback_http, rollback_base_url):
            pass

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")

    assert result.ret == 0
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED *gate('verify') runs in a harness run only: pytest --rollback-to VERSION*"])


def test_bad_gate_marker(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("rollback.toml").write_text(GOOD)
    pytester.makepyfile("import pytest\n@pytest.mark.gate('after')\ndef test_x(): pass\n")
    result = run(pytester, "--gate", "verify")
    result.stderr.fnmatch_lines(
        ["*test_x: bad @pytest.mark.gate: gate phase 'after' is not one of: preflight, baseline, verify*"]
    )
    # Nothing ran, nothing was recorded: no run folder is left (with an empty report in it).
    assert not any(pytester.path.joinpath("reports").iterdir())


def test_without_harness_options_the_plugin_is_inert(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain(): pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not pytester.path.joinpath("reports").exists()


def test_collect_only_lists_the_runbook_and_writes_nothing(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("rollback.toml").write_text(GOOD + '[[endpoints]]\npath = "/api/orders"\n')
    result = pytester.runpytest("-p", "no:cacheprovider", "--rollback-to", "v1.2.9", "--co", "-q")

    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["rollback.toml::preflight-target-version", "*", "rollback.toml::verify-endpoint[[]/api/orders[]]"]
    )
    assert not pytester.path.joinpath("reports").exists() or not any(pytester.path.joinpath("reports").iterdir())


@pytest.mark.parametrize(
    ("prefixed", "alias"),
    [
        (["--rollback-severity", "critical"], ["--severity", "critical"]),
        (["--rollback-incident-id", "INC-1"], ["--incident-id", "INC-1"]),
        (["--rollback-reason", "why"], ["--reason", "why"]),
    ],
)
def test_every_option_has_the_rollback_prefix_and_keeps_its_short_alias(
    pytester: pytest.Pytester, prefixed: list[str], alias: list[str]
) -> None:
    """Options share one prefix (no clash with other plugins); the old spellings mean the same."""
    (pytester.path / "rollback.toml").write_text(GOOD)
    first = run(pytester, *prefixed).stderr.str()
    second = run(pytester, *alias).stderr.str()
    assert "needs --rollback-to VERSION" in first and first == second


def test_the_rollback_gate_marker_and_its_short_alias_are_both_gates(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rollback_gate("verify")
        def test_long():
            pass

        @pytest.mark.gate("verify")
        def test_short():
            pass
        """
    )
    ordinary = pytester.runpytest("-p", "no:cacheprovider", "-rs", "--strict-markers")
    ordinary.assert_outcomes(skipped=2)  # no harness run: a gate has nothing to guard
    ordinary.stdout.fnmatch_lines(["*gate('verify') runs in a harness run only*"])
