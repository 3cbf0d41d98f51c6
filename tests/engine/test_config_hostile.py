"""Scenarios 30 and 36: hostile config input (deep nesting, huge values, control characters, a database
URL that is no URL, an unclosed ``${``) is one ConfigError naming file, key and what is accepted, and
loading stays bounded: nothing recurses once per level, no regex re-reads a long value from every position.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_harness.rollback.config import MAX_NAME_LENGTH, MAX_NESTING, load_config
from rollback_harness.rollback.errors import ConfigError

BASE = """\
[service]
name = "shop"
base_url = "http://127.0.0.1:8080"

[targets.app]
kind = "symlink"
releases_dir = "releases"
current_link = "current"
"""


def error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    path = tmp_path / "rollback.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    assert "\x1b" not in message and "\x00" not in message, message
    assert len(message) < 2_000, message[:300]
    return message


def nested_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_table(depth: int) -> str:
    return "{a = " * depth + "1" + "}" * depth


# -- nesting -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [nested_list(5000), nested_table(5000)], ids=["list", "inline-table"])
def test_nesting_too_deep_for_the_toml_parser_names_the_line(tmp_path: Path, value: str) -> None:
    message = error(tmp_path, BASE + f"\n[targets.app.hooks]\nbefore = {value}\n")

    assert "line 11 ('before' = ...)" in message
    assert f"nested too deep to read; at most {MAX_NESTING} levels are accepted" in message


def test_brackets_inside_strings_and_comments_do_not_count(tmp_path: Path) -> None:
    text = BASE.replace('name = "shop"', 'name = "shop"  # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n')
    text += f"\n[targets.app.hooks]\nnote = \"{'[' * 100}\"\nraw = '{'{' * 100}'\nbefore = {nested_list(5000)}\n"

    assert "line 14 ('before' = ...)" in error(tmp_path, text)


@pytest.mark.parametrize("value", [nested_list(100), nested_table(100)], ids=["list", "inline-table"])
def test_nesting_the_parser_reads_is_refused_before_anything_recurses_into_it(tmp_path: Path, value: str) -> None:
    message = error(tmp_path, BASE + f"\n[targets.app.hooks]\nbefore = {value}\n")

    assert message.split(": ")[1].startswith("targets.app.hooks.before")
    assert f"nested more than {MAX_NESTING} levels deep; at most {MAX_NESTING} levels are accepted" in message


def test_nesting_within_the_limit_reaches_the_ordinary_checks(tmp_path: Path) -> None:
    message = error(tmp_path, BASE + f"\n[targets.app.hooks]\nbefore = {nested_list(MAX_NESTING - 4)}\n")

    assert "nested" not in message and "targets.app.hooks" in message


# -- names shown to a person ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "char"),
    [
        ("shop\\u001b[2J", "U+001B at character 5"),
        ("shop\\u0000", "U+0000 at character 5"),
        ("sh\\nop", "U+000A at character 3"),
        ("shop\\u202egnp.exe", "U+202E at character 5"),
        ("shop\\u0085", "U+0085 at character 5"),
    ],
    ids=["escape", "nul", "newline", "bidi-override", "c1-next-line"],
)
def test_control_characters_in_the_service_name_are_refused(tmp_path: Path, written: str, char: str) -> None:
    message = error(tmp_path, BASE.replace('name = "shop"', f'name = "{written}"'))

    assert "service.name = 'sh" in message and f"control character {char}" in message
    assert "printable characters only" in message


def test_control_characters_in_a_target_name_are_refused(tmp_path: Path) -> None:
    message = error(tmp_path, BASE.replace("[targets.app]", '[targets."app\\u001b[31m"]'))

    assert "targets.'app\\x1b[31m': not a usable target name: control character U+001B at character 4" in message


def test_a_huge_service_name_is_refused_and_shown_cut(tmp_path: Path) -> None:
    message = error(tmp_path, BASE.replace('name = "shop"', f'name = "{"a" * 200_000}"'))

    assert f"200000 characters long; a name may have at most {MAX_NAME_LENGTH}" in message
    assert "... (200000 characters)" in message


def test_a_name_at_the_limit_and_in_any_script_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "rollback.toml"
    name = "магазин-café-" + "x" * (MAX_NAME_LENGTH - 13)
    path.write_text(BASE.replace('name = "shop"', f'name = "{name}"'), encoding="utf-8")

    assert load_config(path, environ={}).settings.service.name == name


def test_a_huge_value_anywhere_is_an_error_shown_cut(tmp_path: Path) -> None:
    message = error(tmp_path, BASE.replace('base_url = "http://127.0.0.1:8080"', f'base_url = "{"a" * 200_000}"'))

    assert "service.base_url = 'aaaa" in message and "... (200000 characters)" in message


def test_a_long_value_with_variables_is_substituted_in_linear_time(tmp_path: Path) -> None:
    # 20,000 variables in a 200,000-character value: each used to search the text before it again.
    path = tmp_path / "rollback.toml"
    path.write_text(BASE + f'\n[[endpoints]]\npath = "/{"${X}" * 20_000}?{"a" * 100_000}"\n', encoding="utf-8")

    config = load_config(path, environ={"X": "y"})

    assert config.settings.endpoints[0].path == "/" + "y" * 20_000 + "?" + "a" * 100_000


# -- database URL, ${ ----------------------------------------------------------------------------


def database(url: str) -> str:
    return BASE + f'\n[database]\nurl = "{url}"\n'


@pytest.mark.parametrize("url", ["::::", "s3cr3t-pass@::", "not a url"], ids=["colons", "at", "words"])
def test_a_database_url_sqlalchemy_cannot_read_is_refused_without_showing_it(tmp_path: Path, url: str) -> None:
    message = error(tmp_path, database(url))

    assert "database.url" in message and "not a database URL SQLAlchemy can read" in message
    assert "expected dialect[+driver]://user@host[:port]/database" in message
    if ":" in url or "@" in url:
        assert url not in message and f"({len(url)} characters, not shown: it may hold a password)" in message


def test_a_database_url_error_never_shows_the_password(tmp_path: Path) -> None:
    message = error(tmp_path, database("postgresql://app:s3cr3t-pass@db:port/shop"))

    assert "database.url = 'postgresql://***@db:port/shop': the port is not a number" in message
    assert "s3cr3t" not in message


def test_a_database_url_with_a_port_out_of_range(tmp_path: Path) -> None:
    assert "port 99999 is out of range (1-65535)" in error(tmp_path, database("postgresql://app@db:99999/shop"))


def test_a_database_url_from_the_environment_that_is_no_url(tmp_path: Path) -> None:
    message = error(tmp_path, database("${DATABASE_URL}"), environ={"DATABASE_URL": "hunter2:x"})

    assert "database.url" in message and "hunter2" not in message


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("shop-${ENV", "the '${' at character 6 has no closing '}'"),
        ("shop-${1ENV}", "the '${' at character 6 does not hold a variable name"),
        ("shop-${ENV:-x}", "the '${' at character 6 does not hold a variable name"),
    ],
    ids=["unclosed", "digit-first", "shell-default"],
)
def test_a_dollar_brace_that_is_no_variable_is_refused(tmp_path: Path, value: str, what: str) -> None:
    message = error(tmp_path, BASE.replace('name = "shop"', f'name = "{value}"'), environ={"ENV": "prod"})

    assert f"service.name = '{value}': {what}" in message and "write '$$' for a literal '$'" in message


def test_an_unclosed_variable_in_a_secret_place_is_not_shown(tmp_path: Path) -> None:
    text = database("postgresql://app@db/shop") + 'password = "hunter2${PW"\n'

    message = error(tmp_path, text, environ={"PW": "x"})

    assert "database.password: the '${' at character 8 has no closing '}'" in message
    assert "hunter2" not in message


def test_a_literal_dollar_brace_is_written_with_two_dollars(tmp_path: Path) -> None:
    path = tmp_path / "rollback.toml"
    path.write_text(BASE.replace('name = "shop"', 'name = "shop-$${ENV"'), encoding="utf-8")

    assert load_config(path, environ={}).settings.service.name == "shop-${ENV"


# -- through pytest: exit 4 and the message, never INTERNALERROR ---------------------------------


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (f"\n[targets.app.hooks]\nbefore = {nested_list(5000)}\n", "*nested too deep to read*"),
        ('\n[database]\nurl = "::::"\n', "*database.url*not a database URL SQLAlchemy can read*"),
    ],
    ids=["deep", "database-url"],
)
def test_a_hostile_config_is_a_usage_error_through_pytest(pytester: pytest.Pytester, extra: str, said: str) -> None:
    config = pytester.path / "rollback.toml"
    config.write_text(BASE + extra, encoding="utf-8")

    result = pytester.runpytest("-p", "no:cacheprovider", f"--rollback-config={config}", "--rollback-to", "v1")

    assert result.ret == 4, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([said])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert "RecursionError" not in result.stdout.str() + result.stderr.str()


def test_a_database_url_error_never_shows_what_the_environment_gave(tmp_path: Path) -> None:
    message = error(tmp_path, database("${DATABASE_URL}"), environ={"DATABASE_URL": "hunter2-hunter2"})

    assert "database.url = '${...}': not a database URL SQLAlchemy can read" in message
