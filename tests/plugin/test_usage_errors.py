"""Bad options and bad config: one clear error, exit code 4, no traceback, nothing run."""

from __future__ import annotations

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
    assert not list(pytester.path.glob("reports/*/evidence.json"))
    return result


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (GOOD + "colour = 1\n", "*rollback.toml: targets.web.colour: unknown key; accepted keys here: *current_link*"),
        (GOOD.replace('name = "shop"', 'name = "shop"\ncolour = 1'), "*service.colour: unknown key*base_url*"),
        (
            GOOD.replace('"symlink"', '"k8s-typo"'),
            "*targets.web.kind = 'k8s-typo': unknown target kind; accepted: symlink*",
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


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--gate", "preflight"], "*--gate preflight needs --rollback-to VERSION*"),
        (["--gate", "verify", "--rollback-to", "v1"], "*--gate verify runs no rollback*"),
        (["--rollback-dry-run"], "*--rollback-dry-run needs --rollback-to VERSION*"),
    ],
)
def test_conflicting_options(pytester: pytest.Pytester, args: list[str], expected: str) -> None:
    pytester.path.joinpath("rollback.toml").write_text(GOOD)
    run(pytester, *args).stderr.fnmatch_lines([expected])


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
