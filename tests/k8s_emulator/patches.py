"""The three patch formats the API server accepts: JSON patch, JSON merge patch, strategic merge patch.

Each function takes the current object (not modified) and the decoded patch, and returns the patched
copy or raises ``PatchError`` (answered as 422, as the real server answers a failed JSON patch).
"""

from __future__ import annotations

import copy
from typing import Any

# Lists merged by a key in a strategic merge patch (the patchMergeKey of the Kubernetes types).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "ports": "containerPort",
    "conditions": "type",
    "ownerReferences": "uid",
    "tolerations": "key",
    "hostAliases": "ip",
}


class PatchError(ValueError):
    """A patch that cannot be applied (bad pointer, failed test op, wrong shape)."""


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation {op!r}")
        kind = op["op"]
        if kind == "add":
            doc = _add(doc, op["path"], copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, op["path"])[0]
        elif kind == "replace":
            _get(doc, op["path"])  # must exist
            doc = _remove(doc, op["path"])[0]
            doc = _add(doc, op["path"], copy.deepcopy(op.get("value")))
        elif kind == "move":
            doc, value = _remove(doc, op["from"])
            doc = _add(doc, op["path"], value)
        elif kind == "copy":
            doc = _add(doc, op["path"], copy.deepcopy(_get(doc, op["from"])))
        elif kind == "test":
            if _get(doc, op["path"]) != op.get("value"):
                raise PatchError(f"testing value {op['path']} failed: test failed")
        else:
            raise PatchError(f"unexpected kind of JSON patch operation: {kind!r}")
    return doc


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer {pointer!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _step(node: Any, token: str, pointer: str) -> Any:
    if isinstance(node, dict):
        if token not in node:
            raise PatchError(f"path {pointer!r}: missing key {token!r}")
        return node[token]
    if isinstance(node, list):
        try:
            return node[int(token)]
        except (ValueError, IndexError):
            raise PatchError(f"path {pointer!r}: bad index {token!r}") from None
    raise PatchError(f"path {pointer!r}: cannot descend into a scalar")


def _walk(doc: Any, tokens: list[str], pointer: str) -> Any:
    node = doc
    for token in tokens:
        node = _step(node, token, pointer)
    return node


def _get(doc: Any, pointer: str) -> Any:
    return _walk(doc, _tokens(pointer), pointer)


def _add(doc: Any, pointer: str, value: Any) -> Any:
    tokens = _tokens(pointer)
    if not tokens:
        return value
    parent = _walk(doc, tokens[:-1], pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                index = int(last)
            except ValueError:
                raise PatchError(f"path {pointer!r}: bad index {last!r}") from None
            if not 0 <= index <= len(parent):
                raise PatchError(f"path {pointer!r}: index out of range")
            parent.insert(index, value)
    else:
        raise PatchError(f"path {pointer!r}: parent is a scalar")
    return doc


def _remove(doc: Any, pointer: str) -> tuple[Any, Any]:
    tokens = _tokens(pointer)
    if not tokens:
        return None, doc
    parent = _walk(doc, tokens[:-1], pointer)
    last = tokens[-1]
    value = _step(parent, last, pointer)
    if isinstance(parent, dict):
        del parent[last]
    else:
        del parent[int(last)]
    return doc, value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """The subset kubectl sends: maps merge, null deletes, lists with a merge key merge by that key.

    ``$setElementOrder/...``, ``$retainKeys`` and ``$deleteFromPrimitiveList/...`` directives are
    ignored; ``$patch: replace`` / ``$patch: delete`` on maps and list items are honoured.
    """
    return _strategic(target, patch, "")


def _strategic(target: Any, patch: Any, field: str) -> Any:
    if not isinstance(patch, dict):
        if isinstance(patch, list) and isinstance(target, list) and field in MERGE_KEYS:
            return _merge_list(target, patch, MERGE_KEYS[field])
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _strategic(result.get(key), value, key)
    return result


def _merge_list(target: list[Any], patch: list[Any], key: str) -> list[Any]:
    result = copy.deepcopy(target)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"list item {item!r} lacks its merge key {key!r}")
        index = next((i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append({k: copy.deepcopy(v) for k, v in item.items() if not k.startswith("$")})
        else:
            result[index] = _strategic(result[index], item, "")
    return result
