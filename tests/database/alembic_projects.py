"""Real Alembic projects for the tests: a versions/ folder of revision scripts per release.

Each revision is (id, upgrade body, downgrade body); ``write_release`` writes the chain up to a
release into ``<release>/migrations/versions``. ``upgrade_to`` runs Alembic's own ``upgrade``
command on a database, as a deploy would.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Revision:
    id: str
    message: str
    upgrade: str
    downgrade: str


BASE = Revision(
    "a1000000base",
    "orders table",
    'op.create_table("orders", sa.Column("id", sa.Integer, primary_key=True), sa.Column("item", sa.String(50)))\n'
    'op.bulk_insert(sa.table("orders", sa.column("id", sa.Integer), sa.column("item", sa.String)), '
    '[{"id": 1, "item": "tea"}, {"id": 2, "item": "cake"}])',
    'op.drop_table("orders")',
)
# Reversible: an index and a renamed column, undone without losing a row or a value.
REVERSIBLE = Revision(
    "b2000000index",
    "index orders.item, rename item to product",
    'op.create_index("ix_orders_item", "orders", ["item"])\n'
    'op.alter_column("orders", "item", new_column_name="product")',
    'op.alter_column("orders", "product", new_column_name="item")\n'
    'op.drop_index("ix_orders_item", table_name="orders")',
)
# Destructive: a new column and a new table, dropped again by the downgrade.
DESTRUCTIVE = Revision(
    "c3000000coupons",
    "orders.note and a coupons table",
    'op.add_column("orders", sa.Column("note", sa.Text, nullable=True))\n'
    'op.create_table("coupons", sa.Column("code", sa.String(20), primary_key=True))',
    'op.drop_table("coupons")\nop.drop_column("orders", "note")',
)
IRREVERSIBLE = Revision(
    "d4000000split",
    "split names (cannot be undone)",
    'op.create_table("audit", sa.Column("id", sa.Integer, primary_key=True))',
    'raise NotImplementedError("the audit table cannot be dropped")',
)
# Its downgrade fails at its second statement (the table it drops does not exist).
FAILING = Revision(
    "e5000000broken",
    "a downgrade that fails",
    'op.create_index("ix_orders_id_item", "orders", ["id"])',
    'op.drop_index("ix_orders_id_item", table_name="orders")\nop.drop_table("no_such_table")',
)


def script_text(revision: Revision, down: str | None) -> str:
    lines = [
        f'"""{revision.message}"""',
        "import sqlalchemy as sa",
        "from alembic import op",
        "",
        f"revision = {revision.id!r}",
        f"down_revision = {down!r}",
        "branch_labels = None",
        "depends_on = None",
        "",
        "",
        "def upgrade():",
        textwrap.indent(revision.upgrade, "    "),
        "",
        "",
        "def downgrade():",
        textwrap.indent(revision.downgrade, "    "),
    ]
    return "\n".join(lines) + "\n"


def write_project(folder: Path, chain: list[Revision]) -> Path:
    """An Alembic project in ``folder`` whose history is ``chain`` (oldest first)."""
    versions = folder / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    (folder / "env.py").write_text("# the harness never runs env.py\n")
    (folder / "script.py.mako").write_text("")
    down = None
    for revision in chain:
        (versions / f"{revision.id}.py").write_text(script_text(revision, down))
        down = revision.id
    return folder


def upgrade_to(url: str, location: Path, revision: str) -> None:
    """Run Alembic's own upgrade on ``url`` (as the deploy of that release did)."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    directory = ScriptDirectory(str(location))
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            connection.rollback()  # the read began a transaction; each revision has its own
            steps = list(reversed(list(directory.iterate_revisions(revision, current or "base"))))
            for script in steps:
                if script.revision == current:
                    continue
                with connection.begin():
                    context = MigrationContext.configure(connection)
                    with Operations.context(context):
                        script.module.upgrade()
                    context.stamp(directory, script.revision)
    finally:
        engine.dispose()
