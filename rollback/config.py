"""Load and validate the harness configuration.

Sources, first found wins: ``--rollback-config PATH``; ``rollback.toml`` in the rootdir;
``[tool.rollback]`` in the rootdir's pyproject.toml. ``${VAR}`` in any string is replaced from
the environment; values that land where secrets live are remembered as secrets so that the
evidence writers can redact them (see ``_substitute``). Every error names the file, the key,
the bad value and what is accepted.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .durations import parse_duration, parse_pause, parse_timeout
from .errors import ConfigError
from .sampling import answers_needed, samples_to_pass
from .targets import settings_model_for

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_FILE_NAME = "rollback.toml"
# Lists and tables inside each other: a real config needs a handful; deeper is hostile input.
MAX_NESTING = 32
# Names shown to a person (terminal, report, lock names): a few words, not a document.
MAX_NAME_LENGTH = 200
# What a config error shows of a long value.
_SHOWN_VALUE_LENGTH = 200
# Bidirectional overrides and isolates reorder what a terminal shows ("Trojan Source").
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _duration(value: object) -> float:
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration)]
# Timeouts and latency bounds: above 0 and at most 24 h ("0" or "1e308" is a config error).
Timeout = Annotated[float, BeforeValidator(parse_timeout)]
# Waits between attempts: 0 or more, at most 1 h.
Pause = Annotated[float, BeforeValidator(lambda value: parse_pause(value, most=3600.0))]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def _status_list(value: object) -> object:
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


StatusList = Annotated[list[Annotated[int, Field(ge=100, le=599)]], BeforeValidator(_status_list)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def unprintable(text: str) -> str | None:
    """Why ``text`` cannot be shown to a person as it is (a control character), or None."""
    for position, char in enumerate(text, 1):
        if char in _BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return f"control character U+{ord(char):04X} at character {position}"
    return None


def _shown_name(value: str) -> str:
    """A name as a person may see it: printable characters only, at most MAX_NAME_LENGTH of them."""
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{len(value)} characters long; a name may have at most {MAX_NAME_LENGTH}")
    why = unprintable(value)
    if why is not None:
        raise ValueError(f"{why}; a name may hold printable characters only (it is shown on terminals and reports)")
    return value


ShownName = Annotated[str, Field(min_length=1), AfterValidator(_shown_name)]


def _url_path(value: str) -> str:
    if value.startswith(("http://", "https://", "/")):
        return value
    raise ValueError("expected a path starting with '/' or a full http(s):// URL")


UrlPath = Annotated[str, AfterValidator(_url_path)]


class VersionSource(Section):
    path: UrlPath = "/version"
    json_field: str | None = None
    # At least this many answers; verify takes more when [verify] detect_share needs them
    # (59 by default), and any answer from another version fails it (docs/configuration.md, [verify]).
    consecutive: int = Field(default=3, ge=1, le=100)
    # The most a worker waits, at random, before each request: checks never fall into step.
    interval: Pause = 0.005


class VerifyConfig(Section):
    """``[verify]``: how many answers the version and health checks gather (docs/configuration.md, [verify]).

    Enough that a share ``detect_share`` of wrong answers (a stuck replica in twenty) shows up at
    least once with probability ``confidence``: n = ceil(ln(1 - confidence) / ln(1 - detect_share)).
    """

    detect_share: float = Field(default=0.05, ge=0.001, le=0.5)
    confidence: float = Field(default=0.95, ge=0.5, le=0.9999)
    # Requests in flight at once per check, each on a new connection.
    concurrency: int = Field(default=2, ge=1, le=64)
    # Latency samples in flight at once across a phase's latency checks: checks of different paths
    # run side by side while their ``concurrency`` fits. Unset: one latency check at a time, because
    # side by side skewed each other's p95 on a 2-core machine (bench/bench_endpoints.py, bench/README.md).
    latency_connections: int | None = Field(default=None, ge=1, le=1024)

    def answers(self, at_least: int = 1) -> int:
        return max(at_least, answers_needed(self.detect_share, self.confidence))


_BASE_URL_ACCEPTED = "expected an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080"


class ServiceConfig(Section):
    name: ShownName
    base_url: str
    timeout: Timeout = 5.0
    verify_tls: bool = True
    # After the other verify checks, wait this long and probe version and health once more.
    settle: Pause = 1.0
    version: VersionSource = VersionSource()

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError(_BASE_URL_ACCEPTED)
        try:
            parts = urlsplit(value)
            port = parts.port  # raises for a port that is not a number or above 65535
        except ValueError as exc:
            raise ValueError(f"{_BASE_URL_ACCEPTED} ({exc})") from None
        if not parts.hostname:
            raise ValueError(f"{_BASE_URL_ACCEPTED} (no host)")
        if port == 0:
            raise ValueError(f"{_BASE_URL_ACCEPTED} (port 0)")
        if any(char.isspace() for char in value):
            raise ValueError(f"{_BASE_URL_ACCEPTED} (it contains whitespace)")
        return value.rstrip("/")


class HealthConfig(Section):
    path: UrlPath = "/health"
    expect_status: StatusList = [200]
    # As in [service.version]: at least this many answers, every one of them healthy.
    consecutive: int = Field(default=3, ge=1, le=100)
    interval: Pause = 0.005


class EndpointConfig(Section):
    path: UrlPath
    method: HttpMethod = "GET"
    expect_status: StatusList = [200]


class LatencyConfig(Section):
    path: UrlPath = "/"
    method: HttpMethod = "GET"
    samples: int = Field(default=20, ge=1, le=100_000)
    concurrency: int = Field(default=4, ge=1, le=256)
    min_samples: int | None = Field(default=None, ge=1)
    # How sure a percentile verdict must be (exact binomial test; docs/configuration.md).
    confidence: float = Field(default=0.95, ge=0.5, le=0.9999)
    p50: Timeout | None = None
    p95: Timeout | None = None
    p99: Timeout | None = None
    # More samples, in rounds, while a percentile bound cannot be decided; default: enough
    # for every bound set to be able to pass, and at least 4 x samples.
    max_samples: int | None = Field(default=None, ge=1, le=1_000_000)
    max_error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    expect_status: StatusList = [200]
    # Verify's samples must be no slower than baseline's x (1 + tolerance) (Mann-Whitney).
    compare_to_baseline: bool = False
    baseline_tolerance: float = Field(default=0.1, ge=0.0, le=10.0)

    @field_validator("min_samples")
    @classmethod
    def _min_samples(cls, value: int | None, info: ValidationInfo) -> int | None:
        samples = info.data.get("samples")
        if value is not None and samples is not None and value > samples:
            raise ValueError(f"more than samples ({samples}); min_samples may be at most samples")
        return value

    @field_validator("max_samples")
    @classmethod
    def _max_samples(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return value
        samples = info.data.get("samples")
        if samples is not None and value < samples:
            raise ValueError(f"less than samples ({samples}); max_samples must be at least samples")
        confidence = info.data.get("confidence", 0.95)
        bounds = [q for q in (50, 95, 99) if info.data.get(f"p{q}") is not None]
        needed = max((samples_to_pass(q, confidence) for q in bounds), default=1)
        if needed > value:
            raise ValueError(
                f"too few for the percentile bounds to ever pass at confidence {confidence}: they need at "
                f"least {needed} samples; raise max_samples or lower the confidence"
            )
        return value

    def bounds(self) -> dict[int, float]:
        """The percentile bounds set: {95: 0.2} for ``p95 = "200ms"``."""
        limits = {50: self.p50, 95: self.p95, 99: self.p99}
        return {q: limit for q, limit in limits.items() if limit is not None}

    def samples_to_pass(self) -> int:
        """The fewest samples with which every bound set could pass (none over the bound)."""
        return max((samples_to_pass(q, self.confidence) for q in self.bounds()), default=1)

    @property
    def sample_budget(self) -> int:
        """The most samples one check takes, rounds included."""
        if self.max_samples is not None:
            return self.max_samples
        return min(1_000_000, max(4 * self.samples, self.samples_to_pass()))

    @property
    def required_samples(self) -> int:
        """Successful samples needed to judge; half the samples unless set."""
        return min(self.samples, self.min_samples or max(1, self.samples // 2))


class MigrationsConfig(Section):
    """``[database.migrations]``: where each release's migrations are (docs/database.md)."""

    tool: Literal["alembic", "rails", "django"] = "alembic"
    # In each release folder (symlink targets): releases/<version>/<release_path>.
    release_path: str | None = None
    # One folder holding every revision (relative to the config file), when releases carry none.
    script_location: str | None = None
    # A git repository of migrations, tagged with the versions: <git_path> at tag <version>.
    git_repo: str | None = None
    git_path: str = "migrations"
    # version -> revision each release expects; wins over what the scripts say.
    revisions: dict[str, str] = {}
    version_table: str = Field(default="alembic_version", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class DatabaseConfig(Section):
    url: str = Field(min_length=1)
    timeout: Timeout = 5.0
    # Kept out of the URL: any character may appear in it (docs/database.md).
    password: str | None = None
    # Downgrade the schema with the app (also --rollback-db); else the app goes back alone.
    rollback: bool = False
    # The target's app runs on the live (newer) schema: an app-only rollback is safe.
    backward_compatible: bool = False
    critical_tables: list[Annotated[str, Field(min_length=1)]] = []
    # Where pre-rollback backups go, relative to the config file.
    backup_dir: str = "backups"
    migrations: MigrationsConfig | None = None


class SigningConfig(Section):
    # The Ed25519 private key that signs each run's manifest (rollback/signing.py reads and checks it).
    key_file: Annotated[str, Field(min_length=1)] | None = None  # relative to the config file's folder
    key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # a variable's name

    @model_validator(mode="after")
    def _one_source(self) -> SigningConfig:
        if (self.key_file is None) == (self.key_env is None):
            raise ValueError(
                'give exactly one of key_file = "PATH" (a key file) or key_env = "NAME" (an environment variable)'
            )
        return self


class ReportsConfig(Section):
    # Newest run folders kept per service and target (rollback/retention.py); None keeps all.
    keep: int | None = Field(default=None, ge=1)
    # [reports.signing]: sign each run's manifest (manifest.sha256.sig); None: not signed.
    signing: SigningConfig | None = None


def _repo_path(value: str) -> str:
    """A path inside the repository: relative, no '..', no leading '-'."""
    parts = value.replace("\\", "/").split("/")
    if not value.strip() or value.startswith(("/", "-")) or ".." in parts or "\x00" in value:
        raise ValueError("expected a path relative to the repository, without '..', e.g. 'config/' or 'app.env'")
    return value


def _hooks(value: object) -> object:
    """Restart hooks: a list of argument lists; one flat list of strings is one hook; a string is refused."""
    if isinstance(value, str):
        raise ValueError(
            "a shell string is not accepted: write each hook as an argument list, "
            'e.g. [["systemctl", "restart", "app"]]'
        )
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return [value]
    return value


def _hook_programs(value: list[list[str]]) -> list[list[str]]:
    for hook in value:
        if not hook or not hook[0].strip():
            raise ValueError(
                'each hook is an argument list whose first item names a program, e.g. ["nginx", "-s", "reload"]'
            )
    return value


def _tag_template(value: str) -> str:
    if value.count("{version}") != 1 or value.replace("{version}", "").count("{") or " " in value:
        raise ValueError("expected a tag name holding '{version}' once, e.g. '{version}' or 'config-{version}'")
    return value


class ConfigRollbackConfig(Section):
    """``[config_rollback]``: files restored from a git tag of a deployment repository (docs/config-rollback.md)."""

    # The top of a git work tree (a repository or a worktree); relative to the config file's folder.
    repo: Path
    paths: list[Annotated[str, AfterValidator(_repo_path)]] = Field(min_length=1)
    # An environment file in the repository, restored from the tag the same way.
    env_file: Annotated[str, AfterValidator(_repo_path)] | None = None
    # The tag of a version: "{version}" or e.g. "config-{version}".
    tag: Annotated[str, AfterValidator(_tag_template)] = "{version}"
    restart: Annotated[list[list[str]], BeforeValidator(_hooks), AfterValidator(_hook_programs)] = []
    restart_timeout: Timeout = 60.0
    git_timeout: Timeout = 30.0


LOCK_BACKEND_NAMES = ("file", "kubernetes", "postgres")


class LockConfig(Section):
    """``[lock]`` (and ``[targets.NAME.lock]`` over it): which backend keeps runs apart (docs/locks.md)."""

    backend: Literal["file", "postgres", "kubernetes"] = "file"
    # postgres: the database holding the advisory lock; default: [database] url.
    url: str | None = Field(default=None, min_length=1)
    # postgres: the total deadline for connecting; kubernetes: for each API request.
    timeout: Timeout = 10.0
    # kubernetes: where the Lease lives; default: the kubernetes target's own namespace / kubeconfig.
    namespace: str | None = Field(default=None, min_length=1)
    kubeconfig: Path | None = None
    context: str | None = None
    # kubernetes: how long a Lease nobody renews stays held (renewed every third of it).
    lease_duration: Timeout = 30.0


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_regex)]
LOG_PATTERNS = {
    "error": r"\bERROR\b",
    "warn": r"\bWARN(?:ING)?\b",
    "exception": r"\bEXCEPTION\b|Exception\b|Traceback \(most recent call last\)",
}


class LogsConfig(Section):
    """``[[logs]]``: ERROR / WARN / EXCEPTION counts in log files or a command's output (checks/logs.py)."""

    name: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    files: list[str] = []
    command: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    patterns: dict[str, Regex] = dict(LOG_PATTERNS)
    max: dict[str, Annotated[int, Field(ge=0)]] = {"error": 0, "exception": 0}
    # Each phase counts at least this long: baseline from the run's start, verify from the rollback's end.
    window: Pause = 5.0
    max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024**3)
    timeout: Timeout = 30.0

    @field_validator("max")
    @classmethod
    def _max_names_patterns(cls, value: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        patterns = info.data.get("patterns")
        unknown = sorted(set(value) - set(patterns or ()))
        if patterns is not None and unknown:
            raise ValueError(f"{', '.join(unknown)}: not a pattern name; accepted: {', '.join(sorted(patterns))}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> LogsConfig:
        if bool(self.files) == (self.command is not None):
            raise ValueError("give either files = [...] or command = [...], not both and not neither")
        return self

    @property
    def key(self) -> str:
        if self.name:
            return self.name
        if self.files:
            return Path(self.files[0]).name
        assert self.command is not None
        return Path(self.command[0]).name


_SELECTOR = re.compile(
    r"""^\s*(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(?P<labels>.*)\})?\s*$""",
    re.DOTALL,
)
_MATCHER = re.compile(
    r"""\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*"""
)


def parse_selector(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    """``http_requests_total{code=~"5.."}`` -> ("http_requests_total", [("code", "=~", "5..")])."""
    match = _SELECTOR.match(text)
    if match is None:
        raise ValueError('expected a series selector like name or name{label="value", other=~"re.*"}')
    matchers = []
    labels = (match.group("labels") or "").strip()
    position = 0
    while position < len(labels):
        found = _MATCHER.match(labels, position)
        if found is None:
            raise ValueError(f'cannot read the label matchers at {labels[position:]!r} (expected label="value")')
        value = found.group("value").encode().decode("unicode_escape")
        if found.group("op") in ("=~", "!~"):
            _regex(value)
        matchers.append((found.group("label"), found.group("op"), value))
        position = found.end()
        if position < len(labels):
            if labels[position] != ",":
                raise ValueError(f"expected ',' between label matchers at {labels[position:]!r}")
            position += 1
    return match.group("name"), matchers


def _selector(value: str) -> str:
    parse_selector(value)
    return value


class SeriesThreshold(Section):
    select: Annotated[str, AfterValidator(_selector)]
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> SeriesThreshold:
        if self.max is None and self.min is None:
            raise ValueError("give max, min or both")
        return self


class MetricsConfig(Section):
    """``[[metrics]]``: thresholds on series of a Prometheus text-format endpoint (checks/metrics.py)."""

    path: UrlPath = "/metrics"
    name: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9._/-]+$")
    timeout: Timeout = 5.0
    series: list[SeriesThreshold] = Field(min_length=1)

    @property
    def key(self) -> str:
        """``name``, else the path and query (of a full URL too: host and port say little in a test id)."""
        if self.name:
            return self.name
        parts = urlsplit(self.path)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _http_url(value: str) -> str:
    if not value.lower().startswith(("http://", "https://")) or not urlsplit(value).hostname:
        raise ValueError("expected an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080/")
    return value


class MaintenanceConfig(Section):
    """[traffic.maintenance]: nginx answers 503 and a page while the platform step runs (docs/traffic.md)."""

    nginx_config: Path  # the main config the running nginx was started with (-c)
    include: Path  # the file a server block includes; the harness writes it (on: 503 + page, off: empty)
    page: Path  # the maintenance page (HTML) nginx serves with the 503
    nginx: str = "nginx"
    # A URL through nginx that must answer 503 while on, and something else once off.
    check_url: Annotated[str, AfterValidator(_http_url)] | None = None
    timeout: Timeout = 10.0


class DrainConfig(Section):
    """[traffic.drain]: HAProxy servers of the version rolled back from, drained and restored in steps."""

    socket: Path  # HAProxy's stats socket (level admin)
    backend: str = Field(min_length=1)
    # The servers to drain; empty: every server of the backend that answers the version rolled back from.
    servers: list[str] = []
    version_path: UrlPath = "/version"
    drain_steps: list[Annotated[int, Field(ge=0, le=99)]] = Field(default=[50, 0], min_length=1)
    restore_steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(default=[50, 100], min_length=1)
    pause: Pause = 1.0
    timeout: Timeout = 5.0

    @field_validator("drain_steps")
    @classmethod
    def _drain_down(cls, value: list[int]) -> list[int]:
        if value != sorted(value, reverse=True) or value[-1] != 0 or len(set(value)) != len(value):
            raise ValueError("expected falling percentages of the configured weight ending at 0, e.g. [50, 0]")
        return value

    @field_validator("restore_steps")
    @classmethod
    def _restore_up(cls, value: list[int]) -> list[int]:
        if value != sorted(value) or value[-1] != 100 or len(set(value)) != len(value):
            raise ValueError("expected rising percentages of the configured weight ending at 100, e.g. [50, 100]")
        return value


class TrafficConfig(Section):
    maintenance: MaintenanceConfig | None = None
    drain: DrainConfig | None = None


class FlagConfig(Section):
    """[[flags]]: a switch file (a feature flag, a circuit breaker) set to ``off`` during the rollback
    and put back as it was afterwards (docs/traffic.md)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    file: Path
    off: str = "off"


class NotifyConfig(Section):
    """A webhook (``[[notify]]``) told about the run: start, each gate, the rollback, the end."""

    url: str
    name: str | None = None
    format: Literal["slack", "json"] = "json"
    headers: dict[str, str] = {}
    events: list[Literal["start", "gate", "rollback", "end"]] = ["start", "gate", "rollback", "end"]
    # The whole POST, connect to answer; a slower receiver is cut off and recorded as failed.
    timeout: Timeout = 5.0
    status_channel: str | None = None
    eta: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        return value


class WatchConfig(Section):
    # Time between two verify rounds of --rollback-watch (--rollback-watch-interval wins).
    interval: Timeout = 30.0


class HistoryConfig(Section):
    # Where --rollback-to last-verified looks for earlier runs' evidence (default: the report folder).
    reports_dir: str | None = None


class IncidentConfig(Section):
    """``[incident]``: the team's own templates of incident.md and status.md (docs/incident.md)."""

    # A folder, relative to the config file, holding incident.md.j2 and/or status.md.j2.
    templates: Annotated[str, Field(min_length=1)] | None = None


# Keys that would put AWS credentials into the config file: refused (docs/aws.md).
AWS_CREDENTIAL_KEYS = frozenset(
    f"{prefix}{key}"
    for prefix in ("", "aws_")
    for key in ("access_key", "access_key_id", "secret_key", "secret_access_key", "session_token", "credentials")
)
_AWS_TARGET = re.compile(r"^[A-Za-z0-9_.-]+(:[0-9]{1,5})?$")  # i-0abc, i-0abc:8080, 10.0.0.5:8080


def _matching(pattern: str, accepted: str) -> Any:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"expected {accepted}")
        return value

    return AfterValidator(check)


AwsRegion = Annotated[str, _matching(r"[a-z]{2}(-[a-z]+)+-[0-9]+", "an AWS region such as eu-west-1")]


def _aws_targets(value: Any) -> Any:
    """[[load_balancer]] targets: a list, or a table of lists, of ``ID`` or ``ID:PORT``."""
    if value is None:
        return value  # mode = "weights" (LoadBalancerConfig._per_mode)
    accepted = 'targets such as ["i-0abc", "10.0.0.5:8080"], or a table "v1.2.9" = ["i-0abc"]'
    lists = list(value.values()) if isinstance(value, dict) else [value]
    if not value or not all(isinstance(listed, list) and listed for listed in lists):
        raise ValueError(f"expected {accepted}")
    bad = [t for listed in lists for t in listed if not isinstance(t, str) or not _AWS_TARGET.match(t)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a target: expected an instance id or IP address, with :PORT or not")
    return value


class AwsSection(Section):
    """What every AWS section shares: where the API is, and how long anything may take."""

    kind: str
    region: AwsRegion
    # Only for an emulator (moto, LocalStack): the API's URL; AWS itself needs none.
    endpoint_url: Annotated[str, AfterValidator(_http_url)] | None = None
    name: ShownName | None = None
    timeout: Timeout = 600.0  # each bounded wait (draining, healthy, invalidation completed)
    poll_interval: Pause = 5.0
    max_attempts: int = Field(default=5, ge=1, le=20)  # per call, throttling and 5xx retried (botocore standard)
    for_target: str | None = None  # only around this [targets.NAME]; None: around every target
    credentials_in_file: list[str] = Field(default=[], exclude=True)  # set by _no_credentials only

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, data: Any) -> Any:
        # The values are never shown: only the names of the keys go on into the error.
        if isinstance(data, dict) and AWS_CREDENTIAL_KEYS & set(data):
            found = sorted(AWS_CREDENTIAL_KEYS & set(data))
            return {k: v for k, v in data.items() if k not in AWS_CREDENTIAL_KEYS} | {"credentials_in_file": found}
        return data

    @field_validator("credentials_in_file")
    @classmethod
    def _refuse(cls, value: list[str]) -> list[str]:
        if value:
            raise ValueError(
                f"AWS credentials ({', '.join(value)}) are never read from the config file: remove them and use "
                "the usual AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance or task role)"
            )
        return value


TargetGroupArn = Annotated[
    str,
    _matching(
        r"arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]+:targetgroup/[A-Za-z0-9-]+/[0-9a-f]+",
        "a target group ARN: arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID",
    ),
]
_LB_MODES = {"targets": ("target_group_arn", "targets"), "weights": ("listener_rule_arn", "target_groups")}


class LoadBalancerConfig(AwsSection):
    """[[load_balancer]]: an ALB/NLB target group; the bad release's targets deregistered and drained
    before the platform step, the target release's registered and healthy after it; or (mode =
    "weights") a listener rule's forward weights moved to the target release's group (docs/aws.md)."""

    kind: Literal["aws-target-group"]
    mode: Literal["targets", "weights"] = "targets"
    target_group_arn: TargetGroupArn | None = Field(default=None, validate_default=True)
    # A list: the targets the platform step changes in place (deregistered, then registered again).
    # A table version -> list: the targets that serve each release.
    targets: Annotated[list[str] | dict[str, list[str]] | None, BeforeValidator(_aws_targets)] = Field(
        default=None, validate_default=True
    )
    listener_rule_arn: (
        Annotated[
            str,
            _matching(
                r"arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]+:listener-rule/(app|net)/[^/]+/[^/]+/[^/]+/[^/]+",
                "a listener rule ARN: arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener-rule/app/LB/ID/ID/ID",
            ),
        ]
        | None
    ) = Field(default=None, validate_default=True)
    # Version -> the target group that serves it, for mode = "weights".
    target_groups: dict[str, TargetGroupArn] | None = Field(default=None, validate_default=True)

    @field_validator("target_group_arn", "targets", "listener_rule_arn", "target_groups")
    @classmethod
    def _per_mode(cls, value: Any, info: ValidationInfo) -> Any:
        mode = info.data.get("mode")
        if mode not in _LB_MODES:
            return value  # the mode itself is wrong: that is the error to show
        needed = _LB_MODES[mode]
        if value is None and info.field_name in needed:
            raise PydanticCustomError("missing", "required with mode = {mode}", {"mode": mode})
        if value is not None and info.field_name not in needed:
            other = next(m for m, keys in _LB_MODES.items() if info.field_name in keys)
            raise ValueError(f"only with mode = {other!r}; mode = {mode!r} takes {', '.join(needed)}")
        if info.field_name == "target_groups" and value == {}:
            raise ValueError('expected a table "VERSION" = "TARGET GROUP ARN", e.g. "v1.2.9" = "arn:aws:..."')
        return value


class CdnConfig(AwsSection):
    """[[cdn]]: a CloudFront distribution whose cache is invalidated once verify passed (docs/aws.md)."""

    kind: Literal["cloudfront"]
    region: AwsRegion = "us-east-1"  # CloudFront's API lives there
    distribution_id: Annotated[str, _matching(r"[A-Z0-9]{1,32}", "a distribution id such as E2QWRUHAPOMQZL")]
    paths: list[Annotated[str, _matching(r"/\S*", "a path starting with '/', e.g. '/*' or '/index.html'")]] = Field(
        default=["/*"], min_length=1, max_length=3000
    )
    timeout: Timeout = 900.0
    poll_interval: Pause = 10.0


class HarnessSettings(Section):
    service: ServiceConfig
    health: HealthConfig | None = None
    verify: VerifyConfig = VerifyConfig()
    endpoints: list[EndpointConfig] = []
    latency: list[LatencyConfig] = []
    database: DatabaseConfig | None = None
    reports: ReportsConfig = ReportsConfig()
    config_rollback: ConfigRollbackConfig | None = None
    lock: LockConfig = LockConfig()
    logs: list[LogsConfig] = []
    metrics: list[MetricsConfig] = []
    traffic: TrafficConfig | None = None
    flags: list[FlagConfig] = []
    load_balancer: list[LoadBalancerConfig] = []
    cdn: list[CdnConfig] = []
    notify: list[NotifyConfig] = []
    watch: WatchConfig = WatchConfig()
    history: HistoryConfig = HistoryConfig()
    incident: IncidentConfig = IncidentConfig()
    targets: dict[str, dict[str, Any]] = Field(min_length=1)

    @field_validator("endpoints", "latency")
    @classmethod
    def _each_path_once(cls, checks: list[EndpointConfig] | list[LatencyConfig]) -> Any:
        # The path names the check (verify-endpoint[/x]): two checks cannot share a name.
        paths = [check.path for check in checks]
        twice = sorted({path for path in paths if paths.count(path) > 1})
        if twice:
            raise ValueError(f"path {', '.join(repr(p) for p in twice)} appears more than once; each may appear once")
        return checks


@dataclass(frozen=True)
class TargetSpec:
    """One configured target: its name, driver kind and the driver's validated settings."""

    name: str
    kind: str
    settings: BaseModel
    # [targets.NAME.lock] merged over [lock]; None: [lock] as it is.
    lock: LockConfig | None = None
    # ``[targets.NAME.checks]``: this target's checks go to their own service (a fleet run).
    checks: ServiceConfig | None = None


@dataclass(frozen=True)
class HarnessConfig:
    path: Path
    settings: HarnessSettings
    targets: dict[str, TargetSpec]
    secrets: frozenset[str] = field(default_factory=frozenset)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def target(self, name: str | None) -> TargetSpec:
        """The target named on the command line, or the only one configured."""
        known = ", ".join(sorted(self.targets))
        if name is None:
            if len(self.targets) == 1:
                return next(iter(self.targets.values()))
            raise ConfigError(
                f"{self.path}: several targets are configured ({known}); choose one with --rollback-target NAME"
            )
        if name not in self.targets:
            raise ConfigError(f"--rollback-target {name!r}: no such target in {self.path}; known: {known}")
        return self.targets[name]

    def database_url(self) -> str | None:
        """The database URL with a relative SQLite path resolved against the config's folder,
        and ``database.password`` put in (encoded by SQLAlchemy, so any character is safe)."""
        if self.settings.database is None:
            return None
        url = resolve_sqlite_path(self.settings.database.url, self.base_dir)
        if self.settings.database.password is None:
            return url
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            with_password = make_url(url).set(password=self.settings.database.password)
        except (ArgumentError, ValueError):
            return url  # the database check says it is not a URL
        return with_password.render_as_string(hide_password=False)


def resolve_sqlite_path(url: str, base_dir: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        rest = url[len(prefix) :]
        if rest and not rest.startswith("file:"):
            return prefix + str((base_dir / rest).resolve())
    return url


def find_config_path(explicit: str | None, *search_dirs: Path) -> Path:
    """``explicit``, else the first ``rollback.toml`` or ``[tool.rollback]`` in ``search_dirs``.

    The plugin searches the invocation directory, then the rootdir: pytest moves its rootdir
    when an option's value is a path (``--report-dir /x``), the engineer's directory stays put.
    """
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"--rollback-config {explicit}: no such file")
        return path.resolve()
    searched = list(dict.fromkeys(search_dirs))
    for folder in searched:
        candidate = folder / CONFIG_FILE_NAME
        if candidate.is_file():
            return candidate.resolve()
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            tool = _read_toml(pyproject).get("tool")
            if isinstance(tool, dict) and "rollback" in tool:
                return pyproject.resolve()
    raise ConfigError(
        f"no rollback configuration found: pass --rollback-config PATH, or put {CONFIG_FILE_NAME} "
        f"or a [tool.rollback] table in pyproject.toml in {' or '.join(str(f) for f in searched)}"
    )


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> HarnessConfig:
    """Read, substitute and validate ``path``; raise ConfigError on any problem."""
    data: Any = _read_toml(path)
    prefix = ""
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        data = tool.get("rollback", {}) if isinstance(tool, dict) else None
        prefix = "tool.rollback."
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: tool.rollback must be a table")
    _check_nesting(data, path, prefix)
    secrets: set[str] = set()
    substituted: set[str] = set()
    data = _substitute(data, os.environ if environ is None else environ, path, prefix, "", secrets, substituted)
    try:
        settings = HarnessSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, prefix, HarnessSettings, data, substituted)) from None
    if settings.database is not None:
        _check_database_url(settings.database.url, path, f"{prefix}database.url", substituted)
    _check_aws_client(settings, path, prefix)

    if settings.database is not None and settings.database.password:
        secrets.add(settings.database.password)  # a password written in the file is one too
    targets: dict[str, TargetSpec] = {}
    for name, raw in sorted(settings.targets.items()):
        try:
            _shown_name(name)
        except ValueError as exc:
            raise ConfigError(f"{path}: {prefix}targets.{_shown_text(name)}: not a usable target name: {exc}") from None
        key = f"{prefix}targets.{name}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: {key} must be a table with at least 'kind'")
        kind = raw.get("kind")
        model = settings_model_for(kind, f"{path}: {key}.kind")
        try:
            target_settings = model.model_validate(
                {k: v for k, v in raw.items() if k not in ("kind", "lock", "checks")}
            )
        except ValidationError as exc:
            raise ConfigError(_describe(exc, path, f"{key}.", model, raw, substituted)) from None
        lock = _target_lock(settings, raw.get("lock"), path, f"{key}.lock", substituted)
        check_lock(lock or settings.lock, str(kind), settings, path, f"{key}.lock" if lock else f"{prefix}lock")
        checks = _target_checks(raw.get("checks"), settings.service, path, f"{key}.checks", substituted)
        targets[name] = TargetSpec(name=name, kind=str(kind), settings=target_settings, lock=lock, checks=checks)
    return HarnessConfig(path=path, settings=settings, targets=targets, secrets=frozenset(secrets))


def _target_lock(settings: HarnessSettings, raw: Any, path: Path, key: str, substituted: set[str]) -> LockConfig | None:
    """``[targets.NAME.lock]`` over ``[lock]``: the keys it sets win."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {key} = {_shown_value(raw, substituted)}: expected a table")
    try:
        return LockConfig.model_validate({**settings.lock.model_dump(exclude_unset=True), **raw})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, f"{key}.", LockConfig, raw, substituted)) from None


def _check_aws_client(settings: HarnessSettings, path: Path, prefix: str) -> None:
    """[[load_balancer]] and [[cdn]] need boto3, the optional extra [aws]."""
    from importlib.util import find_spec

    from .targets import missing_client_message

    for key, sections in (("load_balancer", settings.load_balancer), ("cdn", settings.cdn)):
        if sections and find_spec("boto3") is None:
            missing = ModuleNotFoundError("No module named 'boto3'", name="boto3")
            raise ConfigError(missing_client_message(sections[0].kind, missing, f"{path}: {prefix}{key}[0].kind"))


def check_lock(lock: LockConfig, kind: str, settings: HarnessSettings, path: Path, key: str) -> None:
    """What a backend needs that its keys alone do not say: a database, a namespace, its client."""
    from importlib.util import find_spec

    client = {"postgres": ("psycopg", "postgres"), "kubernetes": ("kubernetes", "kubernetes")}.get(lock.backend)
    if client is not None and find_spec(client[0]) is None:
        raise ConfigError(
            f"{path}: {key}.backend = {lock.backend!r} needs the Python module {client[0]!r}, which is not "
            f"installed; install it with: pip install 'pytest-rollback-harness[{client[1]}]'"
        )
    if lock.backend == "postgres":
        url = lock.url or (settings.database.url if settings.database is not None else None)
        if url is None:
            raise ConfigError(
                f"{path}: {key}.backend = 'postgres' needs a database: set {key}.url "
                "(e.g. 'postgresql://user:${PGPASSWORD}@db.internal/app') or a [database] url"
            )
        if not url.split(":", 1)[0].startswith("postgres"):
            raise ConfigError(
                f"{path}: {key}.backend = 'postgres' needs a PostgreSQL URL (postgresql://...), "
                f"but the {'lock' if lock.url else '[database]'} url is {url.split(':', 1)[0]}://..."
            )
    if lock.backend == "kubernetes" and kind != "kubernetes" and lock.namespace is None:
        raise ConfigError(
            f"{path}: {key}.backend = 'kubernetes' on a {kind!r} target needs {key}.namespace "
            "(and kubeconfig / context unless the defaults reach the cluster); a kubernetes target lends its own"
        )


def _target_checks(
    raw: Any, service: ServiceConfig, path: Path, key: str, substituted: set[str]
) -> ServiceConfig | None:
    """``[targets.NAME.checks]``: the keys of ``[service]`` this target's checks use instead."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {key} = {_shown_value(raw, substituted)}: expected a table of [service] keys")
    merged = {**service.model_dump(), **raw}
    try:
        return ServiceConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, f"{key}.", ServiceConfig, merged, substituted)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except RecursionError:
        # tomllib recurses once per level of nesting; the depth check after it never sees the data.
        raise ConfigError(_too_deep_in_text(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid TOML: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None


# The last alternative: a "${" that does not start a well-formed ${NAME} (unclosed, or not a name).
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:secret)?\}|\$\$|(\$\{)")
# Words that make a variable, a key or a query parameter name a secret's (DB_PASSWORD, api_key):
# these anywhere in the name (sslpassword), the short ones only as a word of their own (MONKEY is not).
_SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "token", "credential", "apikey", "webhook", "cookie")
_SECRET_WORDS = frozenset(
    {"auth", "authorization", "header", "headers", "key", "pass", "private", "pw", "pwd", "signature"}
)
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
# ?token=, &key=: the names of query parameters, by the position right after their "=".
_QUERY_NAME = re.compile(r"[?&;]([^?&;=#]+)=")


def _secret_words(name: str) -> bool:
    """``DB_PASSWORD``, ``apiKey``, ``webhook_url`` name secrets; ``PORT`` or ``ENV`` do not."""
    if any(part in name.lower() for part in _SECRET_PARTS):
        return True
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return any(word in _SECRET_WORDS for word in re.split(r"[^a-z0-9]+", spaced.lower()))


def _user_info_span(text: str) -> tuple[int, int] | None:
    """Where the user info (``user:password``) of the first URL in ``text`` is, if it has any.

    The first ``scheme://`` (a letter, then letters, digits, ``+ . -``); the user info ends at the
    last "@" before the path. Found with ``str.find``, in time linear in ``text``: a regex searched
    from every position of a long run of letters is quadratic.
    """
    at = text.find("://")
    while at != -1:
        start = at
        while start > 0 and text[start - 1] in _SCHEME_CHARS:
            start -= 1
        while start < at and not text[start].isalpha():
            start += 1  # the scheme starts at its first letter
        if start < at:
            authority_start = at + 3
            end = len(text)
            for stop in "/?#":
                found = text.find(stop, authority_start, end)
                end = found if found != -1 else end
            last_at = text.rfind("@", authority_start, end)
            return (authority_start, last_at) if last_at != -1 else None
        at = text.find("://", at + 3)
    return None


def _query_names(text: str) -> dict[int, str]:
    """``{position: "token"}`` for each ``?token=`` or ``&token=`` in ``text``, by where its value starts."""
    return {match.end(): match.group(1) for match in _QUERY_NAME.finditer(text)}


def _substitute(
    value: Any,
    environ: Mapping[str, str],
    path: Path,
    prefix: str,
    key: str,
    secrets: set[str],
    substituted: set[str] | None = None,
) -> Any:
    """Replace ``${VAR}`` from the environment, and classify each value it puts in.

    A value is a secret (redacted from every artifact) when it lands where secrets live: a
    URL's user info, a query parameter or key named like a secret (password, token, key, auth,
    credential, header, webhook ...), a variable named so (``${DB_PASSWORD}``), or one marked
    ``${VAR:secret}``. Others (``name = "app-${ENV}"``, a ``${PORT}`` in a URL) stay readable.
    A value put into a URL's user info is percent-encoded there, so that ``@ / : %`` in a
    password cannot change the host. ``substituted`` collects every value put in, secret or not.
    """
    found = substituted if substituted is not None else set()
    if isinstance(value, dict):
        return {
            k: _substitute(v, environ, path, prefix, f"{key}.{k}" if key else k, secrets, found)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, environ, path, prefix, f"{key}[{i}]", secrets, found) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    if "$" not in value:
        return value
    user_info = _user_info_span(value)
    query_names = _query_names(value)
    secret_key = any(_secret_words(part) for part in re.split(r"[.\[\]]", key) if part)

    def replace(match: re.Match[str]) -> str:
        if match.group(3) is not None:
            raise ConfigError(_bad_variable(value, match.start(), path, f"{prefix}{key}", secret_key))
        name = match.group(1)
        if name is None:
            return "$"
        if name not in environ:
            raise ConfigError(
                f"{path}: {prefix}{key} uses ${{{name}}}, but the environment variable {name} "
                "is not set; set it, or write '$$' for a literal '$'"
            )
        text = environ[name]
        in_user_info = user_info is not None and user_info[0] <= match.start() < user_info[1]
        query_name = query_names.get(match.start())
        secret = (
            match.group(2) is not None
            or in_user_info
            or secret_key
            or _secret_words(name)
            or (query_name is not None and _secret_words(query_name))
        )
        if text:
            found.add(text)
            if secret:
                secrets.add(text)
        return quote(text, safe="") if in_user_info else text

    return _VARIABLE.sub(replace, value)


def _bad_variable(value: str, position: int, path: Path, key: str, secret: bool) -> str:
    """The error for a ``${`` that starts no well-formed ``${NAME}``."""
    closing = value.find("}", position)
    what = "has no closing '}'" if closing == -1 else "does not hold a variable name"
    span = _user_info_span(value)
    masked = value if span is None else value[: span[0]] + "***" + value[span[1] :]
    shown = "" if secret else f" = {_shown_text(masked)}"
    return (
        f"{path}: {key}{shown}: the '${{' at character {position + 1} {what}; accepted: ${{NAME}} or "
        "${NAME:secret}, NAME made of letters, digits and '_' (not starting with a digit); write '$$' for a literal '$'"
    )


def _check_nesting(data: Any, path: Path, prefix: str) -> None:
    """Refuse lists and tables nested deeper than MAX_NESTING, before anything recurses into them."""
    pending: list[tuple[Any, str, int]] = [(data, "", 0)]
    while pending:
        value, key, depth = pending.pop()
        if depth > MAX_NESTING:
            raise ConfigError(
                f"{path}: {prefix}{_shown_key(key)}: lists and tables nested more than {MAX_NESTING} levels deep; "
                f"at most {MAX_NESTING} levels are accepted"
            )
        if isinstance(value, dict):
            pending.extend((v, f"{key}.{k}" if key else str(k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            pending.extend((v, f"{key}[{i}]", depth + 1) for i, v in enumerate(value))


def _too_deep_in_text(path: Path) -> str:
    """The error for a file nested too deep for the TOML parser, naming the line where it goes too deep."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"{path}: cannot be read: {exc.strerror}"
    line = _line_nested_deeper_than(text, MAX_NESTING)
    where = ""
    if line is not None:
        written = text.splitlines()[line - 1]
        name = written.split("=", 1)[0].strip() if "=" in written else ""
        where = f" line {line}" + (f" ({_shown_text(name)} = ...)" if name else "")
    return f"{path}:{where}: lists or inline tables nested too deep to read; at most {MAX_NESTING} levels are accepted"


def _line_nested_deeper_than(text: str, limit: int) -> int | None:
    """The first line where ``[`` / ``{`` outside strings and comments nest deeper than ``limit``."""
    depth, line, i = 0, 1, 0
    while i < len(text):
        char = text[i]
        if char == "\n":
            line += 1
        elif char == "#":
            end = text.find("\n", i)
            i = len(text) if end == -1 else end
            continue
        elif char in "\"'":
            quote_text = char * 3 if text.startswith(char * 3, i) else char
            end = i + len(quote_text)
            while end < len(text) and not text.startswith(quote_text, end):
                end += 2 if char == '"' and text[end] == "\\" else 1
            line += text.count("\n", i, end)
            i = end + len(quote_text)
            continue
        elif char in "[{":
            depth += 1
            if depth > limit:
                return line
        elif char in "]}":
            depth -= 1
        i += 1
    return None


# SQLAlchemy's own URL grammar (sqlalchemy/engine/url.py, ``_parse_url``, 2.0 and 2.1), so that loading
# the config judges a database URL without importing SQLAlchemy (0.15-0.2 s of every start-up). The
# database check and action parse the URL with SQLAlchemy itself when they run;
# tests/engine/test_database_url_grammar.py holds this copy to SQLAlchemy's verdicts.
_SQLALCHEMY_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)


class NotADatabaseURL(ValueError):
    """What SQLAlchemy's make_url raises as ArgumentError: the text does not follow its grammar."""


def database_url_port(url: str) -> int | None:
    """The URL's port as SQLAlchemy's ``make_url(url).port`` reads it: None when there is none,
    ``NotADatabaseURL`` when SQLAlchemy could not parse it, ValueError when the port is no number."""
    found = _SQLALCHEMY_URL.match(url)
    if found is None:
        raise NotADatabaseURL(url)
    port = found.group("port")
    # SQLAlchemy's own int(): "+5", " 5" and other scripts' digits pass as there; "" (``host:/db``) does not
    return int(port) if port is not None else None


def _check_database_url(url: str, path: Path, key: str, substituted: set[str]) -> None:
    """A URL SQLAlchemy can read; the error never shows its user info (a password may be in it),
    nor anything that came from the environment."""
    accepted = (
        "expected dialect[+driver]://user@host[:port]/database, e.g. postgresql+psycopg://app@db.internal/shop "
        "or sqlite:///app.db (the password in database.password)"
    )
    masked = _masked_url(url)
    shown = (
        _shown_value(masked, substituted)
        if masked != "***"
        else f"({len(url)} characters, not shown: it may hold a password)"
    )
    try:
        port = database_url_port(url)
    except NotADatabaseURL:
        raise ConfigError(f"{path}: {key} = {shown}: not a database URL SQLAlchemy can read; {accepted}") from None
    except ValueError:
        raise ConfigError(f"{path}: {key} = {shown}: the port is not a number; {accepted}") from None
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"{path}: {key} = {shown}: port {port} is out of range (1-65535); {accepted}")


def _masked_url(text: str) -> str:
    """``text`` with the user info of its URL (``user:password@``) shown as ``***@``; a value that is not
    a URL at all is shown only when it holds no ``@`` or ``:`` (it might be a password typed in the wrong place)."""
    span = _user_info_span(text)
    if span is not None:
        return text[: span[0]] + "***" + text[span[1] :]
    if "://" not in text and ("@" in text or ":" in text):
        return "***"
    return text


def _shown_text(text: str) -> str:
    """``repr(text)``, control characters escaped, cut to a length a person reads."""
    shown = repr(text)
    if len(shown) > _SHOWN_VALUE_LENGTH:
        return f"{shown[:_SHOWN_VALUE_LENGTH]}... ({len(text)} characters)"
    return shown


def _shown_key(key: str) -> str:
    shown = key if unprintable(key) is None else repr(key)
    return shown if len(shown) <= 120 else f"{shown[:120]}..."


# Pydantic's own words for these are about Python types; say what the TOML should hold.
_MESSAGES = {
    "model_type": "expected a table",
    "dict_type": "expected a table",
    "path_type": "expected a path (a string)",
}


def _describe(
    exc: ValidationError,
    path: Path,
    prefix: str,
    model: type[BaseModel],
    data: Any,
    substituted: set[str] | frozenset[str] = frozenset(),
) -> str:
    """One line per error; values that came from the environment are never shown (any of them
    may be a secret the user did not think of as one)."""
    lines = []
    for error in exc.errors():
        kind = error["type"]
        loc = _config_loc(error["loc"], data, missing=kind == "missing")
        key = prefix + _dotted(loc)
        value = error.get("input")
        if kind == "missing":
            line = f"{key} is required but missing"
        elif kind == "extra_forbidden":
            accepted = _accepted_keys(model, loc[:-1])
            line = f"{key}: unknown key; accepted keys here: {accepted}"
        else:
            message = _MESSAGES.get(kind) or str(error["msg"]).removeprefix("Value error, ")
            if kind == "list_type" and isinstance(value, dict) and _model_at(model, loc) is not None:
                message = f"expected a list of tables; write each entry as its own [[{key}]] table"
            line = f"{key} = {_shown_value(value, substituted)}: {message}"
        if line not in lines:
            lines.append(line)
    where = f"{path}: " if len(lines) == 1 else f"{path}:\n  "
    return where + "\n  ".join(lines)


def _shown_value(value: Any, substituted: set[str] | frozenset[str]) -> str:
    """``repr(value)`` with every value that came from the environment replaced by ``${...}``.

    Every such value, secret or not: a config error must not print what the environment holds.
    """
    text = repr(value)
    for secret in sorted((v for v in substituted if len(v) >= 3), key=len, reverse=True):
        for form in {secret, repr(secret)[1:-1], quote(secret, safe="")}:
            if form:
                text = text.replace(form, "${...}")
    if len(text) > _SHOWN_VALUE_LENGTH:
        size = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters written out"
        return f"{text[:_SHOWN_VALUE_LENGTH]}... ({size})"
    return text


def _config_loc(loc: tuple[int | str, ...], data: Any, missing: bool) -> tuple[int | str, ...]:
    """The parts of a pydantic error location that are keys and indexes of the config itself.

    Pydantic puts the names of union members and validators into locations
    (``function-before[_duration(), float]``, ``list[int]``, ``str``); they are not keys anyone
    wrote, so they are dropped by walking the data the location points into.
    """
    kept: list[int | str] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(part, int):
            if isinstance(node, list):
                kept.append(part)
                node = node[part] if 0 <= part < len(node) else None
            continue
        if isinstance(node, dict) and (part in node or (missing and i == len(loc) - 1)):
            kept.append(part)
            node = node.get(part)
    return tuple(kept)


def _dotted(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            shown = part if unprintable(part) is None else repr(part)  # a key written with an escape in it
            text += f".{shown}" if text else shown
    return text


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> Any:
    """The settings model (table) that ``loc`` names, or None when it names no table."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", {})
        info = fields.get(part)
        current = _inner_model(info.annotation) if info is not None else None
    return current


def _accepted_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    fields = getattr(_model_at(model, loc), "model_fields", None)
    shown = [name for name, info in (fields or {}).items() if not info.exclude]  # excluded: internal
    return ", ".join(sorted(shown)) if shown else "see docs/configuration.md"


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
