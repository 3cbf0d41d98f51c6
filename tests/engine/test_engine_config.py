"""Config loading (scenario 30): every bad input is one ConfigError naming file, key, value and what is accepted.

Each test writes a real TOML file into tmp_path and loads it; nothing is mocked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from rollback_harness.rollback.config import (
    Duration,
    HarnessConfig,
    Section,
    find_config_path,
    load_config,
)
from rollback_harness.rollback.durations import parse_duration
from rollback_harness.rollback.errors import ConfigError, UnknownTargetKind
from rollback_harness.rollback.targets.symlink import SymlinkSettings

BASE = """\
[service]
name = "shop"
base_url = "http://127.0.0.1:8080"

[targets.app]
kind = "symlink"
releases_dir = "releases"
current_link = "current"
"""

# Words that only make sense to someone who knows pydantic's internals; never shown to a user.
INTERNAL_JARGON = (
    "function-before",
    "function-after",
    "list[",
    "dict[",
    "<class",
    "instance of",
    "errors.pydantic.dev",
)


def write(folder: Path, text: str, name: str = "rollback.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def load(folder: Path, text: str, environ: dict[str, str] | None = None) -> HarnessConfig:
    return load_config(write(folder, text), environ={} if environ is None else environ)


def error(folder: Path, text: str, environ: dict[str, str] | None = None, name: str = "rollback.toml") -> str:
    """The message of the one ConfigError loading ``text`` raises; checks it is fit to show as is."""
    path = write(folder, text, name)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={} if environ is None else environ)
    message = str(info.value)
    assert str(path) in message, message
    for word in INTERNAL_JARGON:
        assert word not in message, f"internal name {word!r} leaks into: {message}"
    return message


def with_service(line: str) -> str:
    return BASE.replace('name = "shop"\n', f'name = "shop"\n{line}\n')


# --- malformed files ---------------------------------------------------------------------------------


def test_malformed_toml_names_line_and_column(tmp_path: Path) -> None:
    message = error(tmp_path, '[service\nname = "shop"\n')
    assert "not valid TOML" in message
    assert "line 1" in message and "column" in message


def test_toml_error_further_down_names_that_line(tmp_path: Path) -> None:
    message = error(tmp_path, BASE + "restart_timeout = 5 5\nready_timeout = 1\n")
    assert "not valid TOML" in message
    assert "line 9, column" in message


def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "rollback.toml"
    path.write_bytes(BASE.replace("shop", "caf\xe9").encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(path) in str(info.value)
    assert "UTF-8" in str(info.value)


def test_config_path_that_is_a_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path, environ={})


# --- unknown keys ------------------------------------------------------------------------------------


def test_unknown_top_level_key_lists_accepted_keys(tmp_path: Path) -> None:
    message = error(tmp_path, "colour = 1\n" + BASE)
    assert "colour: unknown key" in message
    # Sorted, and every section there is (sections are added by several features: not pinned one by one).
    listed = message.split("accepted keys here: ", 1)[1].split(";")[0].split("\n")[0].split(", ")
    assert listed == sorted(listed)
    assert {
        "database",
        "endpoints",
        "health",
        "latency",
        "reports",
        "service",
        "targets",
        "notify",
        "watch",
        "history",
        "lock",
        "logs",
        "metrics",
        "traffic",
        "flags",
        "config_rollback",
    } <= set(listed)


def test_unknown_service_key_is_named_with_its_table(tmp_path: Path) -> None:
    message = error(tmp_path, with_service("colour = 1"))
    assert "service.colour: unknown key" in message
    assert "accepted keys here: base_url, name, settle, timeout, verify_tls, version" in message


def test_unknown_key_two_levels_down(tmp_path: Path) -> None:
    message = error(tmp_path, with_service('version = { path = "/v", colour = 1 }'))
    assert "service.version.colour: unknown key; accepted keys here: consecutive, interval, json_field, path" in message


def test_unknown_key_in_a_list_entry_names_the_index(tmp_path: Path) -> None:
    message = error(tmp_path, BASE + "\n[[latency]]\nsamples = 5\n\n[[latency]]\ncolour = 1\n")
    assert "latency[1].colour: unknown key" in message
    assert "p95" in message and "samples" in message


def test_unknown_key_in_a_target_lists_the_drivers_keys(tmp_path: Path) -> None:
    message = error(tmp_path, BASE + "colour = 1\n")
    assert "targets.app.colour: unknown key" in message
    keys = (
        "batch, current_link, hosts, pid_command, pid_file, ready_consecutive, ready_timeout, releases_dir, "
        "required_files, restart, restart_timeout, ssh"
    )
    assert keys in message


# --- wrong types and values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('\n[[latency]]\nsamples = "many"\n', "latency[0].samples = 'many': Input should be a valid integer"),
        ('\n[[endpoints]]\npath = "/a"\nexpect_status = [200, 700]\n', "endpoints[0].expect_status[1] = 700:"),
        ('\n[[endpoints]]\npath = "/a"\nmethod = "FETCH"\n', "endpoints[0].method = 'FETCH': Input should be 'GET'"),
        ("\n[health]\nconsecutive = 0\n", "health.consecutive = 0: Input should be greater than or equal to 1"),
        ('\n[database]\nurl = ""\n', "database.url = '':"),
    ],
    ids=["samples-not-int", "status-out-of-range", "bad-method", "consecutive-zero", "empty-db-url"],
)
def test_wrong_value_names_key_value_and_rule(tmp_path: Path, extra: str, expected: str) -> None:
    assert expected in error(tmp_path, BASE + extra)


def test_a_table_written_where_a_list_of_tables_belongs(tmp_path: Path) -> None:
    message = error(tmp_path, BASE + '\n[endpoints]\npath = "/health"\n')
    assert "endpoints = {'path': '/health'}" in message
    assert "[[endpoints]]" in message


def test_a_value_where_a_table_belongs(tmp_path: Path) -> None:
    message = error(tmp_path, with_service('version = "/version"'))
    assert "service.version = '/version': expected a table" in message


def test_restart_as_a_shell_string_is_refused(tmp_path: Path) -> None:
    message = error(tmp_path, BASE + 'restart = "supervisorctl restart app"\n')
    assert "targets.app.restart = 'supervisorctl restart app'" in message
    assert "valid list" in message


def test_target_path_of_the_wrong_type(tmp_path: Path) -> None:
    message = error(tmp_path, BASE.replace('releases_dir = "releases"', "releases_dir = 5"))
    assert "targets.app.releases_dir = 5: expected a path" in message


def test_several_problems_are_all_listed_one_per_line(tmp_path: Path) -> None:
    message = error(tmp_path, BASE.replace('name = "shop"', 'name = 3\ntimeout = "soon"'))
    lines = message.splitlines()
    assert any("service.name = 3" in line for line in lines)
    assert any("service.timeout = 'soon'" in line for line in lines)
    assert len(lines) == 3


def test_union_member_names_do_not_leak_into_keys(tmp_path: Path) -> None:
    """Pydantic puts names like ``function-before[_duration(), float]`` and ``list[int]`` into the
    error locations of union fields. No settings model has such a field yet, so this drives the
    message builder directly with one that does."""
    from rollback_harness.rollback.config import _describe

    class WithUnions(Section):
        wait: Duration | list[int] = 1.0
        label: str | int = "x"

    data = {"wait": ["soon"], "label": {}}
    with pytest.raises(ValidationError) as info:
        WithUnions.model_validate(data)
    message = _describe(info.value, tmp_path / "rollback.toml", "targets.app.", WithUnions, data)
    for word in (*INTERNAL_JARGON, ".str", ".int"):
        assert word not in message, message
    assert "targets.app.wait = ['soon']: expected a number of seconds" in message
    assert "targets.app.wait[0] = 'soon': Input should be a valid integer" in message
    assert "targets.app.label = {}: Input should be a valid string" in message


# --- durations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "seconds"),
    [('"250ms"', 0.25), ('"5s"', 5.0), ('"2m"', 120.0), ('"1h"', 3600.0), ("3", 3.0), ("0.5", 0.5), ('" 5 s "', 5.0)],
)
def test_durations_parse(tmp_path: Path, written: str, seconds: float) -> None:
    config = load(tmp_path, with_service(f"timeout = {written}"))
    assert config.settings.service.timeout == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("key", "line", "shown", "rule"),
    [
        ("service.timeout", 'timeout = "5 parsecs"', "'5 parsecs'", "expected a number of seconds"),
        ("service.timeout", "timeout = -1", "-1", "not negative"),
        ("service.timeout", 'timeout = "-2s"', "'-2s'", "not negative"),
        ("service.timeout", "timeout = inf", "inf", "finite"),
        ("service.timeout", "timeout = nan", "nan", "finite"),
        ("service.timeout", "timeout = true", "True", "expected a number of seconds"),
        ("service.timeout", 'timeout = ["5s"]', "['5s']", "expected a number of seconds"),
    ],
    ids=["unit", "negative", "negative-string", "inf", "nan", "bool", "list"],
)
def test_bad_duration_names_key_value_and_accepted_forms(
    tmp_path: Path, key: str, line: str, shown: str, rule: str
) -> None:
    message = error(tmp_path, with_service(line))
    assert f"{key} = {shown}:" in message
    assert rule in message
    assert "'250ms', '5s', '2m', '1h'" in message


def test_bad_duration_in_a_list_entry_and_in_a_target(tmp_path: Path) -> None:
    message = error(tmp_path, BASE + 'ready_timeout = "soon"\n\n[[latency]]\np95 = "300 msec"\n')
    assert "latency[0].p95 = '300 msec': expected a number of seconds" in message
    message = error(tmp_path, BASE + 'ready_timeout = "soon"\n')
    assert "targets.app.ready_timeout = 'soon': expected a number of seconds" in message


def test_parse_duration_directly() -> None:
    assert parse_duration("250ms") == pytest.approx(0.25)
    assert parse_duration(0) == 0.0
    for bad in ("", "5 parsecs", "1e3", "ms", None, True, "-1s", float("inf")):
        with pytest.raises(ValueError, match="250ms"):
            parse_duration(bad)


# --- targets -----------------------------------------------------------------------------------------


def test_unknown_target_kind_names_key_value_and_kinds(tmp_path: Path) -> None:
    message = error(tmp_path, BASE.replace('kind = "symlink"', 'kind = "k8s"'))
    kinds = "bluegreen, command, config, kubernetes, swarm, symlink"
    assert f"targets.app.kind = 'k8s': unknown target kind; accepted: {kinds}" in message


def test_unknown_target_kind_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownTargetKind):
        load(tmp_path, BASE.replace('kind = "symlink"', 'kind = "k8s"'))
    assert issubclass(UnknownTargetKind, ConfigError)


def test_missing_target_kind(tmp_path: Path) -> None:
    message = error(tmp_path, BASE.replace('kind = "symlink"\n', ""))
    kinds = "bluegreen, command, config, kubernetes, swarm, symlink"
    assert f"targets.app.kind is required but missing; accepted: {kinds}" in message


def test_target_kind_of_the_wrong_type(tmp_path: Path) -> None:
    kinds = "bluegreen, command, config, kubernetes, swarm, symlink"
    assert f"targets.app.kind = 1: unknown target kind; accepted: {kinds}" in error(
        tmp_path, BASE.replace('kind = "symlink"', "kind = 1")
    )


def test_target_that_is_not_a_table(tmp_path: Path) -> None:
    text = "targets = { app = 1 }\n" + BASE.split("[targets.app]")[0]
    assert "targets.app = 1: expected a table" in error(tmp_path, text)


def test_missing_target_settings(tmp_path: Path) -> None:
    message = error(tmp_path, BASE.replace('current_link = "current"\n', ""))
    assert "targets.app.current_link is required but missing" in message


def test_no_targets(tmp_path: Path) -> None:
    assert "targets is required but missing" in error(tmp_path, BASE.split("[targets.app]")[0])


def test_several_targets_need_a_choice(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + BASE.split("[targets.app]")[1].join(["\n[targets.api]", ""]))
    with pytest.raises(ConfigError) as info:
        config.target(None)
    assert "several targets are configured (api, app)" in str(info.value)
    assert "--rollback-target NAME" in str(info.value)
    assert str(config.path) in str(info.value)
    with pytest.raises(ConfigError) as info:
        config.target("db")
    assert "--rollback-target 'db': no such target" in str(info.value)
    assert "known: api, app" in str(info.value)
    spec = config.target("api")
    assert (spec.name, spec.kind) == ("api", "symlink")
    assert isinstance(spec.settings, SymlinkSettings)


def test_the_only_target_is_chosen_without_a_name(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + 'restart = ["supervisorctl", "restart", "app"]\nready_timeout = "2m"\n')
    spec = config.target(None)
    assert spec.name == "app"
    assert isinstance(spec.settings, SymlinkSettings)
    assert spec.settings.restart == ["supervisorctl", "restart", "app"]
    assert spec.settings.ready_timeout == 120.0
    assert spec.settings.releases_dir == Path("releases")


# --- required keys and URLs --------------------------------------------------------------------------


def test_missing_base_url(tmp_path: Path) -> None:
    message = error(tmp_path, BASE.replace('base_url = "http://127.0.0.1:8080"\n', ""))
    assert "service.base_url is required but missing" in message


def test_missing_service(tmp_path: Path) -> None:
    targets_only = "[targets.app]" + BASE.split("[targets.app]")[1]
    assert "service is required but missing" in error(tmp_path, targets_only)


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://127.0.0.1:8080", ""])
def test_base_url_without_http(tmp_path: Path, url: str) -> None:
    message = error(tmp_path, BASE.replace("http://127.0.0.1:8080", url))
    assert f"service.base_url = {url!r}: expected an http:// or https:// URL" in message


def test_base_url_loses_its_trailing_slash(tmp_path: Path) -> None:
    config = load(tmp_path, BASE.replace("http://127.0.0.1:8080", "https://shop.example/"))
    assert config.settings.service.base_url == "https://shop.example"


def test_endpoint_path_without_leading_slash(tmp_path: Path) -> None:
    message = error(tmp_path, BASE + '\n[[endpoints]]\npath = "api/orders"\n')
    assert "endpoints[0].path = 'api/orders': expected a path starting with '/'" in message


def test_endpoint_paths_and_full_urls_are_accepted(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + '\n[[endpoints]]\npath = "/orders"\n\n[[endpoints]]\npath = "http://x/y"\n')
    assert [e.path for e in config.settings.endpoints] == ["/orders", "http://x/y"]


# --- environment variables and secrets ---------------------------------------------------------------


def test_unset_variable_names_key_and_variable(tmp_path: Path) -> None:
    message = error(tmp_path, BASE.replace("http://127.0.0.1:8080", "${SHOP_URL}"))
    assert "service.base_url uses ${SHOP_URL}" in message
    assert "environment variable SHOP_URL is not set" in message
    assert "'$$'" in message


def test_unset_variable_in_a_list_entry(tmp_path: Path) -> None:
    message = error(tmp_path, BASE + 'restart = ["ctl", "--token=${CTL_TOKEN}"]\n')
    assert "targets.app.restart[1] uses ${CTL_TOKEN}" in message


def test_substituted_values_are_secrets_where_secrets_live(tmp_path: Path) -> None:
    # Changed with the plugin-citizen issue: only values that land where secrets live are
    # secrets; a service URL from the environment stays readable in the evidence.
    text = BASE.replace("http://127.0.0.1:8080", "${SHOP_URL}") + (
        '\n[database]\nurl = "postgresql://app:${DB_PASS}@db.internal/shop"\n'
    )
    environ = {"SHOP_URL": "http://10.0.0.5:8080", "DB_PASS": "hunter2-very-secret", "UNUSED": "nope"}
    config = load(tmp_path, text, environ)
    assert config.settings.service.base_url == "http://10.0.0.5:8080"
    assert config.database_url() == "postgresql://app:hunter2-very-secret@db.internal/shop"
    assert config.secrets == frozenset({"hunter2-very-secret"})


def test_empty_variable_is_substituted_but_not_a_secret(tmp_path: Path) -> None:
    config = load(tmp_path, with_service('verify_tls = true\nversion = { path = "/version${SUFFIX}" }'), {"SUFFIX": ""})
    assert config.settings.service.version.path == "/version"
    assert config.secrets == frozenset()


def test_double_dollar_is_a_literal_dollar(tmp_path: Path) -> None:
    config = load(tmp_path, BASE.replace('name = "shop"', 'name = "shop$$1 and $${NOT_A_VAR}"'))
    assert config.settings.service.name == "shop$1 and ${NOT_A_VAR}"
    assert config.secrets == frozenset()


def test_process_environment_is_used_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLBACK_TEST_NAME", "shop-from-env")
    config = load_config(write(tmp_path, BASE.replace('name = "shop"', 'name = "${ROLLBACK_TEST_NAME}"')))
    assert config.settings.service.name == "shop-from-env"
    assert config.secrets == frozenset()  # a name is not a secret (plugin-citizen issue)


@pytest.mark.parametrize(
    ("template", "environ", "secret"),
    [
        # Where it lands: a URL's user info, a key or a query parameter named like a secret.
        ('url = "postgresql://app:${DB}@db/app"', {"DB": "pw-value"}, True),
        ('url = "postgresql://${DB_USER}@db/app"', {"DB_USER": "app-user"}, True),
        ('url = "postgresql://app@db:${PG_PORT}/app"', {"PG_PORT": "5433"}, False),
        ('url = "postgresql://app@db/app?sslpassword=${SSL}"', {"SSL": "ssl-value"}, True),
        ('url = "postgresql://app@db/app?application_name=${APP}"', {"APP": "shop-app"}, False),
        # What it is called: the variable's name.
        ('url = "sqlite:///${DB_PASSWORD}.db"', {"DB_PASSWORD": "named-secret"}, True),
        ('url = "sqlite:///${apiKey}.db"', {"apiKey": "camel-secret"}, True),
        ('url = "sqlite:///${MONKEY}.db"', {"MONKEY": "not-a-key"}, False),
        # Marked by the user.
        ('url = "${DATABASE_URL:secret}"', {"DATABASE_URL": "sqlite:///marked.db"}, True),
        ('url = "${DATABASE_URL}"', {"DATABASE_URL": "sqlite:///unmarked.db"}, False),
    ],
)
def test_secrets_are_classified_by_where_they_land(
    tmp_path: Path, template: str, environ: dict[str, str], secret: bool
) -> None:
    config = load(tmp_path, BASE + "\n[database]\n" + template + "\n", environ)
    [value] = environ.values()
    assert (value in config.secrets) is secret, config.secrets


def test_readable_values_stay_readable(tmp_path: Path) -> None:
    text = BASE.replace('name = "shop"', 'name = "myapp-${ENV}"').replace("8080", "${PORT}")
    config = load(tmp_path, text, {"ENV": "prod", "PORT": "8443"})
    assert config.settings.service.name == "myapp-prod"
    assert config.settings.service.base_url == "http://127.0.0.1:8443"
    assert config.secrets == frozenset()


def test_a_secret_marker_is_not_part_of_the_value(tmp_path: Path) -> None:
    config = load(tmp_path, BASE.replace('name = "shop"', 'name = "${SHOP:secret}"'), {"SHOP": "shop-x"})
    assert config.settings.service.name == "shop-x"
    assert config.secrets == frozenset({"shop-x"})


@pytest.mark.parametrize("password", ["p@ss/w:rd%40", "a@b", "x/y:z%2"])
def test_a_password_in_a_url_is_quoted_so_the_host_stays_the_host(tmp_path: Path, password: str) -> None:
    from sqlalchemy.engine import make_url

    text = BASE + '\n[database]\nurl = "postgresql+psycopg://app:${DB_PASSWORD}@db.internal:5432/shop"\n'
    config = load(tmp_path, text, {"DB_PASSWORD": password})
    url = make_url(str(config.database_url()))
    assert (url.host, url.port, url.username, url.password, url.database) == (
        "db.internal",
        5432,
        "app",
        password,
        "shop",
    )
    assert password in config.secrets


def test_a_config_error_never_shows_a_value_from_the_environment(tmp_path: Path) -> None:
    text = BASE.replace("http://127.0.0.1:8080", "ftp://deploy:${DEPLOY_TOKEN}@host/${SITE}")
    message = error(tmp_path, text, {"DEPLOY_TOKEN": "tok-9f8e7d6c", "SITE": "shop-eu"})
    assert "service.base_url = " in message and "expected an http:// or https:// URL" in message
    assert "tok-9f8e7d6c" not in message and "shop-eu" not in message
    assert "ftp://deploy:${...}@host/${...}" in message


# --- finding the file --------------------------------------------------------------------------------


def pyproject_text(body: str = BASE) -> str:
    return '[project]\nname = "x"\n\n' + body.replace("[service]", "[tool.rollback.service]").replace(
        "[targets.app]", "[tool.rollback.targets.app]"
    )


def test_pyproject_table_is_found_without_rollback_toml(tmp_path: Path) -> None:
    write(tmp_path, pyproject_text(), "pyproject.toml")
    path = find_config_path(None, tmp_path)
    assert path == (tmp_path / "pyproject.toml").resolve()
    config = load_config(path, environ={})
    assert config.settings.service.name == "shop"
    assert config.target(None).kind == "symlink"


def test_errors_in_pyproject_carry_the_tool_rollback_prefix(tmp_path: Path) -> None:
    message = error(tmp_path, pyproject_text(with_service("colour = 1")), name="pyproject.toml")
    assert "tool.rollback.service.colour: unknown key" in message
    message = error(tmp_path, pyproject_text(BASE.replace('"symlink"', '"nope"')), name="pyproject.toml")
    assert "tool.rollback.targets.app.kind = 'nope': unknown target kind" in message


def test_rollback_toml_wins_over_pyproject(tmp_path: Path) -> None:
    write(tmp_path, pyproject_text(), "pyproject.toml")
    write(tmp_path, BASE)
    assert find_config_path(None, tmp_path) == (tmp_path / "rollback.toml").resolve()


def test_pyproject_without_the_table_is_not_a_config(tmp_path: Path) -> None:
    write(tmp_path, '[project]\nname = "x"\n\n[tool.black]\nline-length = 100\n', "pyproject.toml")
    with pytest.raises(ConfigError) as info:
        find_config_path(None, tmp_path)
    assert "no rollback configuration found" in str(info.value)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("tool", ['tool = "rollback"', "tool = 1"])
def test_pyproject_whose_tool_is_not_a_table_is_no_config(tmp_path: Path, tool: str) -> None:
    path = write(tmp_path, tool + "\n", "pyproject.toml")
    with pytest.raises(ConfigError, match="no rollback configuration found"):
        find_config_path(None, tmp_path)
    # Named explicitly, it is read, and refused as one clear error.
    with pytest.raises(ConfigError, match=r"tool\.rollback must be a table"):
        load_config(find_config_path(str(path), tmp_path), environ={})


def test_pyproject_whose_tool_rollback_is_not_a_table(tmp_path: Path) -> None:
    write(tmp_path, "tool = { rollback = 1 }\n", "pyproject.toml")
    with pytest.raises(ConfigError, match=r"tool\.rollback must be a table"):
        load_config(find_config_path(None, tmp_path), environ={})


def test_explicit_config_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "rollback.toml"
    with pytest.raises(ConfigError) as info:
        find_config_path(str(missing), tmp_path)
    assert str(info.value) == f"--rollback-config {missing}: no such file"
    with pytest.raises(ConfigError, match="no such file"):
        find_config_path(str(tmp_path), tmp_path)


def test_explicit_config_wins_and_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, BASE)
    other = tmp_path / "etc"
    other.mkdir()
    write(other, BASE.replace("shop", "other"), "prod.toml")
    monkeypatch.chdir(tmp_path)
    path = find_config_path("etc/prod.toml", tmp_path)
    assert path == (other / "prod.toml").resolve() and path.is_absolute()
    assert load_config(path, environ={}).settings.service.name == "other"


# --- database URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///data/app.db", "sqlite:///{base}/data/app.db"),
        ("sqlite:///../shared/app.db", "sqlite:///{parent}/shared/app.db"),
        ("sqlite:////var/lib/app.db", "sqlite:////var/lib/app.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql://app@db/shop", "postgresql://app@db/shop"),
    ],
)
def test_relative_sqlite_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)  # not the config folder: the working directory must not matter
    config = load_config(write(folder, BASE + f'\n[database]\nurl = "{url}"\n'), environ={})
    base = folder.resolve()
    assert config.database_url() == expected.format(base=base, parent=base.parent)


def test_no_database_section_means_no_url(tmp_path: Path) -> None:
    assert load(tmp_path, BASE).database_url() is None


def test_settings_are_frozen(tmp_path: Path) -> None:
    config = load(tmp_path, BASE)
    with pytest.raises(ValidationError):
        config.settings.service.name = "other"  # type: ignore[misc]
    assert isinstance(config.settings, BaseModel)
