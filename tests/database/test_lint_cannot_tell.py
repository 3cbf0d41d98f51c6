"""Scenarios 22 and 33: a downgrade whose effect the lint cannot read is "cannot tell", and needs
--rollback-allow-data-loss like a destructive one. Unit tests of the lint on script files, then one
real Alembic project per dynamic form rolled back against SQLite (rollback/database/lint.py)."""

from __future__ import annotations

import sqlite3
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Imported before any in-process pytester run (see test_migration_rollback.py).
import alembic.operations
import alembic.runtime.migration
import alembic.script  # noqa: F401
import pytest
from alembic_projects import BASE, Revision, script_text, upgrade_to, write_project
from deployments import Deployment, read_evidence

import rollback_harness.rollback.actions.database
import rollback_harness.rollback.database.backup
from rollback_harness.rollback.database.alembic_state import database_revision, table_names
from rollback_harness.rollback.database.lint import CANNOT_TELL, DESTRUCTIVE, lint_downgrade


def script(tmp_path: Path, downgrade: str, prelude: str = "") -> Path:
    path = tmp_path / "rev.py"
    body = textwrap.indent(textwrap.dedent(downgrade).strip(), "    ")
    head = "from alembic import op\nimport sqlalchemy as sa\n"
    path.write_text(f"{head}{textwrap.dedent(prelude)}\n\ndef upgrade():\n    pass\n\n\ndef downgrade():\n{body}\n")
    return path


def found(tmp_path: Path, downgrade: str, prelude: str = "") -> list[tuple[str, str]]:
    return [(i.kind, i.what) for i in lint_downgrade(script(tmp_path, downgrade, prelude), "r1")]


def line_of(path: Path, text: str) -> int:
    [number] = [n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    return number


# -- the lint ----------------------------------------------------------------------------------


def test_getattr_with_a_built_name_is_cannot_tell_with_its_line(tmp_path: Path) -> None:
    path = script(tmp_path, 'for kind in ("table",):\n    getattr(op, "drop_" + kind)("coupons")')

    [issue] = lint_downgrade(path, "r1")

    assert issue.kind == CANNOT_TELL and issue.line == line_of(path, "getattr(op")
    assert "dynamic attribute getattr(op, 'drop_' + kind)" in issue.what
    assert issue.describe().startswith(f"{path}:{issue.line} (r1): cannot tell")


def test_getattr_with_a_literal_name_is_read_as_the_call_it_names(tmp_path: Path) -> None:
    assert found(tmp_path, 'getattr(op, "drop_table")("coupons")') == [(DESTRUCTIVE, "drop_table: drops table coupons")]


def test_a_helper_function_is_cannot_tell_and_named(tmp_path: Path) -> None:
    prelude = "\n\ndef _drop(name):\n    op.drop_table(name)\n"
    assert found(tmp_path, '_drop("coupons")', prelude) == [
        (CANNOT_TELL, "cannot tell: calls _drop() (defined at line 5), a helper function the lint does not follow")
    ]


def test_sql_in_module_constants_is_resolved_first(tmp_path: Path) -> None:
    prelude = 'TABLE = "coupons"\nDROP = "DROP TABLE " + TABLE\nCREATE = f"CREATE TABLE {TABLE}_old (code TEXT)"\n'
    issues = found(tmp_path, "op.execute(DROP)\nop.execute(sa.text(CREATE))\nop.drop_table(TABLE)", prelude)
    # Destructive, not cannot-tell: the constants say what the SQL is; the CREATE is harmless.
    assert issues == [
        (DESTRUCTIVE, "execute: raw SQL that loses data: DROP TABLE coupons"),
        (DESTRUCTIVE, "drop_table: drops table coupons"),
    ]


def test_a_constant_assigned_twice_is_not_trusted(tmp_path: Path) -> None:
    prelude = 'SQL = "CREATE TABLE x (id INTEGER)"\nif True:\n    SQL = "DROP TABLE orders"\n'
    [(kind, what)] = found(tmp_path, "op.execute(SQL)", prelude)
    assert kind == CANNOT_TELL and "execute(SQL): a statement only known at run time" in what


def test_a_local_name_hides_the_module_constant(tmp_path: Path) -> None:
    prelude = 'SQL = "CREATE TABLE x (id INTEGER)"\n'
    assert found(tmp_path, 'SQL = "DELETE FROM orders"\nop.execute(SQL)', prelude) == [
        (DESTRUCTIVE, "execute: raw SQL that loses data: DELETE FROM orders")
    ]


@pytest.mark.parametrize(
    ("downgrade", "expected"),
    [
        (
            'for t in names():\n    op.execute(f"DROP TABLE {t}")',
            [
                (CANNOT_TELL, "cannot tell: calls names(), a function the lint does not know"),
                (DESTRUCTIVE, "execute: raw SQL that loses data (built at run time): DROP TABLE {...}"),
            ],
        ),
        (
            'op.execute("ALTER TABLE orders " + " ".join(["DROP", "COLUMN", "note"]))',
            [(CANNOT_TELL, "cannot tell: execute() of SQL built at run time: ALTER TABLE orders {...}")],
        ),
        (
            'op.execute("UPDATE orders SET note = %s" % value)',
            [
                (
                    CANNOT_TELL,
                    "cannot tell: execute('UPDATE orders SET note = %s' % value): a statement only known at run time",
                )
            ],
        ),
        (
            "op.execute(statement)",
            [(CANNOT_TELL, "cannot tell: execute(statement): a statement only known at run time")],
        ),
        (
            "op.execute(sa.table('t').delete())",
            [(CANNOT_TELL, "cannot tell: execute(sa.table('t').delete()): a statement only known at run time")],
        ),
    ],
    ids=["f-string-in-a-loop", "join", "percent-format", "variable", "sqlalchemy-delete"],
)
def test_sql_built_at_run_time(tmp_path: Path, downgrade: str, expected: list[tuple[str, str]]) -> None:
    assert found(tmp_path, downgrade) == expected


@pytest.mark.parametrize(
    ("downgrade", "why"),
    [
        ("list(map(op.drop_table, ['a']))", "op.drop_table is passed on as a value, not called"),
        ("drop = op.drop_column\ndrop('orders', 'note')", "op.drop_column is passed on as a value, not called"),
        ("exec(\"op.drop_table('a')\")", "calls the builtin exec()"),
        ("sa.MetaData().drop_all(op.get_bind())", "sa.MetaData().drop_all() is not an operation the lint knows"),
        ("{'t': op.f}['t']('x')", "dynamic call {'t': op.f}['t'](...)"),
        ("op.get_bind().exec_driver_sql('DELETE FROM orders')", "is not an operation the lint knows"),
    ],
    ids=["map", "alias", "exec", "metadata-drop-all", "subscript", "driver-sql"],
)
def test_other_calls_the_lint_cannot_read(tmp_path: Path, downgrade: str, why: str) -> None:
    issues = found(tmp_path, downgrade)
    assert issues and all(kind == CANNOT_TELL for kind, _ in issues)
    assert any(why in what for _, what in issues), issues


def test_known_harmless_operations_stay_reversible(tmp_path: Path) -> None:
    prelude = 'CREATE = "CREATE TABLE archive (id INTEGER)"\nFILL = CREATE + "; INSERT INTO archive VALUES (1)"\n'
    downgrade = """
        op.add_column("orders", sa.Column("note", sa.Text(), nullable=True))
        op.create_table("coupons", sa.Column("code", sa.String(20), primary_key=True))
        op.create_index(op.f("ix_orders_item"), "orders", ["item"])
        op.alter_column("orders", "item", type_=sa.String(200), existing_type=sa.String(50))
        op.alter_column("orders", "product", new_column_name="item")
        op.drop_index("ix_old", table_name="orders")
        op.execute(FILL)
        op.execute(sa.text("INSERT INTO coupons (code) VALUES (:c)").bindparams(c="x"))
        op.bulk_insert(sa.table("coupons", sa.column("code", sa.String)), [{"code": "a"}])
        with op.batch_alter_table("orders") as batch_op:
            batch_op.create_unique_constraint("uq_item", ["item"])
        rows = op.get_bind().execute(sa.text("SELECT 1")).fetchall()
        print(len(rows), ", ".join(str(r) for r in rows))
    """
    assert found(tmp_path, downgrade, prelude) == []


def test_a_defensive_hand_written_downgrade_stays_reversible(tmp_path: Path) -> None:
    prelude = """
        import logging
        from sqlalchemy import text
        from sqlalchemy.dialects import postgresql

        log = logging.getLogger(__name__)
    """
    downgrade = """
        bind = op.get_bind()
        inspector = sa.inspect(bind)
        if "coupons" in inspector.get_table_names() and bind.dialect.name == "postgresql":
            log.info("dropping the index")
            op.drop_index(op.f("ix_coupons_code"), table_name="coupons")
        op.drop_constraint("fk_orders_user", "orders", type_="foreignkey")
        op.create_foreign_key(None, "orders", "users", ["user_id"], ["id"])
        op.alter_column("orders", "status", existing_type=postgresql.ENUM("a", "b", name="st"), nullable=True)
        bind.execute(text("UPDATE orders SET status = 'a' WHERE status IS NULL"))
    """
    assert found(tmp_path, downgrade, prelude) == []


def test_a_downgrade_too_deep_to_read_is_cannot_tell(tmp_path: Path) -> None:
    # 2,000 terms of a + b + ...: Python parses it, but the tree is deeper than the reader's stack.
    [(kind, what)] = found(tmp_path, "op.execute(" + " + ".join(["'x'"] * 2000) + ")")

    assert kind == CANNOT_TELL and "nested too deep" in what


# -- the action's verdict, without a deployment ---------------------------------------------------


def config_for(tmp_path: Path) -> Path:
    path = tmp_path / "rollback.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [service]
            name = "shop"
            base_url = "http://127.0.0.1:9"

            [database]
            url = "sqlite:///shop.db"
            rollback = true

            [database.migrations]
            script_location = "alembic"
            revisions = {{ "v1" = "{BASE.id}" }}

            [targets.app]
            kind = "symlink"
            releases_dir = "releases"
            current_link = "current"
            restart = ["true"]
            """
        )
    )
    return path


def test_preflight_refuses_cannot_tell_without_the_option_and_allows_it_with(tmp_path: Path) -> None:
    from rollback_harness.rollback.config import load_config
    from rollback_harness.rollback.targets.base import TargetContext

    form = FORMS[0]
    project = write_dynamic_project(tmp_path / "alembic", form)
    upgrade_to(f"sqlite:///{tmp_path / 'shop.db'}", project, form.revision.id)
    config = load_config(config_for(tmp_path))
    script_path = project / "versions" / f"{form.revision.id}.py"
    where = f"{script_path}:{line_of(script_path, form.marker)} ({form.revision.id}): cannot tell"

    def preflight(**options: Any) -> tuple[bool, str, bool]:
        context = TargetContext(
            name="shop", base_dir=tmp_path, progress=lambda _: None, service_version=lambda **_: None, options=options
        )
        action = rollback_harness.rollback.actions.database.DatabaseAction(config, config.target(None), context)
        [finding, _] = action.preflight("v2", "v1")
        return finding.ok, finding.message, action.will_downgrade

    ok, message, will = preflight()
    assert not ok and not will
    assert where in message and "Refused without --rollback-allow-data-loss" in message
    ok, message, will = preflight(rollback_db=True, allow_data_loss=True)
    assert ok and will and "allowed by --rollback-allow-data-loss" in message and where in message


# -- real rollbacks, one Alembic project per dynamic form ----------------------------------------


@dataclass(frozen=True)
class Form:
    name: str
    revision: Revision
    prelude: str  # module-level code: constants, helpers
    marker: str  # text on the line the preflight names
    state: str  # the assessment's state
    kind: str  # the kind of the issue on the marker's line


_UPGRADE = (
    'op.add_column("orders", sa.Column("note", sa.Text, nullable=True))\n'
    "op.execute(\"UPDATE orders SET note = 'gift wrap' WHERE id = 1\")\n"
    'op.create_table("coupons", sa.Column("code", sa.String(20), primary_key=True))\n'
    "op.execute(\"INSERT INTO coupons (code) VALUES ('SPRING'), ('SUMMER')\")"
)


def _revision(downgrade: str) -> Revision:
    return Revision("f6000000dyn", "orders.note and coupons, dropped dynamically", _UPGRADE, downgrade)


FORMS = [
    Form(
        "getattr",
        _revision(
            'for kind, args in (("table", ("coupons",)), ("column", ("orders", "note"))):\n'
            '    getattr(op, "drop_" + kind)(*args)'
        ),
        "",
        'getattr(op, "drop_" + kind)',
        "unreadable",
        CANNOT_TELL,
    ),
    Form(
        "helper",
        _revision('_drop_new_things("coupons", "note")'),
        'def _drop_new_things(table, column):\n    op.drop_table(table)\n    op.drop_column("orders", column)\n',
        '    _drop_new_things("coupons", "note")',
        "unreadable",
        CANNOT_TELL,
    ),
    Form(
        "sql-constant",
        _revision("op.execute(DROP_COUPONS)\nop.execute(DROP_NOTE)"),
        'DROP_COUPONS = "DROP TABLE coupons"\nDROP_NOTE = "ALTER TABLE orders DROP COLUMN note"\n',
        "op.execute(DROP_COUPONS)",
        "destructive",
        DESTRUCTIVE,
    ),
    Form(
        "sql-built",
        _revision(
            'for table in TABLES:\n    op.execute(f"DROP TABLE {table}")\n'
            'op.execute("ALTER TABLE orders " + " ".join(["DROP", "COLUMN", "note"]))'
        ),
        'TABLES = ["coupons"]\n',
        'op.execute("ALTER TABLE orders "',
        "destructive",
        CANNOT_TELL,
    ),
]


def write_dynamic_project(folder: Path, form: Form) -> Path:
    """BASE, then ``form``'s revision, with its module-level code before ``upgrade()``."""
    write_project(folder, [BASE, form.revision])
    text = script_text(form.revision, BASE.id).replace("\n\ndef upgrade():", f"\n{form.prelude}\n\ndef upgrade():", 1)
    (folder / "versions" / f"{form.revision.id}.py").write_text(text)
    return folder


def deploy(demo: Deployment, url: str, form: Form) -> Path:
    releases = demo.layout.releases_dir
    for release in sorted(p.name for p in releases.iterdir()):
        if release == "v1.3.0":
            write_dynamic_project(releases / release / "migrations", form)
        else:
            write_project(releases / release / "migrations", [BASE])
    upgrade_to(url, releases / "v1.3.0" / "migrations", form.revision.id)
    demo.update_config(
        database={"url": url, "timeout": "5s", "rollback": True, "migrations": {"release_path": "migrations"}}
    )
    return releases / "v1.3.0" / "migrations" / "versions" / f"{form.revision.id}.py"


def rows(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as connection:
        coupons = connection.execute("SELECT code FROM coupons ORDER BY code").fetchall()
        notes = connection.execute("SELECT id, note FROM orders ORDER BY id").fetchall()
    connection.close()
    return coupons, notes


ROWS_BEFORE = ([("SPRING",), ("SUMMER",)], [(1, "gift wrap"), (2, None)])


@pytest.mark.integration
@pytest.mark.parametrize("form", FORMS, ids=[form.name for form in FORMS])
def test_dynamic_downgrade_is_refused_without_the_option_and_nothing_is_dropped(
    pytester: pytest.Pytester, demo: Deployment, tmp_path: Path, form: Form
) -> None:
    database = tmp_path / "shop.db"
    script_path = deploy(demo, f"sqlite:///{database}", form)
    assert rows(database) == ROWS_BEFORE

    result = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes", "-rA")
    )

    assert result.ret == 10, result.stdout.str()
    line = line_of(script_path, form.marker)
    kind_words = "cannot tell" if form.kind == CANNOT_TELL else ""
    result.stdout.fnmatch_lines([f"*{script_path}:{line} ({form.revision.id}): {kind_words}*"])
    result.stdout.fnmatch_lines(["*Refused without *allow-data-loss*"])
    assert rows(database) == ROWS_BEFORE  # nothing dropped
    assert database_revision(f"sqlite:///{database}", 5) == form.revision.id
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0


@pytest.mark.integration
@pytest.mark.parametrize("form", FORMS, ids=[form.name for form in FORMS])
def test_dynamic_downgrade_with_the_option_runs_after_a_backup_and_is_recorded(
    pytester: pytest.Pytester, demo: Deployment, tmp_path: Path, form: Form
) -> None:
    database = tmp_path / "shop.db"
    url = f"sqlite:///{database}"
    script_path = deploy(demo, url, form)

    result = pytester.runpytest(
        *demo.harness_args(
            pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes", "--rollback-allow-data-loss", "-rA"
        )
    )

    assert result.ret == 0, result.stdout.str()
    assert database_revision(url, 5) == BASE.id and "coupons" not in table_names(url, 5)
    evidence = read_evidence(pytester.path / "reports")
    assert {"setting": "--allow-data-loss", "effect": "a database downgrade that drops data was permitted"} in evidence[
        "relaxed_safety"
    ]
    [assessment] = [e["detail"] for e in evidence["timeline"] if e["what"] == "database:assessment"]
    assert assessment["allow_data_loss"] is True and assessment["state"] == form.state
    line = line_of(script_path, form.marker)
    assert {(issue["kind"], issue["line"]) for issue in assessment["issues"]} >= {(form.kind, line)}
    [backup] = sorted((demo.layout.root / "backups").iterdir())
    assert rows(backup) == ROWS_BEFORE  # the backup, taken first, holds what the downgrade dropped
