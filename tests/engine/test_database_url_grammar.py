"""The config judges a database URL as SQLAlchemy would, without importing it at start-up.

rollback/config.py keeps a copy of SQLAlchemy's URL grammar so loading the config does not import
SQLAlchemy (0.15-0.2 s of every start-up). Here the copy is held to SQLAlchemy itself: for every
string, the same verdict (not a URL, a port that is no number, or the port it reads).
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from rollback_harness.rollback.config import ConfigError, NotADatabaseURL, database_url_port, load_config

# The characters the grammar turns on, plus ones that might trip a hand-made parser.
PIECES = st.sampled_from(
    ["://", ":", "/", "@", "?", "[", "]", "+", "_", "=", "&", " ", "%", "-", ".", "\u0665", "\n", "x", "pg", "5432"]
)
URLISH = st.lists(st.one_of(PIECES, st.text(max_size=3)), max_size=12).map("".join)


def sqlalchemy_verdict(url: str) -> tuple[str, int | None]:
    try:
        return "ok", make_url(url).port
    except ArgumentError:
        return "not a URL", None
    except ValueError:
        return "bad port", None


def our_verdict(url: str) -> tuple[str, int | None]:
    try:
        return "ok", database_url_port(url)
    except NotADatabaseURL:
        return "not a URL", None
    except ValueError:
        return "bad port", None


@settings(max_examples=3000, deadline=None)
@given(st.one_of(URLISH, st.builds("{}://{}".format, URLISH, URLISH)))
@example("postgresql+psycopg://app:secret@db.internal:5432/shop?sslmode=require")
@example("postgresql://h:/db")  # an empty port: SQLAlchemy's int("") fails
@example("postgresql://h:+5/db")
@example("postgresql://h:\u0665/db")  # an Arabic-Indic digit: int() reads it
@example("mysql://[::1]:3306/db")
@example("sqlite://")
@example("sqlite:///relative.db")
@example("not a url")
@example("://host")
def test_the_config_reads_a_database_url_as_sqlalchemy_does(url: str) -> None:
    assert our_verdict(url) == sqlalchemy_verdict(url)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgres:/db.internal/shop", "not a database URL SQLAlchemy can read"),
        ("postgresql://db.internal:port/shop", "the port is not a number"),
        ("postgresql://db.internal:70000/shop", "port 70000 is out of range (1-65535)"),
    ],
)
def test_a_bad_database_url_is_a_config_error_naming_the_key(tmp_path, url: str, said: str) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "rollback.toml"
    config.write_text(
        f'[service]\nname = "shop"\nbase_url = "http://127.0.0.1:9"\n\n[database]\nurl = "{url}"\n\n'
        '[targets.app]\nkind = "symlink"\nreleases_dir = "releases"\ncurrent_link = "current"\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert f"{config}: database.url = " in str(raised.value)
    assert said in str(raised.value)
