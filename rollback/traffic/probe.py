"""One bounded HTTP GET, without proxies from the environment (everything here is loopback).

It behaves as the ``urllib`` opener it replaced did, so answers and their wording stay the same:
redirects followed as urllib followed them, ``Connection: close``, urllib's User-Agent, the
system's trust store for TLS, and failures worded with urllib's exception names.
"""

from __future__ import annotations

import http.client
import string
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlparse, urlunparse

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from ..http_errors import causes, is_wrapper

MAX_BODY = 64 * 1024
# What urllib's opener sent with every request.
_HEADERS = {
    "User-Agent": f"Python-urllib/{sys.version_info[0]}.{sys.version_info[1]}",
    "Accept-Encoding": "identity",
    "Connection": "close",
}
# urllib's HTTPRedirectHandler: these answers are followed, at most 10 times in all and at most 4
# times to the same URL (a loop), and only to these schemes.
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTIONS = 10
_MAX_REPEATS = 4
_REDIRECT_SCHEMES = ("http", "https", "ftp")
# Everything a request can raise because of the network, the peer or the URL.
_FAILURES = (OSError, ValueError, http.client.HTTPException, urllib3.exceptions.HTTPError)


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
    """GET ``url``; never raises for network trouble (the answer says what happened).

    ``timeout`` bounds connecting and each read, for every request of a redirect chain.
    """
    visited: dict[str, int] = {}
    adapter = _SystemTrustAdapter()
    try:
        while True:
            try:
                status, location, body = _fetch(adapter, url, max(0.05, timeout), headers or {})
            except _FAILURES as exc:  # refused, reset, timed out, bad URL
                return Answer(None, "", _in_urllib_words(exc, url))
            target = _redirect_target(url, status, location, visited)
            if target is None:
                return Answer(status, body.decode("utf-8", "replace"))
            url = target
    finally:
        adapter.close()


def _fetch(adapter: HTTPAdapter, url: str, timeout: float, headers: dict[str, str]) -> tuple[int, str | None, bytes]:
    """One request: the status, where a redirect points, and the first MAX_BODY bytes as sent.

    Sent by the adapter itself, not a session: no proxy, .netrc or CA bundle from the environment,
    no cookies carried from one redirect to the next, as with urllib.
    """
    if urlparse(url).scheme.lower() not in ("http", "https"):
        raise _UnknownUrlType(urlparse(url).scheme)
    request = requests.Request("GET", url, headers={**_HEADERS, **headers}).prepare()
    with adapter.send(request, stream=True, timeout=(timeout, timeout), verify=True, proxies={}) as response:
        location = response.headers.get("location")
        if location is None:
            location = response.headers.get("uri")
        return response.status_code, location, response.raw.read(MAX_BODY, decode_content=False)


class _UnknownUrlType(ValueError):
    """A scheme urllib had no handler for here."""


def _redirect_target(url: str, status: int, location: str | None, visited: dict[str, int]) -> str | None:
    """The URL a redirect leads to, as urllib's HTTPRedirectHandler resolved it; None when the
    answer is final (not a redirect, or one urllib would not follow: then the redirect is the answer)."""
    if status not in _REDIRECTS or location is None:
        return None
    parts = urlparse(location)
    if parts.scheme not in (*_REDIRECT_SCHEMES, ""):
        return None
    if not parts.path and parts.netloc:
        parts = parts._replace(path="/")
    target = urljoin(url, quote(urlunparse(parts), encoding="iso-8859-1", safe=string.punctuation))
    if visited.get(target, 0) >= _MAX_REPEATS or len(visited) >= _MAX_REDIRECTIONS:
        return None
    visited[target] = visited.get(target, 0) + 1
    return target


class _SystemTrustAdapter(HTTPAdapter):
    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        if verify is True:
            # Not certifi's bundle: urllib3 then loads the system's store, as urllib did.
            conn.ca_certs = conn.ca_cert_dir = None


def _in_urllib_words(exc: BaseException, url: str) -> str:
    """``TYPE: reason`` as urllib put it: ``URLError: [Errno 111] Connection refused`` when the
    connection could not be made, the socket's own error after that (``TimeoutError: timed out``)."""
    if isinstance(exc, requests.exceptions.MissingSchema) or (isinstance(exc, _UnknownUrlType) and not str(exc)):
        return f"ValueError: unknown url type: {url!r}"
    if isinstance(exc, _UnknownUrlType):
        return f"URLError: unknown url type: {exc}"
    if isinstance(exc, requests.exceptions.InvalidURL) and not urlparse(url).hostname:
        return "URLError: no host given"
    chain = list(causes(exc))
    plain = next((cause for cause in chain if not is_wrapper(cause)), exc)
    connecting = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
    if any(isinstance(cause, connecting) for cause in chain):
        return f"URLError: {plain}"
    if any(isinstance(cause, urllib3.exceptions.ReadTimeoutError) for cause in chain):
        return "TimeoutError: timed out"
    return f"{type(plain).__name__}: {plain}"
