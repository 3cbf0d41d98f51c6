"""The blue/green target's settings and step names, shared by the driver and its proxy config modules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator

from ..config import Section, Timeout, UrlPath

STEP_CHECK, STEP_SWITCH, STEP_WAIT = "check-colour", "switch-proxy", "wait-ready"
_URL_ACCEPTED = "expected an http:// URL with a host and port, e.g. http://127.0.0.1:8001"


def _colour_url(value: str) -> str:
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise ValueError(_URL_ACCEPTED)
    return value.rstrip("/")


ColourUrl = Annotated[str, AfterValidator(_colour_url)]


class ColourSettings(Section):
    url: ColourUrl


class BlueGreenSettings(Section):
    proxy: Literal["nginx", "haproxy"]
    # The two colours by name (e.g. blue and green), each the address one copy serves on.
    colours: dict[str, ColourSettings]
    config_file: Path  # the config the running proxy reads
    config_template: Path  # config_file with {{colour}}, {{host}}, {{port}}, {{url}} (and idle_*) in it
    proxy_program: str | None = None  # default: nginx / haproxy from PATH
    pid_file: Path | None = None  # haproxy: the master's pid file (started with -W); nginx: not needed
    check_url: ColourUrl | None = None  # through the proxy, bypassing a maintenance page; default: the service
    version_path: UrlPath = "/version"
    version_field: str | None = None  # a JSON field of the version answer; None: the body is the version
    health_path: UrlPath = "/health"
    health_consecutive: int = Field(default=2, ge=1, le=100)
    probe_timeout: Timeout = 2.0
    reload_timeout: Timeout = 10.0
    ready_timeout: Timeout = 30.0
    ready_consecutive: int = Field(default=3, ge=1, le=100)

    @field_validator("colours")
    @classmethod
    def _two_colours(cls, value: dict[str, ColourSettings]) -> dict[str, ColourSettings]:
        if len(value) != 2:
            raise ValueError(f"expected exactly two colours, e.g. blue and green; got {len(value)}")
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ValueError(f"colour name {name!r}: expected letters, digits, '-' or '_'")
        return value
