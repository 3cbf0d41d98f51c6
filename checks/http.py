"""One HTTP request, measured, with network failures turned into short human strings."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

USER_AGENT = "rollback-harness/0.1"
BODY_LIMIT = 64 * 1024
_CHUNK = 8192

# Everything a request can raise because of the network, the peer or the URL.
_REQUEST_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,
)


@dataclass(frozen=True)
class Probe:
    """What one request saw: ``elapsed`` covers the whole response, body included."""

    url: str
    method: str
    status: int | None
    elapsed: float
    body: str
    error: str | None

    @property
    def ok_transport(self) -> bool:
        """True when a complete HTTP response arrived, whatever its status."""
        return self.error is None


class _BodyTimeout(Exception):
    """The body did not arrive within the timeout after the headers."""


def make_session(*, verify_tls: bool = True) -> requests.Session:
    """A session for probes: our User-Agent, TLS verification as asked, no retries."""
    session = requests.Session()
    session.verify = verify_tls
    session.headers["User-Agent"] = USER_AGENT
    adapter = HTTPAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def join_url(base_url: str, path: str) -> str:
    """``base_url`` with ``path`` appended; a full http(s) URL in ``path`` is returned as is.

    Unlike ``urljoin``, a path below the base is kept: "http://h/app" + "/x" is "http://h/app/x".
    """
    if path.lower().startswith(("http://", "https://")):
        return path
    if not path:
        return base_url
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def url_path(url: str) -> str:
    """The path and query of ``url``, for names and summaries ("/api/orders?x=1")."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def probe(session: requests.Session, url: str, *, method: str = "GET", timeout: float) -> Probe:
    """Send one request and read the response; never raises for network problems.

    ``timeout`` bounds the connect, each read, and the whole body after the headers.
    Redirects are not followed: a health or version endpoint that redirects is worth seeing.
    """
    method = method.upper()
    start = time.perf_counter()
    try:
        with session.request(
            method,
            url,
            timeout=(timeout, timeout),
            stream=True,
            allow_redirects=False,
            # Explicit, or requests lets REQUESTS_CA_BUNDLE override session.verify = False.
            verify=session.verify,
        ) as response:
            body = _read_body(response, time.perf_counter() + timeout)
            status = response.status_code
    except _BodyTimeout:
        elapsed = time.perf_counter() - start
        return Probe(url, method, None, elapsed, "", f"timed out after {timeout}s reading the body")
    except _REQUEST_ERRORS as exc:
        elapsed = time.perf_counter() - start
        return Probe(url, method, None, elapsed, "", describe_error(exc, timeout))
    return Probe(url, method, status, time.perf_counter() - start, body, None)


def _read_body(response: requests.Response, deadline: float) -> str:
    """Read the whole body before ``deadline``; keep and decode the first BODY_LIMIT bytes."""
    kept = bytearray()
    for chunk in _chunks(response):
        if len(kept) < BODY_LIMIT:
            kept += chunk[: BODY_LIMIT - len(kept)]
        if time.perf_counter() > deadline:
            raise _BodyTimeout
    return _decode(bytes(kept), response.encoding)


def _chunks(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives: ``read1`` returns whatever is there instead of a full chunk."""
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:  # urllib3 1.x
        yield from response.iter_content(_CHUNK)
        return
    while chunk := read1(_CHUNK, decode_content=True):
        yield chunk


def _decode(data: bytes, encoding: str | None) -> str:
    try:
        return data.decode(encoding or "utf-8", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def describe_error(exc: BaseException, timeout: float) -> str:
    """A short human reason for a failed request ("connection refused")."""
    chain = list(_causes(exc))
    reasons = (
        _tls_reason,
        _connection_reason,
        _timeout_reason,
        _os_reason,
        _decoding_reason,
        _url_reason,
    )
    for describe in reasons:
        reason = describe(chain, timeout)
        if reason is not None:
            return reason
    return _last_words(chain)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, urllib3 reasons, exception args."""
    pending = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        nested = [current.__cause__, current.__context__, reason, *current.args]
        pending.extend(item for item in nested if isinstance(item, BaseException))


def _tls_reason(chain: list[BaseException], timeout: float) -> str | None:
    for exc in chain:
        if isinstance(exc, ssl.SSLCertVerificationError):
            detail = exc.verify_message or exc.reason or "unknown reason"
            return f"TLS certificate verification failed: {detail}"
    for exc in chain:
        if isinstance(exc, urllib3.exceptions.SSLError | ssl.SSLError):
            return f"TLS error: {_one_line(exc)}"
    return None


def _timeout_reason(chain: list[BaseException], timeout: float) -> str | None:
    connect_timeouts = (requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)
    if any(isinstance(exc, connect_timeouts) for exc in chain):
        return f"connect timed out after {timeout}s"
    timeouts = (requests.Timeout, urllib3.exceptions.TimeoutError, socket.timeout)
    if any(isinstance(exc, timeouts) for exc in chain):
        return f"timed out after {timeout}s"
    return None


def _connection_reason(chain: list[BaseException], timeout: float) -> str | None:
    reasons: list[tuple[type[BaseException], str]] = [
        (http.client.RemoteDisconnected, "server closed the connection without a response"),
        (ConnectionRefusedError, "connection refused"),
        (ConnectionResetError, "connection reset by peer"),
        (ConnectionAbortedError, "connection aborted"),
        (BrokenPipeError, "connection closed by peer (broken pipe)"),
        (http.client.IncompleteRead, "connection closed before the whole body arrived"),
        (socket.gaierror, "cannot resolve host"),
        (urllib3.exceptions.NameResolutionError, "cannot resolve host"),
    ]
    for exc in chain:
        if isinstance(exc, http.client.BadStatusLine) and not isinstance(exc, http.client.RemoteDisconnected):
            return f"not an HTTP response (status line {_one_line(exc)[:60]!r})"
        for kind, reason in reasons:
            if isinstance(exc, kind):
                return _with_host(reason, chain) if reason == "cannot resolve host" else reason
    return None


def _os_reason(chain: list[BaseException], timeout: float) -> str | None:
    for exc in chain:
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror[:1].lower() + exc.strerror[1:]
    return None


def _decoding_reason(chain: list[BaseException], timeout: float) -> str | None:
    undecodable = (urllib3.exceptions.DecodeError, requests.exceptions.ContentDecodingError)
    for exc in chain:
        if isinstance(exc, undecodable):
            first = exc.args[0] if exc.args else None
            detail = first if isinstance(first, str) else _one_line(exc)
            return f"cannot decode the body: {detail}"
    return None


def _url_reason(chain: list[BaseException], timeout: float) -> str | None:
    invalid = (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        urllib3.exceptions.LocationValueError,
    )
    for exc in chain:
        if isinstance(exc, invalid):
            return f"invalid URL: {_one_line(exc)}"
    return None


def _with_host(reason: str, chain: list[BaseException]) -> str:
    for exc in chain:
        host = getattr(getattr(exc, "conn", None), "host", None)
        if isinstance(host, str):
            return f"{reason} {host!r}"
    return reason


def _last_words(chain: list[BaseException]) -> str:
    """The innermost message, for failures without a friendlier name."""
    for exc in reversed(chain):
        text = _one_line(exc)
        if text:
            return text
    return type(chain[0]).__name__


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."
