"""Signed evidence (``[reports.signing]``): the run's manifest signed with Ed25519, last of all.

The key is read and checked when the config is (a bad key is a usage error before anything
changes) and kept in memory: removing its file mid-run changes nothing, and it is never written.
evidence.json names the public key's fingerprint; ``manifest.sha256.sig`` holds the signature;
``rollback-harness verify RUN_DIR --key PUB`` checks the bundle (rollback/verify_cli.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..rollback import run_files

if TYPE_CHECKING:
    from ..rollback.signing import SigningKey
    from .state import HarnessRun

_KEY = pytest.StashKey["SigningKey | None"]()


def pytest_rollback_config_loaded(
    config: pytest.Config, harness_config: Any, target_spec: Any, report_base: Path
) -> None:
    """Read the signing key now: a missing or wrong key stops the run before it changes anything."""
    if harness_config.settings.reports.signing is None:
        config.stash[_KEY] = None
        return
    from ..rollback.errors import ConfigError
    from ..rollback.signing import configured_key

    try:
        config.stash[_KEY] = configured_key(harness_config, os.environ)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


def _key(config: pytest.Config) -> SigningKey | None:
    return config.stash.get(_KEY, None)


def pytest_rollback_run_made(config: pytest.Config, run: HarnessRun) -> None:
    """The key is a secret of the run: a gate that prints its environment shows no key material."""
    key = _key(config)
    if key is not None:
        run.redactor.add(key.secret_forms())


def pytest_rollback_evidence(
    run: HarnessRun, config: pytest.Config, tests: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Which key signs this bundle (its fingerprint), or null: an unsigned bundle says so."""
    key = _key(config)
    if key is None:
        return {"signing": None}
    from ..rollback.signing import ALGORITHM, public_raw

    return {
        "signing": {
            "algorithm": ALGORITHM,
            "fingerprint": key.fingerprint,
            "public_key": public_raw(key.public),
            "key_source": key.source,
            "signed_file": run_files.MANIFEST,
            "signature_file": run_files.SIGNATURE,
        }
    }


def pytest_rollback_artifacts(run: HarnessRun, config: pytest.Config) -> dict[str, str | None]:
    return {"signature": run_files.SIGNATURE if _key(config) is not None else None}


def pytest_rollback_manifest_written(
    run: HarnessRun, config: pytest.Config, manifest: Path, write: Callable[..., Any]
) -> None:
    """Sign the manifest; a signature not written is the core's to report (exit code 22)."""
    key = _key(config)
    if key is None or run.is_worker:
        return
    from ..rollback.signing import sign_manifest

    if not write(run_files.SIGNATURE, lambda: sign_manifest(run.run_dir, key)):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"[rollback] {run_files.MANIFEST} signed with key {key.fingerprint} ({run_files.SIGNATURE}); "
            f"check the bundle: rollback-harness verify {run.run_dir} --key PUBLIC_KEY.pem"
        )


def pytest_rollback_html_sections(evidence: dict[str, Any], h: Callable[[object], str]) -> list[str]:
    """Which key signs the bundle, and the command that checks it (everything escaped)."""
    signing = evidence.get("signing")
    if not isinstance(signing, dict):
        return []
    return [
        '<h3>Signed evidence</h3><p id="rollback-signing">'
        f"{h(signing['signed_file'])} is signed with Ed25519 key <code>{h(signing['fingerprint'])}</code> "
        f"({h(signing['signature_file'])}, written last). Check the bundle with "
        f"<code>rollback-harness verify {h(evidence.get('run_id'))} --key PUBLIC_KEY.pem</code>.</p>"
    ]
