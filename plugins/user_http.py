"""The HTTP session user-written gates get from the ``rollback_http`` fixture.

Imported only when a test asks for the fixture: requests stays out of an inert pytest start-up.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter

from ..checks.http import USER_AGENT

# Session.request(method, url, params, data, headers, cookies, files, auth, timeout, ...)
_TIMEOUT_POSITION = 6


class ServiceSession(requests.Session):
    """A ``requests.Session`` whose requests time out like the harness's probes.

    Every request without a ``timeout`` gets the service's (``[service] timeout``), so a gate can
    never hang on a stalled service; ``timeout=...`` on a call still wins, ``timeout=None`` included.
    """

    def __init__(self, timeout: float, *, verify_tls: bool = True) -> None:
        super().__init__()
        self.default_timeout = timeout
        # Set up like the probes' session (checks.http.make_session): our User-Agent, no retries.
        self.verify = verify_tls
        self.headers["User-Agent"] = USER_AGENT
        adapter = HTTPAdapter(max_retries=0)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    # Only the timeout is looked at; everything else goes through as given.
    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if "timeout" not in kwargs and len(args) <= _TIMEOUT_POSITION:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)
