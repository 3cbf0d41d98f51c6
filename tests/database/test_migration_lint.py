"""The downgrade lint (rollback/database/lint.py) on real script files, and migration awareness
(rollback/database/migrations.py) on real Alembic projects and SQLite databases."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest
from alembic_projects import BASE, DESTRUCTIVE, REVERSIBLE, upgrade_to, write_project

from rollback_harness.rollback.config import load_config
from rollback_harness.rollback.database import frameworks
from rollback_harness.rollback.database.lint import DESTRUCTIVE as DESTRUCTIVE_KIND
from rollback_harness.rollback.database.lint import IRREVERSIBLE as IRREVERSIBLE_KIND
from rollback_harness.rollback.database.lint import lint_downgrade
from rollback_harness.rollback.database.migrations import (
    CANNOT_TELL,
    DESTRUCTIVE_DOWNGRADE,
    NONE,
    MigrationSource,
)
from rollback_harness.rollback.database.migrations import (
    REVERSIBLE as REVERSIBLE_STATE,
)
from rollback_harness.rollback.errors import ConfigError


def script(tmp_path: Path, downgrade: str) -> Path:
    path = tmp_path / "rev.py"
    body = textwrap.indent(textwrap.dedent(downgrade).strip(), "    ")
    path.write_text(
        f"from alembic import op\nimport sqlalchemy as sa\n\n\ndef upgrade():\n    pass\n\n\ndef downgrade():\n{body}\n"
    )
    return path


def found(tmp_path: Path, downgrade: str) -> list[tuple[str, int, str]]:
    return [(i.kind, i.line, i.what) for i in lint_downgrade(script(tmp_path, downgrade), "r1")]


def test_drops_are_destructive_with_their_line(tmp_path: Path) -> None:
    issues = found(
        tmp_path,
        """
        op.create_index("ix", "t", ["a"])
        op.drop_table("coupons")
        with op.batch_alter_table("orders") as batch_op:
            batch_op.drop_column("note")
        """,
    )
    assert issues == [
        (DESTRUCTIVE_KIND, 11, "drop_table: drops table coupons"),
        (DESTRUCTIVE_KIND, 13, "drop_column: drops column note"),
    ]


@pytest.mark.parametrize(
    ("change", "flagged"),
    [
        ("type_=sa.String(20), existing_type=sa.String(200)", "type narrowed from sa.String(200) to sa.String(20)"),
        ("type_=sa.Integer(), existing_type=sa.BigInteger()", "type narrowed from sa.BigInteger() to sa.Integer()"),
        ("type_=sa.String(50), existing_type=sa.Text()", "type narrowed from sa.Text() to sa.String(50)"),
        ("type_=sa.Integer()", "type changed to sa.Integer() (old type not given: may narrow)"),
        ("type_=sa.String(200), existing_type=sa.String(20)", None),
        ("type_=sa.Text(), existing_type=sa.String(20)", None),
        ("nullable=True", None),
    ],
    ids=["string-shorter", "bigint-to-int", "text-to-string", "type-unknown", "widened", "to-text", "no-type"],
)
def test_column_type_narrowing(tmp_path: Path, change: str, flagged: str | None) -> None:
    issues = found(tmp_path, f'op.alter_column("orders", "item", {change})')
    if flagged is None:
        assert issues == []
    else:
        assert issues == [(DESTRUCTIVE_KIND, 10, f"alter_column orders.item: {flagged}")]


def test_raw_sql_that_deletes_is_destructive(tmp_path: Path) -> None:
    issues = found(
        tmp_path, 'op.execute("DELETE FROM orders WHERE note IS NOT NULL")\nop.execute("UPDATE x SET y = 1")'
    )
    assert issues == [
        (DESTRUCTIVE_KIND, 10, "execute: raw SQL that loses data: DELETE FROM orders WHERE note IS NOT NULL")
    ]


@pytest.mark.parametrize(
    ("downgrade", "what", "line"),
    [
        ("pass", "downgrade() is empty (only pass)", 9),
        ('"""Nothing to undo."""\npass', "downgrade() is empty (only pass)", 9),
        ('raise NotImplementedError("one way")', "raises NotImplementedError (irreversible)", 10),
        ("raise NotImplementedError", "raises NotImplementedError (irreversible)", 10),
    ],
    ids=["pass", "docstring-and-pass", "not-implemented-call", "not-implemented-name"],
)
def test_irreversible_downgrades(tmp_path: Path, downgrade: str, what: str, line: int) -> None:
    assert found(tmp_path, downgrade) == [(IRREVERSIBLE_KIND, line, what)]


def test_a_script_without_downgrade_or_unreadable_is_irreversible(tmp_path: Path) -> None:
    no_function = tmp_path / "a.py"
    no_function.write_text("def upgrade():\n    pass\n")
    broken = tmp_path / "b.py"
    broken.write_text("def downgrade(:\n")
    assert [i.what for i in lint_downgrade(no_function, "a")] == ["has no downgrade() function"]
    [issue] = lint_downgrade(broken, "b")
    assert issue.kind == IRREVERSIBLE_KIND and issue.what.startswith("cannot be read")


# -- migration awareness -----------------------------------------------------------------------


def config_for(tmp_path: Path, database: str) -> Path:
    path = tmp_path / "rollback.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [service]
            name = "shop"
            base_url = "http://127.0.0.1:9"

            [database]
            url = "sqlite:///shop.db"
            {database}

            [targets.app]
            kind = "symlink"
            releases_dir = "releases"
            current_link = "current"
            restart = ["true"]
            """
        )
    )
    return path


def test_an_explicit_revisions_table_and_one_shared_script_folder(tmp_path: Path) -> None:
    write_project(tmp_path / "alembic", [BASE, REVERSIBLE, DESTRUCTIVE])
    upgrade_to(f"sqlite:///{tmp_path / 'shop.db'}", tmp_path / "alembic", DESTRUCTIVE.id)
    config = load_config(
        config_for(
            tmp_path,
            f'[database.migrations]\nscript_location = "alembic"\n'
            f'revisions = {{ "v1.2.9" = "{REVERSIBLE.id}", "v1.3.0" = "{DESTRUCTIVE.id}" }}',
        )
    )
    source = MigrationSource(config, config.target(None))

    to_previous = source.assess("v1.3.0", "v1.2.9")
    assert to_previous.state == DESTRUCTIVE_DOWNGRADE and to_previous.migrations_present is True
    assert [step.revision for step in to_previous.steps] == [DESTRUCTIVE.id]
    assert source.assess("v1.3.0", "1.3.0").state == NONE  # the same version, spelled without its v
    unknown = source.assess("v1.3.0", "v1.2.8")
    assert unknown.state == CANNOT_TELL and unknown.migrations_present is None
    assert "v1.2.8 is not in database.migrations.revisions" in unknown.why


def test_reversible_path_and_an_unreachable_database(tmp_path: Path) -> None:
    write_project(tmp_path / "alembic", [BASE, REVERSIBLE])
    upgrade_to(f"sqlite:///{tmp_path / 'shop.db'}", tmp_path / "alembic", REVERSIBLE.id)
    table = f'[database.migrations]\nscript_location = "alembic"\nrevisions = {{ "v1" = "{BASE.id}" }}'
    config = load_config(config_for(tmp_path, table))
    assert MigrationSource(config, config.target(None)).assess("v2", "v1").state == REVERSIBLE_STATE

    config = load_config(config_for(tmp_path, table).parent / "rollback.toml")
    (tmp_path / "shop.db").unlink()
    (tmp_path / "shop.db").mkdir()  # a folder where the file was: SQLite cannot open it
    found = MigrationSource(config, config.target(None)).assess("v2", "v1")
    assert found.state == CANNOT_TELL and "cannot read alembic_version" in found.why


def test_bad_migrations_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(config_for(tmp_path, '[database.migrations]\ntool = "flyway"'))
    assert "database.migrations.tool = 'flyway'" in str(error.value) and "'alembic'" in str(error.value)
    with pytest.raises(ConfigError) as error:
        load_config(config_for(tmp_path, 'critical_tables = "orders"'))
    assert "database.critical_tables" in str(error.value)


# -- Rails and Django, read only ---------------------------------------------------------------


def test_rails_and_django_state_is_read(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE schema_migrations (version TEXT PRIMARY KEY)")
        connection.executemany("INSERT INTO schema_migrations VALUES (?)", [("20240101000000",), ("20240301000000",)])
        connection.execute("CREATE TABLE django_migrations (id INTEGER PRIMARY KEY, app TEXT, name TEXT, applied TEXT)")
        connection.executemany(
            "INSERT INTO django_migrations (app, name, applied) VALUES (?, ?, '')",
            [("shop", "0001_initial"), ("shop", "0002_coupons")],
        )
    connection.close()
    rails = tmp_path / "rails" / "db" / "migrate"
    rails.mkdir(parents=True)
    (rails / "20240101000000_create_orders.rb").write_text("")
    django = tmp_path / "django" / "shop" / "migrations"
    django.mkdir(parents=True)
    (django / "0001_initial.py").write_text("")
    url = f"sqlite:///{database}"

    rails_state = frameworks.compare("rails", url, 5, tmp_path / "rails")
    django_state = frameworks.compare("django", url, 5, tmp_path / "django")

    assert rails_state.applied == 2 and rails_state.newer_than_release == ["20240301000000"]
    assert django_state.newer_than_release == ["shop.0002_coupons"] and django_state.missing_from_database == []


# -- the action on its own: migrations_present, and a second run finding the work done ----------


def test_the_action_skips_what_is_already_done(tmp_path: Path) -> None:
    from rollback_harness.rollback.actions.database import DatabaseAction
    from rollback_harness.rollback.database import alembic_state
    from rollback_harness.rollback.journal import Journal
    from rollback_harness.rollback.targets.base import TargetContext

    write_project(tmp_path / "alembic", [BASE, REVERSIBLE])
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    upgrade_to(url, tmp_path / "alembic", REVERSIBLE.id)
    table = f'rollback = true\n[database.migrations]\nscript_location = "alembic"\nrevisions = {{ "v1" = "{BASE.id}" }}'
    config = load_config(config_for(tmp_path, table))
    context = TargetContext(name="shop", base_dir=tmp_path, progress=lambda _: None, service_version=lambda **_: None)
    action = DatabaseAction(config, config.target(None), context)
    assert action.migrations_present is None  # not judged yet

    [migrations_finding, backup_finding] = action.preflight("v2", "v1")
    assert migrations_finding.ok and backup_finding.ok and action.migrations_present is True
    # Another run (or a person) downgraded the database in between: nothing is done twice.
    directory = alembic_state.scripts(tmp_path / "alembic")
    steps = alembic_state.downgrade_path(directory, REVERSIBLE.id, BASE.id)
    alembic_state.downgrade(url, directory, steps, timeout=5, version_table="alembic_version", on_step=_no_wrap)
    journal = Journal(tmp_path / "journal.jsonl")
    action.before("v2", "v1", journal)
    action.after("v2", "v1", journal)

    states = {(e["step"], e["status"]) for e in journal.entries()}
    assert ("database:backup", "skipped") in states and ("database:downgrade", "skipped") in states
    assert not (tmp_path / "backups").exists()


def _no_wrap(step: object) -> Any:
    from contextlib import nullcontext

    return nullcontext()


def test_scripts_from_a_tagged_migrations_repository(tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "schema"

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=30)

    repo.mkdir()
    git("init", "-q")
    git("config", "user.email", "t@example.invalid")
    git("config", "user.name", "t")
    write_project(repo / "migrations", [BASE])
    git("add", "-A")
    git("commit", "-qm", "base")
    git("tag", "v1.2.9")
    write_project(repo / "migrations", [BASE, REVERSIBLE])
    git("add", "-A")
    git("commit", "-qm", "index")
    git("tag", "v1.3.0")
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    upgrade_to(url, repo / "migrations", REVERSIBLE.id)
    config = load_config(config_for(tmp_path, '[database.migrations]\ngit_repo = "schema"'))
    source = MigrationSource(config, config.target(None))

    found = source.assess("v1.3.0", "v1.2.9")

    assert found.state == REVERSIBLE_STATE and found.target_revision == BASE.id
    assert [step.revision for step in found.steps] == [REVERSIBLE.id]
    missing = source.assess("v1.3.0", "v1.2.8")
    assert missing.state == CANNOT_TELL and "tag v1.2.8 of the migrations repository" in missing.why


def test_rails_migrations_are_reported_and_their_downgrade_left_to_rails(tmp_path: Path) -> None:
    from rollback_harness.rollback.actions.database import DatabaseAction
    from rollback_harness.rollback.targets.base import TargetContext

    with sqlite3.connect(tmp_path / "shop.db") as connection:
        connection.execute("CREATE TABLE schema_migrations (version TEXT PRIMARY KEY)")
        connection.executemany("INSERT INTO schema_migrations VALUES (?)", [("20240101000000",), ("20240301000000",)])
    connection.close()
    for version, files in {
        "v1": ["20240101000000_orders.rb"],
        "v2": ["20240101000000_orders.rb", "20240301000000_coupons.rb"],
    }.items():
        folder = tmp_path / "releases" / version / "db" / "migrate"
        folder.mkdir(parents=True)
        for name in files:
            (folder / name).write_text("")
    config = load_config(
        config_for(tmp_path, 'rollback = true\n[database.migrations]\ntool = "rails"\nrelease_path = "db"')
    )
    context = TargetContext(name="shop", base_dir=tmp_path, progress=lambda _: None, service_version=lambda **_: None)
    action = DatabaseAction(config, config.target(None), context)

    [finding, _] = action.preflight("v2", "v1")

    assert not finding.ok and action.migrations_present is True
    assert "applied but not in v1: 20240301000000" in finding.message
    assert "bin/rails db:migrate VERSION=" in finding.message
    assert action.preflight("v2", "v2")[0].ok  # nothing between: the database matches v2's files
