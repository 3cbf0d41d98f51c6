"""One bounded HTTP GET, without proxies from the environment (everything here is loopback)."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer at all
    body: str
    error: str | None = None

    def describe(self) -> str:
        if self.status is None:
            return f"no answer ({self.error})"
        return f"HTTP {self.status}"


def get(url: str, timeout: float, headers: dict[str, str] | None = None) -> Answer:
    """GET ``url``; never raises for network trouble (the answer says what happened)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with _OPENER.open(request, timeout=max(0.05, timeout)) as response:
            return Answer(response.status, response.read(MAX_BODY).decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read(MAX_BODY).decode("utf-8", "replace")
        except OSError:
            body = ""
        return Answer(exc.code, body)
    except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
        reason = getattr(exc, "reason", None) or exc
        return Answer(None, "", f"{type(exc).__name__}: {reason}")
