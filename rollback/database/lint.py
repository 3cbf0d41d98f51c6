"""Read a migration script's ``downgrade()`` (its source, never run) for what loses data.

Two kinds of problem:
- destructive: the downgrade runs but throws data away (drop_table, drop_column, a column type
  narrowed or changed, raw SQL that drops, deletes or truncates). Allowed with --allow-data-loss.
- irreversible: the downgrade cannot put the schema back (``raise NotImplementedError``, a body
  that does nothing, no ``downgrade`` at all). Never run: restore a backup or fix forward.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DESTRUCTIVE = "destructive"
IRREVERSIBLE = "irreversible"

_DROPS = {"drop_table": "drops table", "drop_column": "drops column"}
_RAW_SQL_LOSS = re.compile(r"\b(drop\s+(table|column)|delete\s+from|truncate)\b", re.IGNORECASE)
# Integer widths, narrowest first: going down this list narrows.
_INTEGER_WIDTH = {"SmallInteger": 1, "Integer": 2, "BigInteger": 3}


@dataclass(frozen=True)
class LintIssue:
    """One operation of a downgrade path that loses data or cannot run."""

    kind: str  # DESTRUCTIVE or IRREVERSIBLE
    revision: str
    path: str
    line: int
    what: str

    def describe(self) -> str:
        return f"{self.path}:{self.line} ({self.revision}): {self.what}"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def lint_downgrade(path: Path, revision: str) -> list[LintIssue]:
    """The problems in ``downgrade()`` of the script at ``path`` (revision ``revision``)."""
    shown = str(path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=shown)
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        return [LintIssue(IRREVERSIBLE, revision, shown, getattr(exc, "lineno", None) or 0, f"cannot be read: {exc}")]
    function = next(
        (node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "downgrade"),
        None,
    )
    if function is None:
        return [LintIssue(IRREVERSIBLE, revision, shown, 1, "has no downgrade() function")]
    if _does_nothing(function):
        return [LintIssue(IRREVERSIBLE, revision, shown, function.lineno, "downgrade() is empty (only pass)")]
    issues = []
    for node in ast.walk(function):
        found = _judge(node)
        if found is not None:
            kind, what = found
            issues.append(LintIssue(kind, revision, shown, getattr(node, "lineno", function.lineno), what))
    return sorted(issues, key=lambda issue: issue.line)


def _does_nothing(function: ast.FunctionDef) -> bool:
    """Only ``pass``, ``...`` or a docstring."""
    for statement in function.body:
        if isinstance(statement, ast.Pass):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue
        return False
    return True


def _judge(node: ast.AST) -> tuple[str, str] | None:
    if isinstance(node, ast.Raise) and node.exc is not None:
        raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(raised, ast.Name) and raised.id == "NotImplementedError":
            return IRREVERSIBLE, "raises NotImplementedError (irreversible)"
        return None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return None
    name = node.func.attr
    if name in _DROPS:
        return DESTRUCTIVE, f"{name}: {_DROPS[name]} {_arguments(node)}".rstrip()
    if name == "alter_column":
        return _type_change(node)
    if name == "execute" and node.args:
        sql = _constant_text(node.args[0])
        if sql is not None and _RAW_SQL_LOSS.search(sql):
            return DESTRUCTIVE, f"execute: raw SQL that loses data: {' '.join(sql.split())[:120]}"
    return None


def _type_change(node: ast.Call) -> tuple[str, str] | None:
    keywords = {keyword.arg: keyword.value for keyword in node.keywords if keyword.arg}
    new = keywords.get("type_")
    if new is None:
        return None
    old = keywords.get("existing_type")
    where = _arguments(node)
    new_text = ast.unparse(new)
    if old is None:
        return DESTRUCTIVE, f"alter_column {where}: type changed to {new_text} (old type not given: may narrow)"
    if _widens(old, new):
        return None
    return DESTRUCTIVE, f"alter_column {where}: type narrowed from {ast.unparse(old)} to {new_text}"


def _widens(old: ast.expr, new: ast.expr) -> bool:
    """True only when ``new`` provably holds every value of ``old`` (String(50) -> String(255))."""
    old_name, old_args = _type_parts(old)
    new_name, new_args = _type_parts(new)
    if old_name in _INTEGER_WIDTH and new_name in _INTEGER_WIDTH:
        return _INTEGER_WIDTH[new_name] >= _INTEGER_WIDTH[old_name]
    if old_name in ("String", "VARCHAR", "Unicode") and new_name in ("Text", "UnicodeText"):
        return True
    if old_name == new_name and old_name in ("String", "VARCHAR", "Unicode", "CHAR"):
        if not new_args:
            return True  # no length: unlimited
        if old_args and isinstance(old_args[0], int) and isinstance(new_args[0], int):
            return new_args[0] >= old_args[0]
    return old_name == new_name and old_args == new_args


def _type_parts(node: ast.expr) -> tuple[str, list[Any]]:
    call = node if isinstance(node, ast.Call) else None
    target = call.func if call is not None else node
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    args = [arg.value if isinstance(arg, ast.Constant) else ast.unparse(arg) for arg in (call.args if call else [])]
    for keyword in call.keywords if call else []:
        if keyword.arg == "length" and isinstance(keyword.value, ast.Constant):
            args = [keyword.value.value, *args]
    return str(name), args


def _arguments(node: ast.Call) -> str:
    words = [_constant_text(arg) for arg in node.args]
    return ".".join(word for word in words[:2] if word)


def _constant_text(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Call) and node.args:  # sa.text("...")
        return _constant_text(node.args[0])
    return None
