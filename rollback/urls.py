"""Database URLs in messages and evidence, with their secrets hidden.

One rule for every place that shows a URL (the database check, the backups): a password in a
query string or in the user information must never reach a message.
"""

from __future__ import annotations

import re

# A query parameter whose name says it holds a secret (?password=, &auth_token=, ...): its value.
SECRET_QUERY = re.compile(r"([?&][^=&]*(?:pass|secret|token)[^=&]*=)[^&]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """A URL we cannot parse, with its user information and secret query values hidden."""
    if "@" in url:
        head, _, tail = url.rpartition("@")
        scheme, slashes, _ = head.partition("//")
        url = f"{scheme}{slashes}***@{tail}" if slashes else f"***@{tail}"
    return SECRET_QUERY.sub(r"\1***", url)
