"""Read a migration script's ``downgrade()`` (its source, never run) for what loses data.

Three kinds of problem:
- destructive: the downgrade runs but throws data away (drop_table, drop_column, a column type
  narrowed or changed, raw SQL that drops, deletes or truncates). Allowed with --allow-data-loss.
- cannot tell: an operation whose effect the source does not show (``getattr(op, "drop_" + kind)``,
  a call to a helper or unknown function, SQL built at run time). Judged like a destructive one:
  it may lose data, so it needs --allow-data-loss too.
- irreversible: the downgrade cannot put the schema back (``raise NotImplementedError``, a body
  that does nothing, no ``downgrade`` at all). Never run: restore a backup or fix forward.

Only what is proven harmless passes: the Alembic operations listed in ``_HARMLESS_OPS``, SQLAlchemy
constructors, pure builtins, and ``execute`` of SQL whose text is known (literals, module or local
string constants, concatenations and f-strings of them) and does not drop, delete or truncate.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DESTRUCTIVE = "destructive"
IRREVERSIBLE = "irreversible"
CANNOT_TELL = "cannot-tell"

_DROPS = {"drop_table": "drops table", "drop_column": "drops column"}
_RAW_SQL_LOSS = re.compile(r"\b(drop\s+(table|column)|delete\s+from|truncate)\b", re.IGNORECASE)
# Integer widths, narrowest first: going down this list narrows.
_INTEGER_WIDTH = {"SmallInteger": 1, "Integer": 2, "BigInteger": 3}
# Operations (on ``op``, ``batch_op`` or a connection) that lose no row and no value.
_HARMLESS_OPS = frozenset(
    {
        "add_column",
        "batch_alter_table",
        "bulk_insert",
        "create_check_constraint",
        "create_exclude_constraint",
        "create_foreign_key",
        "create_index",
        "create_primary_key",
        "create_table",
        "create_table_comment",
        "create_unique_constraint",
        "drop_constraint",
        "drop_index",
        "drop_table_comment",
        "f",
        "get_bind",
        "get_context",
        "inline_literal",
        "rename_table",
        # Reading results and the schema, building text, logging: no change to the database.
        "all",
        "bindparams",
        "fetchall",
        "fetchone",
        "first",
        "format",
        "get_check_constraints",
        "get_columns",
        "get_foreign_keys",
        "get_indexes",
        "get_pk_constraint",
        "get_table_names",
        "get_unique_constraints",
        "has_table",
        "join",
        "one",
        "scalar",
        "scalar_one",
        "scalars",
        "debug",
        "info",
        "warning",
        "error",
    }
)
# Builtins that call nothing they are given (``map``, ``filter`` would).
_PURE_BUILTINS = frozenset(
    {"abs", "all", "any", "bool", "dict", "enumerate", "float", "frozenset", "hasattr", "int", "isinstance", "len"}
    | {"list", "max", "min", "print", "range", "repr", "reversed", "round", "set", "sorted", "str", "tuple", "zip"}
)
_RUNTIME = "{...}"  # stands for a part of a SQL text only known at run time


@dataclass(frozen=True)
class LintIssue:
    """One operation of a downgrade path that loses data, cannot run, or cannot be read."""

    kind: str  # DESTRUCTIVE, CANNOT_TELL or IRREVERSIBLE
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
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
        return [LintIssue(IRREVERSIBLE, revision, shown, getattr(exc, "lineno", None) or 0, f"cannot be read: {exc}")]
    function = next(
        (node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "downgrade"),
        None,
    )
    if function is None:
        return [LintIssue(IRREVERSIBLE, revision, shown, 1, "has no downgrade() function")]
    if _does_nothing(function):
        return [LintIssue(IRREVERSIBLE, revision, shown, function.lineno, "downgrade() is empty (only pass)")]
    try:
        judged = _Reader(tree, function).judge(function)
    except RecursionError:  # the reader follows the tree down; a hostile script can be deeper than the stack
        what = "cannot tell: downgrade() is nested too deep for the lint to read"
        return [LintIssue(CANNOT_TELL, revision, shown, function.lineno, what)]
    issues = [
        LintIssue(kind, revision, shown, getattr(node, "lineno", function.lineno), what)
        for node, (kind, what) in judged
    ]
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


class _Reader:
    """What the module's source says: its string constants, SQLAlchemy names and functions."""

    def __init__(self, module: ast.Module, function: ast.FunctionDef) -> None:
        self.sqlalchemy_names: set[str] = set()
        self.helpers: dict[str, int] = {}
        for node in module.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "sqlalchemy":
                        self.sqlalchemy_names.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
                self.sqlalchemy_names.update(alias.asname or alias.name for alias in node.names)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.helpers[node.name] = node.lineno
        self.constants: dict[str, str] = {}
        self.constants.update(self._strings(module.body, module))
        # Names the downgrade binds itself hide the module's: its own constants, or nothing known.
        for name in set(_bound_list(function)):
            self.constants.pop(name, None)
        self.constants.update(self._strings(function.body, function))

    def _strings(self, body: list[ast.stmt], scope: ast.AST) -> dict[str, str]:
        """``NAME = <string>`` assigned once in ``scope`` (in order, so one may use another)."""
        counts = Counter(_bound_list(scope))
        found: dict[str, str] = {}
        for statement in body:
            target, value = _single_assignment(statement)
            if target is None or value is None or counts[target] != 1:
                continue
            saved, self.constants = self.constants, {**self.constants, **found}
            text = self.text(value)
            self.constants = saved
            if text is not None:
                found[target] = text
        return found

    # -- SQL text ----------------------------------------------------------------------------

    def text(self, node: ast.expr) -> str | None:
        """The string ``node`` evaluates to, when the source alone says it."""
        skeleton = self.skeleton(node)
        return None if _RUNTIME in skeleton else skeleton

    def skeleton(self, node: ast.expr) -> str:
        """The text of ``node`` with every part only known at run time as ``{...}``."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value.replace(_RUNTIME, "{..}")
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.constants[node.id]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.skeleton(node.left) + self.skeleton(node.right)
        if isinstance(node, ast.JoinedStr):
            parts = []
            for part in node.values:
                if isinstance(part, ast.FormattedValue) and part.format_spec is None and part.conversion in (-1, 115):
                    parts.append(self.skeleton(part.value))
                elif isinstance(part, ast.expr):
                    parts.append(self.skeleton(part) if isinstance(part, ast.Constant) else _RUNTIME)
            return "".join(parts)
        if isinstance(node, ast.Call) and len(node.args) == 1 and _called_name(node) == "text":  # sa.text("...")
            return self.skeleton(node.args[0])
        if isinstance(node, ast.Call) and _called_name(node) == "bindparams" and isinstance(node.func, ast.Attribute):
            return self.skeleton(node.func.value)
        return _RUNTIME

    # -- operations --------------------------------------------------------------------------

    def judge(self, node: ast.AST) -> list[tuple[ast.AST, tuple[str, str]]]:
        """Every problem under ``node``, each with the node it was found at."""
        found: list[tuple[ast.AST, tuple[str, str]]] = []
        if isinstance(node, ast.Raise) and node.exc is not None:
            raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(raised, ast.Name) and raised.id == "NotImplementedError":
                return [(node, (IRREVERSIBLE, "raises NotImplementedError (irreversible)"))]
            return []
        skip: ast.AST | None = None
        if isinstance(node, ast.Call):
            verdict, skip = self._call(node)
            if verdict is not None:
                found.append((node, verdict))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and _may_change(node.attr):
            # Reached here only when not called on the spot: handed on, to be called out of sight.
            found.append((node, (CANNOT_TELL, f"cannot tell: {_short(node)} is passed on as a value, not called")))
        for child in ast.iter_child_nodes(node):
            if child is skip:
                continue
            if isinstance(node, ast.Call) and child is node.func and isinstance(child, ast.Attribute):
                found.extend(self.judge(child.value))  # the method itself is judged with the call
                continue
            found.extend(self.judge(child))
        return found

    def _call(self, node: ast.Call) -> tuple[tuple[str, str] | None, ast.AST | None]:
        """The verdict on one call, and a child not to read again (an ``execute``'s SQL)."""
        func = node.func
        if isinstance(func, ast.Call) and isinstance(func.func, ast.Name) and func.func.id == "getattr":
            name = self.text(func.args[1]) if len(func.args) >= 2 else None
            if name is None:
                return (
                    CANNOT_TELL,
                    f"cannot tell: dynamic attribute {_short(func)} (the name is built at run time)",
                ), None
            return self._method(node, name), None
        if isinstance(func, ast.Name):
            if func.id in self.sqlalchemy_names or func.id in _PURE_BUILTINS or func.id == "getattr":
                return None, None
            if func.id in self.helpers:
                return (
                    CANNOT_TELL,
                    f"cannot tell: calls {func.id}() (defined at line {self.helpers[func.id]}), "
                    "a helper function the lint does not follow",
                ), None
            if hasattr(builtins, func.id):
                return (CANNOT_TELL, f"cannot tell: calls the builtin {func.id}()"), None
            return (CANNOT_TELL, f"cannot tell: calls {func.id}(), a function the lint does not know"), None
        if isinstance(func, ast.Attribute):
            if _root_name(func) in self.sqlalchemy_names or _is_string(func.value):
                return None, None  # sa.Column(...), sa.func.now(), ", ".join(...)
            verdict = self._method(node, func.attr)
            return verdict, (node.args[0] if func.attr == "execute" and node.args else None)
        return (CANNOT_TELL, f"cannot tell: dynamic call {_short(func)}(...)"), None

    def _method(self, node: ast.Call, name: str) -> tuple[str, str] | None:
        if name in _DROPS:
            return DESTRUCTIVE, f"{name}: {_DROPS[name]} {self._arguments(node)}".rstrip()
        if name == "alter_column":
            return _type_change(node, self._arguments(node))
        if name == "execute":
            return self._execute(node)
        if name in _HARMLESS_OPS:
            return None
        return CANNOT_TELL, f"cannot tell: {_short(node.func)}() is not an operation the lint knows"

    def _execute(self, node: ast.Call) -> tuple[str, str] | None:
        if not node.args:
            return CANNOT_TELL, "cannot tell: execute() without a statement the lint can read"
        skeleton = self.skeleton(node.args[0])
        shown = " ".join(skeleton.split())[:120]
        if _RAW_SQL_LOSS.search(skeleton):
            built = " (built at run time)" if _RUNTIME in skeleton else ""
            return DESTRUCTIVE, f"execute: raw SQL that loses data{built}: {shown}"
        if _RUNTIME in skeleton:
            if skeleton == _RUNTIME:
                return CANNOT_TELL, f"cannot tell: execute({_short(node.args[0])}): a statement only known at run time"
            return CANNOT_TELL, f"cannot tell: execute() of SQL built at run time: {shown}"
        return None

    def _arguments(self, node: ast.Call) -> str:
        words = [self.text(arg) or f"{{{ast.unparse(arg)}}}" for arg in node.args[:2]]
        return ".".join(word for word in words if word)


def _bound_list(scope: ast.AST) -> list[str]:
    """Every name ``scope`` binds itself (assignments, loops, with-as, imports...), once per binding,
    and every name any function declares ``global`` or ``nonlocal`` (it may rebind it)."""
    names = []
    pending = list(ast.iter_child_nodes(scope))
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
            names.extend(
                n for inner in ast.walk(node) if isinstance(inner, (ast.Global, ast.Nonlocal)) for n in inner.names
            )
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.append(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.extend((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.extend(node.names)
        pending.extend(ast.iter_child_nodes(node))
    return names


def _single_assignment(statement: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
        return statement.targets[0].id, statement.value
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        return statement.target.id, statement.value
    return None, None


def _called_name(node: ast.Call) -> str | None:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_string(node: ast.expr) -> bool:
    return isinstance(node, (ast.Constant, ast.JoinedStr)) and not isinstance(getattr(node, "value", ""), bytes)


def _may_change(name: str) -> bool:
    return name in _DROPS or name == "execute" or (name.startswith("drop") and name not in _HARMLESS_OPS)


def _short(node: ast.AST) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= 80 else text[:77] + "..."


def _type_change(node: ast.Call, where: str) -> tuple[str, str] | None:
    keywords = {keyword.arg: keyword.value for keyword in node.keywords if keyword.arg}
    new = keywords.get("type_")
    if new is None:
        return None
    old = keywords.get("existing_type")
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
