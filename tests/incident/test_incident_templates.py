"""incident.md and status.md from templates: the built-in ones, and a team's own ([incident] templates)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deployments import Deployment, run_dir
from template_evidence import VERIFIED, failed_with_markup

from rollback_harness.rollback.config import load_config
from rollback_harness.rollback.errors import ConfigError
from rollback_harness.rollback.incident import IncidentTemplates, incident_markdown, status_markdown

GOLDEN = Path(__file__).parent / "golden"
CONFIG_HEAD = """
[service]
name = "shop"
base_url = "http://127.0.0.1:9"

[targets.app]
kind = "symlink"
releases_dir = "releases"
current_link = "current"
restart = ["true"]
"""
# A team's status update: its own words, the evidence's values through `md`.
TEAM_STATUS = """\
# {{ service.name | md }} status ({{ parts.state }})

Reason: {{ incident.reason | md }}
Headline: {{ headline }}
{% for test in tests if test.outcome != "passed" %}
- {{ test.nodeid | md }}: {{ test.message | md }}
{% endfor %}
"""
TEAM_INCIDENT = """\
# Post-mortem {{ run_id | md }}

{{ parts.impact }}

Started {{ started | clock }}; took {{ duration_s | seconds }}.
"""


def team_folder(tmp_path: Path, **templates: str) -> Path:
    folder = tmp_path / "team"
    folder.mkdir(exist_ok=True)
    for name, text in templates.items():
        (folder / f"{name}.md.j2").write_text(text)
    return folder


# -- the built-in templates say exactly what the Python rendering said ---------------------------


@pytest.mark.parametrize("name", ["verified", "failed"])
def test_the_built_in_templates_render_what_the_code_did_before_them(name: str) -> None:
    # The golden files were written by the Python rendering the templates replaced (byte for byte).
    evidence = VERIFIED if name == "verified" else failed_with_markup()
    assert incident_markdown(evidence) == (GOLDEN / f"{name}.incident.md").read_text()
    assert status_markdown(evidence) == (GOLDEN / f"{name}.status.md").read_text()


def test_the_built_in_templates_come_from_the_default_templates_object() -> None:
    evidence = failed_with_markup()
    assert IncidentTemplates().render("incident.md.j2", evidence).text == incident_markdown(evidence)
    assert IncidentTemplates().render("status.md.j2", evidence).failure is None


# -- a team's templates ----------------------------------------------------------------------------


def test_a_team_template_escapes_what_came_from_the_target(tmp_path: Path) -> None:
    templates = IncidentTemplates.load(team_folder(tmp_path, status=TEAM_STATUS), "rollback.toml: incident.templates")
    rendered = templates.render("status.md.j2", failed_with_markup())

    assert rendered.failure is None
    text = rendered.text
    assert text.startswith("# shop &lt;script>alert(1)&lt;/script> status (Investigating)\n")
    assert "Reason: orders \\*vanish\\* &#124; see &lt;b>INC&lt;/b> &#96;x&#96; \\[here\\](http://e) &amp;amp;" in text
    # Without `md` a value is escaped all the same: a template cannot forget it.
    assert "Headline: shop&#124;x: rollback failed" in text
    assert "- rollback::verify-endpoint\\[/api/orders\\]: answered 500 &lt;i>" in text
    assert "<script>" not in text and "<b>" not in text and "<i>" not in text


def test_a_folder_may_override_one_template_only(tmp_path: Path) -> None:
    templates = IncidentTemplates.load(team_folder(tmp_path, status=TEAM_STATUS), "key")
    assert templates.overrides == ("status.md.j2",)
    assert templates.render("incident.md.j2", VERIFIED).text == incident_markdown(VERIFIED)
    assert templates.render("status.md.j2", VERIFIED).text.startswith("# shop status (Mitigated, monitoring)")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"incident": "# {{ run_id }\n"}, "incident.md.j2, line 1: unexpected '}'"),
        ({"status": "ok\n\n{% if headline %}\nno end\n"}, "status.md.j2, line 3: Unexpected end of template"),
        ({}, "holds neither incident.md.j2 nor status.md.j2 (found: notes.txt)"),
    ],
)
def test_a_folder_that_cannot_be_used_is_a_config_error(tmp_path: Path, files: dict[str, str], message: str) -> None:
    folder = team_folder(tmp_path, **files)
    (folder / "notes.txt").write_text("")
    with pytest.raises(ConfigError) as raised:
        IncidentTemplates.load(folder, "rollback.toml: incident.templates = 'team'")
    assert str(raised.value).startswith("rollback.toml: incident.templates = 'team': ")
    assert message in str(raised.value)


def test_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"incident.templates = 'nope': .*/nope does not exist; expected a folder"):
        IncidentTemplates.load(tmp_path / "nope", "incident.templates = 'nope'")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("{{ no_such_thing }}", "UndefinedError: 'no_such_thing' is undefined"),
        ("{{ ''.__class__ }}", "SecurityError: access to attribute '__class__' of 'str' object is unsafe"),
        ("{{ cycler.__init__.__globals__ }}", "SecurityError"),
        ("{{ tests.append(1) }}", "SecurityError: access to attribute 'append' of 'list' object is unsafe"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ],
)
def test_a_template_that_fails_while_rendering_gives_the_built_in_text_and_says_why(
    tmp_path: Path, line: str, why: str
) -> None:
    folder = team_folder(tmp_path, incident=f"# fine\n\n{line}\n")
    evidence = failed_with_markup()
    rendered = IncidentTemplates.load(folder, "key").render("incident.md.j2", evidence)

    assert rendered.text == incident_markdown(evidence)
    assert rendered.failure is not None
    assert rendered.failure.startswith(f"{folder / 'incident.md.j2'}, line 3: ")
    assert why in rendered.failure
    assert evidence == failed_with_markup()  # the sandbox changed nothing


def test_an_included_file_that_does_not_parse_names_itself(tmp_path: Path) -> None:
    folder = team_folder(tmp_path, status='{% include "part.j2" %}\n')
    (folder / "part.j2").write_text("line one\n{{ headline }\n")
    rendered = IncidentTemplates.load(folder, "key").render("status.md.j2", VERIFIED)

    assert rendered.text == status_markdown(VERIFIED)
    assert rendered.failure == f"{folder / 'part.j2'}, line 2: TemplateSyntaxError: unexpected '}}'"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('template = "team"', "incident.template: unknown key; accepted keys here: templates"),
        ('templates = ""', "incident.templates = '': String should have at least 1 character"),
        ("templates = 3", "incident.templates = 3: Input should be a valid string"),
    ],
)
def test_a_bad_incident_section_is_a_config_error(tmp_path: Path, section: str, message: str) -> None:
    config = tmp_path / "rollback.toml"
    config.write_text(f"{CONFIG_HEAD}\n[incident]\n{section}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert str(raised.value) == f"{config}: {message}"


# -- as users run it ---------------------------------------------------------------------------------


def run(pytester: pytest.Pytester, demo: Deployment, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to=v1.2.9", "--rollback-dry-run", *args)
    )


def use_templates(demo: Deployment, **templates: str) -> Path:
    folder = team_folder(demo.config_path.parent, **templates)
    demo.update_config(incident={"templates": folder.name})  # relative to the config file
    return folder


@pytest.mark.integration
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_team_overrides_both_templates(pytester: pytest.Pytester, demo: Deployment, workers: list[str]) -> None:
    use_templates(demo, incident=TEAM_INCIDENT, status=TEAM_STATUS)
    result = run(pytester, demo, "--incident-id=INC-9", "--reason=orders <b>fail</b> *now*", *workers)

    assert result.ret == 0, result.stdout.str()
    folder = run_dir(pytester.path / "reports")
    incident = (folder / "incident.md").read_text()
    assert incident.startswith(f"# Post-mortem {folder.name}\n\n| Check | Before (baseline) | After (verify) |")
    assert "endpoint\\[/api/orders\\] | failed: GET /api/orders answered 500" in incident
    status = (folder / "status.md").read_text()
    assert status.startswith("# demo status (Dry run, no change)\n\nReason: orders &lt;b>fail&lt;/b> \\*now\\*\n")
    evidence = json.loads((folder / "evidence.json").read_text())
    assert "not_written" not in evidence


@pytest.mark.integration
def test_a_team_overrides_the_status_update_only(pytester: pytest.Pytester, demo: Deployment) -> None:
    use_templates(demo, status=TEAM_STATUS)
    result = run(pytester, demo, "--incident-id=INC-10")

    assert result.ret == 0, result.stdout.str()
    folder = run_dir(pytester.path / "reports")
    assert (folder / "incident.md").read_text().startswith("# Incident INC-10: demo, v1.3.0 -> ")
    assert (folder / "status.md").read_text().startswith("# demo status (Dry run, no change)")


@pytest.mark.integration
def test_a_template_that_does_not_parse_stops_the_run_before_anything(
    pytester: pytest.Pytester, demo: Deployment
) -> None:
    folder = use_templates(demo, status="# {{ headline }}\n\n{% for x in tests %}\n{{ x }\n{% endfor %}\n")
    result = pytester.runpytest(*demo.harness_args(pytester.path / "reports", "--rollback-to=v1.2.9", "--rollback-yes"))

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: {demo.config_path}: incident.templates = 'team': {folder / 'status.md.j2'}, line 4: unexpected '}}'"]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert demo.live_version() == "v1.3.0"
    assert not (pytester.path / "reports").exists() or not any((pytester.path / "reports").iterdir())


@pytest.mark.integration
def test_a_template_that_fails_while_rendering_is_reported_and_the_built_in_one_written(
    pytester: pytest.Pytester, demo: Deployment
) -> None:
    folder = use_templates(demo, incident="# {{ run_id }}\n{{ ''.__class__.__mro__ }}\n", status=TEAM_STATUS)
    result = run(pytester, demo, "--incident-id=INC-11")

    # Asked for the team's write-up and got the built-in one: not a plain success.
    assert result.ret == 22, result.stdout.str()
    why = (
        f"incident.md from the team's template incident.md.j2 was not written: {folder / 'incident.md.j2'}, line 2: "
        "SecurityError: access to attribute '__class__' of 'str' object is unsafe.; "
        "incident.md holds the built-in template's text instead"
    )
    result.stdout.fnmatch_lines(["exit code 22: *", f"not written: {why}"])
    run_folder = run_dir(pytester.path / "reports")
    assert (run_folder / "incident.md").read_text().startswith("# Incident INC-11: demo, v1.3.0 -> ")
    assert (run_folder / "status.md").read_text().startswith("# demo status (Dry run, no change)")
    evidence = json.loads((run_folder / "evidence.json").read_text())
    assert evidence["not_written"] == [why]
    assert evidence["exit"]["code"] == 22


@pytest.mark.integration
def test_a_failed_run_keeps_its_exit_code_and_its_evidence_lists_the_template_that_failed(
    pytester: pytest.Pytester, demo: Deployment
) -> None:
    use_templates(demo, incident="# {{ run_id }}\n{{ no_such_variable }}\n")
    args = demo.harness_args(
        pytester.path / "reports", "--rollback-to=v9.9.9", "--rollback-yes", "--incident-id=INC-12"
    )
    result = pytester.runpytest(*args)

    assert result.ret == 10, result.stdout.str()  # preflight refused: the run's own code stays
    evidence = json.loads((run_dir(pytester.path / "reports") / "evidence.json").read_text())
    assert evidence["exit"]["code"] == 10
    (line,) = evidence["not_written"]
    assert line.startswith("incident.md from the team's template incident.md.j2 was not written: ")


@pytest.mark.integration
def test_a_secret_never_reaches_a_team_template_s_output(
    pytester: pytest.Pytester, demo: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    from incident_servers import demo_exporter, metrics_server

    secret = "s3cr3t-metrics-token-77"
    monkeypatch.setenv("METRICS_TOKEN", secret)
    use_templates(demo, incident="{{ evidence }}\n{{ evidence | tojson }}\n", status="{{ comparisons | md }}\n")
    base_url = demo.config()["service"]["base_url"]
    with metrics_server(demo_exporter(base_url)) as exporter:
        data = demo.config()
        series = [{"select": "up", "min": 1}]
        data["metrics"] = [{"path": exporter + "/nowhere?token=${METRICS_TOKEN}", "series": series}]
        demo.write_config(data)
        result = run(pytester, demo, "--incident-id=INC-12", f"--reason=token {secret}")

    assert result.ret == 0, result.stdout.str()
    folder = run_dir(pytester.path / "reports")
    for name in ("incident.md", "status.md"):
        text = (folder / name).read_text()
        assert secret not in text, name
        assert "metrics" in text and "token=***" in text.replace("\\", "")
