"""AWS API calls for the load balancer and CDN actions: boto3 clients, bounded and recorded.

Credentials come only from the usual AWS chain (environment, AWS_PROFILE, an instance or task
role); the config file never holds them. Every call and its answer is kept (``AwsCalls.taken``)
for the journal: parameters and answers carry ids, ARNs and states, never a credential or a
signature (the request's headers are not recorded at all). Throttling and 5xx answers are
retried by botocore's standard retry mode, at most ``max_attempts`` times per call; each
attempt's answer is recorded too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .config import AwsSection
from .errors import ConfigError, HarnessError
from .targets import missing_client_message

# Per HTTP attempt: a hung endpoint costs at most this much (also bounded by the section's timeout).
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
# What botocore's standard retry mode counts as throttling (botocore/retries/standard.py).
THROTTLING_CODES = frozenset(
    ("Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException", "TooManyRequestsException",
     "ProvisionedThroughputExceededException", "TransactionInProgressException", "RequestLimitExceeded",
     "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
     "EC2ThrottledException")
)  # fmt: skip
CHAIN = "the usual AWS chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance or task role"


def import_boto3(kind: str, where: str) -> Any:
    """boto3, or a ConfigError saying which extra installs it."""
    try:
        import boto3
        import botocore.config  # noqa: F401
    except ImportError as exc:
        raise ConfigError(missing_client_message(kind, exc, where)) from None
    return boto3


def _throttled(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(error.get("Code")) in THROTTLING_CODES or status == 429


def _plain(value: Any) -> Any:
    """An answer as plain builtins (datetimes as text), ResponseMetadata cut to what identifies it."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class AwsThrottled(HarnessError):
    """A call still throttled after every attempt: a wait that polls may try again later."""


class AwsCalls:
    """One boto3 client for one service of one section; every call recorded in ``taken``."""

    def __init__(self, service: str, section: AwsSection, where: str) -> None:
        boto3 = import_boto3(section.kind, where)
        from botocore.config import Config

        self.service = service
        self.where = where
        self.taken: list[dict[str, Any]] = []
        self._attempts: list[dict[str, Any]] = []
        config = Config(
            connect_timeout=min(CONNECT_TIMEOUT, section.timeout),
            read_timeout=min(READ_TIMEOUT, section.timeout),
            retries={"mode": "standard", "total_max_attempts": section.max_attempts},
            user_agent_extra="pytest-rollback-harness",
        )
        session = boto3.session.Session()  # its own: the default session is shared process-wide
        self.client = session.client(
            service, region_name=section.region, endpoint_url=section.endpoint_url, config=config
        )
        self.client.meta.events.register("needs-retry.*", self._attempt)

    def _attempt(self, response: Any = None, attempts: int = 0, caught_exception: Any = None, **_: Any) -> None:
        """Each HTTP attempt's answer (a throttled one included): status and error code only."""
        seen: dict[str, Any] = {"attempt": attempts}
        if caught_exception is not None:
            seen["error"] = f"{type(caught_exception).__name__}: {caught_exception}"
        elif response is not None:
            http, parsed = response
            seen["http_status"] = http.status_code
            error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
            if error.get("Code"):
                seen["error"] = f"{error.get('Code')}: {error.get('Message', '')}"
        self._attempts.append(seen)

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """``client.<operation>(**params)``; a failure raises HarnessError naming call and answer."""
        self._attempts = []
        started = time.monotonic()
        record: dict[str, Any] = {"call": f"{self.service}.{operation}", "params": _plain(params)}
        try:
            answer = getattr(self.client, operation)(**params)
        except Exception as exc:
            record.update(error=self._why(exc), attempts=self._attempts, seconds=round(time.monotonic() - started, 3))
            self.taken.append(record)
            error = AwsThrottled if _throttled(exc) else HarnessError
            raise error(f"{self.where}: {record['call']} failed: {record['error']}") from None
        meta = answer.get("ResponseMetadata", {})
        record.update(
            answer=_plain(answer),
            request_id=meta.get("RequestId"),
            http_status=meta.get("HTTPStatusCode"),
            retries=meta.get("RetryAttempts", 0),
            seconds=round(time.monotonic() - started, 3),
        )
        if record["retries"]:
            record["attempts"] = self._attempts
        self.taken.append(record)
        return dict(answer)

    def _why(self, exc: Exception) -> str:
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return f"no usable AWS credentials ({exc}); they come only from {CHAIN}"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            tries = len(self._attempts)
            after = f" (after {tries} attempts)" if tries > 1 else ""
            return f"{error.get('Code', 'error')}: {error.get('Message', '')}{after}"
        return f"{type(exc).__name__}: {exc}"

    def drain(self) -> list[dict[str, Any]]:
        """The calls recorded since the last drain (for one journal step's detail)."""
        taken, self.taken = self.taken, []
        return taken


# A wait with nothing new to say still says so this often (a drain can take minutes).
HEARTBEAT = 30.0


def poll(
    read: Callable[[], str | None],
    settings: AwsSection,
    say: Callable[[str, float], None],
    failed: Callable[[str], str],
) -> None:
    """Call ``read`` every ``poll_interval`` until it returns None (done), for at most ``timeout``.

    ``read`` returns what it still waits for, in words; ``say(words, elapsed)`` shows progress when
    they change (and every HEARTBEAT seconds); at the deadline HarnessError(``failed(words)``).
    A read still throttled after all its attempts counts as "not yet", not as a failure.
    """
    started = time.monotonic()
    last, said = "", started
    while True:
        try:
            seen = read()
        except AwsThrottled as exc:
            seen = f"throttled ({exc})"
        if seen is None:
            return
        now = time.monotonic()
        if now - started + settings.poll_interval > settings.timeout:
            raise HarnessError(failed(seen))
        if seen != last or now - said >= HEARTBEAT:
            say(seen, now - started)
            last, said = seen, now
        time.sleep(settings.poll_interval)
