"""Reading what went wrong under requests' and urllib3's wrappers: shared by the webhooks
(rollback/notify.py) and the traffic probes (rollback/traffic/probe.py)."""

from __future__ import annotations

from collections.abc import Iterator


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (causes, contexts, urllib3 reasons, exception arguments), outer first."""
    pending = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if id(current) not in seen:
            seen.add(id(current))
            yield current
            nested = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
            pending.extend(item for item in nested if isinstance(item, BaseException))


def is_wrapper(exc: BaseException) -> bool:
    """requests' or urllib3's own exception, wrapping the one that says what happened."""
    return type(exc).__module__.split(".")[0] in ("requests", "urllib3")
