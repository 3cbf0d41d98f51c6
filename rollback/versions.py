"""Version strings: a strict pattern, version ordering, and resolving ``previous`` along a history."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from packaging.version import InvalidVersion, Version

# Letters, digits, dot, underscore, plus and dash; starts with a letter or digit. No path
# separators, no shell metacharacters, no whitespace; ``..`` is refused separately.
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
PREVIOUS = "previous"
# ``--rollback-to revision:3``: a revision of a platform that numbers them (Kubernetes).
REVISION_PREFIX = "revision:"
REVISION_PATTERN = re.compile(r"revision:([0-9]{1,9})")


def requested_revision(requested: str) -> int | None:
    """N when ``requested`` is exactly ``revision:<digits>``, else None."""
    match = REVISION_PATTERN.fullmatch(requested)
    return int(match.group(1)) if match else None


def requested_problem(requested: str, *, kind: str, accepts_revisions: bool) -> str | None:
    """Why ``--rollback-to requested`` cannot name a target of this driver ``kind``, or None."""
    if requested == PREVIOUS:
        return None
    if requested_revision(requested) is not None:
        if accepts_revisions:
            return None
        return (
            f"{requested!r} names a revision number, which a {kind!r} target does not have: "
            "use a plain version (e.g. v1.2.9) or 'previous'"
        )
    problem = version_problem(requested)
    if problem is not None and accepts_revisions:
        problem += "; or 'previous'; or revision:<number> (e.g. revision:3)"
    elif problem is not None:
        problem += "; or 'previous'"
    return problem


def version_problem(version: str) -> str | None:
    """Why ``version`` is not a plain version string, or None when it is."""
    # fullmatch: with match, "$" also matches before a trailing newline, letting "v1\n" through.
    if not VERSION_PATTERN.fullmatch(version):
        return (
            f"{version!r} is not a plain version: use letters, digits, '.', '_', '+' and '-', "
            "starting with a letter or digit (e.g. v1.2.9)"
        )
    if ".." in version:
        return f"{version!r} is not a plain version: '..' is not allowed"
    return None


def same_version(a: str | None, b: str | None) -> bool:
    """True when two version strings name the same version: ``v1.2.9`` and ``1.2.9`` do."""
    if a is None or b is None:
        return False
    return _strip_v(a.strip()) == _strip_v(b.strip())


def _strip_v(version: str) -> str:
    return version[1:] if version[:1] in ("v", "V") and version[1:2].isdigit() else version


def _sort_key(version: str) -> tuple[int, Version | str]:
    text = version[1:] if version[:1] in ("v", "V") else version
    try:
        return (1, Version(text))
    except InvalidVersion:
        # Strings that are not versions sort before every real version, by name.
        return (0, version)


def sort_versions(versions: Iterable[str]) -> list[str]:
    """Oldest first, ordered as versions (v1.10.0 after v1.9.2), not as text."""
    return sorted(set(versions), key=_sort_key)


def is_newer(version: str | None, than: str | None) -> bool:
    """True when both read as versions and ``version`` is the later one (going to it rolls forward)."""
    if version is None or than is None:
        return False
    mine, theirs = _sort_key(version), _sort_key(than)
    return mine[0] == theirs[0] == 1 and mine > theirs


def resolve_target(requested: str, live: str | None, history: Sequence[str]) -> tuple[str | None, str]:
    """Turn ``--rollback-to`` into a concrete version.

    ``history`` is oldest first in the driver's own order, which ``previous`` follows: version order
    for release folders, revision order on Kubernetes (what ``kubectl rollout undo`` goes back to),
    the order the service ran them on Swarm. It is never re-sorted here. Returns ``(version,
    explanation)``; version is None when it cannot be resolved.
    """
    ordered = newest_occurrence(history)
    if requested != PREVIOUS:
        return requested, f"requested {requested}"
    if live is None:
        return None, "'previous' needs the live version, and it could not be read"
    if live not in ordered:
        return None, f"'previous' needs the live version {live} in history ({_listing(ordered)})"
    index = ordered.index(live)
    if index == 0:
        return None, f"no version before the live {live} (history: {_listing(ordered)})"
    return ordered[index - 1], f"'previous' is {ordered[index - 1]}, the one before the live {live}"


def newest_occurrence(history: Sequence[str]) -> list[str]:
    """``history`` with each version kept only where it last appears (its newest place)."""
    last = {version: index for index, version in enumerate(history)}
    return [version for index, version in enumerate(history) if last[version] == index]


def _listing(versions: Sequence[str]) -> str:
    return ", ".join(versions) if versions else "none"
