"""The demo's schema as an Alembic project: every release ships ``migrations/``; v1.3.0 adds a
revision (a ``note`` column on orders and a ``coupons`` table), so rolling it back to v1.2.9 means
a downgrade, which the harness finds in preflight, backs up for, runs and checks."""

from __future__ import annotations

from pathlib import Path

from packaging.version import InvalidVersion, Version

FOLDER = "migrations"
BASE = "d1a0c0ffee01"
COUPONS = "d1b0c0ffee02"
COUPONS_FROM = Version("1.3.0")

_SCRIPTS = {
    BASE: (
        None,
        "the orders table",
        """\
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item", sa.Text, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
    )""",
        '    op.drop_table("orders")',
    ),
    COUPONS: (
        BASE,
        "orders.note and a coupons table",
        """\
    op.add_column("orders", sa.Column("note", sa.Text, nullable=True))
    op.create_table("coupons", sa.Column("code", sa.Text, primary_key=True), sa.Column("percent", sa.Integer))""",
        """\
    op.drop_table("coupons")
    op.drop_column("orders", "note")""",
    ),
}


def revisions_for(version: str) -> list[str]:
    """The revisions release ``version`` ships, oldest first."""
    try:
        newer = Version(version.lstrip("v")) >= COUPONS_FROM
    except InvalidVersion:
        newer = False
    return [BASE, COUPONS] if newer else [BASE]


def write_scripts(release_folder: Path, version: str) -> Path:
    """``<release>/migrations/versions/*.py`` for ``version``; the folder Alembic reads."""
    location = release_folder / FOLDER
    (location / "versions").mkdir(parents=True, exist_ok=True)
    (location / "README").write_text("Alembic scripts of this release (the harness reads them; env.py is unused).\n")
    for revision in revisions_for(version):
        down, message, upgrade, downgrade = _SCRIPTS[revision]
        text = (
            f'"""{message}"""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
            f"revision = {revision!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n{upgrade}\n\n\ndef downgrade():\n{downgrade}\n"
        )
        (location / "versions" / f"{revision}.py").write_text(text, encoding="utf-8")
    return location


def upgrade(database: Path, location: Path, *, stamped: str | None = None) -> None:
    """Bring ``database`` to ``location``'s head with Alembic's API, as the release's deploy did.

    ``stamped``: the revision the database's tables already match (written without Alembic).
    """
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    directory = ScriptDirectory(str(location))
    engine = create_engine(f"sqlite:///{database}", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            if stamped is not None:
                with connection.begin():
                    MigrationContext.configure(connection).stamp(directory, stamped)
            current = MigrationContext.configure(connection).get_current_revision()
            connection.rollback()
            head = directory.get_current_head()
            pending = [] if head is None else list(directory.iterate_revisions(head, current or "base"))
            for script in reversed(pending):
                if script.revision == current:
                    continue
                with connection.begin():
                    context = MigrationContext.configure(connection)
                    with Operations.context(context):
                        script.module.upgrade()
                    context.stamp(directory, script.revision)
    finally:
        engine.dispose()


def config_toml() -> str:
    """The lines of rollback.toml's [database] that turn migration care on."""
    return f"""\
critical_tables = ["orders"]
# v1.3.0 added a migration: the rollback downgrades the schema too (after a verified backup).
rollback = true

[database.migrations]
tool = "alembic"
release_path = "{FOLDER}"
"""
