"""``--rollback-to last-verified``: the newest version a verify gate proved good on this target.

Read from the evidence of earlier runs (each run folder's evidence.json), never from memory:
a run counts only when its exit code says its verify gate passed (0 - rolled back and verified,
or a deploy gate that passed - or 17, a failed deploy rolled back and verified after it) and
its evidence still matches its manifest. A run whose watch failed (19) proved nothing. Plain
Python: no pytest import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import run_files
from .evidence import verify_manifest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

LAST_VERIFIED = "last-verified"
# Exit codes of runs whose last verify round passed (plugins/exit_codes.py: OK, DEPLOY_ROLLED_BACK).
_PROVING_CODES = {0: "verify-version", 17: "reverify-version"}


@dataclass(frozen=True)
class Proof:
    """The run that proved ``version`` good, and when."""

    version: str
    run_id: str
    verified_at: str
    run_dir: str
    how: str
    # With [reports.signing]: the fingerprint of the key whose signature of the run's manifest held.
    signed_by: str | None = None

    def describe(self) -> str:
        return f"{self.version}, verified by run {self.run_id} at {self.verified_at} ({self.how}; {self.run_dir})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Search:
    """What a search of the report folder found: the proof, and the runs it could not trust."""

    folder: Path
    proof: Proof | None = None
    examined: int = 0
    untrusted: list[str] = field(default_factory=list)

    def refusal(self, service: str, target: str) -> str:
        why = f"{self.examined} run folder{'' if self.examined == 1 else 's'} examined"
        if self.untrusted:
            why += f"; not trusted: {'; '.join(self.untrusted[:5])}"
        return (
            f"--rollback-to {LAST_VERIFIED}: no earlier run in {self.folder} proved a version of {service} on target "
            f"{target} good ({why}); nothing was changed. Give the version: --rollback-to VERSION"
        )


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def proven_version(evidence: dict[str, Any]) -> tuple[str, str] | None:
    """The version this run's last verify round proved live, and how; None when it proved none."""
    code = (evidence.get("exit") or {}).get("code")
    if code not in _PROVING_CODES:
        return None
    name = _PROVING_CODES[code]
    for test in evidence.get("tests") or []:
        if not str(test.get("nodeid", "")).endswith("::" + name) or test.get("outcome") != "passed":
            continue
        check = test.get("check") or {}
        version = (check.get("measured") or {}).get("version")
        if isinstance(version, str) and version:
            how = "a failed deploy rolled back and verified" if code == 17 else f"{evidence.get('mode')}, exit code 0"
            return version, how
    return None


def find_last_verified(
    folder: Path, service: str, target: str, *, skip: Path | None = None, trusted: Ed25519PublicKey | None = None
) -> Search:
    """The newest run under ``folder`` for ``service`` and ``target`` whose verify gate passed.

    With ``trusted`` (a signing key is configured) a run counts only when its manifest's signature
    holds for that key: an unsigned run, or one signed by another key, is listed as untrusted.
    """
    search = Search(folder)
    if not folder.is_dir():
        return search
    candidates: list[Proof] = []
    for run_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if skip is not None and run_dir.resolve() == skip.resolve():
            continue
        evidence = _read(run_dir / run_files.EVIDENCE)
        if evidence is None:
            continue
        search.examined += 1
        if (evidence.get("service") or {}).get("name") != service or (evidence.get("target") or {}).get(
            "name"
        ) != target:
            continue
        proven = proven_version(evidence)
        if proven is None:
            continue
        problems = verify_manifest(run_dir)
        if problems:
            search.untrusted.append(f"{run_dir.name}: its evidence does not match its manifest ({problems[0]})")
            continue
        signed_by = _signed_by(run_dir, trusted, search) if trusted is not None else None
        if trusted is not None and signed_by is None:
            continue
        version, how = proven
        at = str(evidence.get("finished") or evidence.get("started") or "")
        run_id = str(evidence.get("run_id") or run_dir.name)
        candidates.append(Proof(version, run_id, at, str(run_dir), how, signed_by))
    if candidates:
        search.proof = max(candidates, key=lambda proof: (proof.verified_at, proof.run_id))
    return search


def _signed_by(run_dir: Path, trusted: Ed25519PublicKey, search: Search) -> str | None:
    """The signer's fingerprint when the run's signature holds for ``trusted``; else None, said in ``search``."""
    from .signing import check_signature

    try:
        check = check_signature(run_dir, trusted)
    except OSError as exc:
        search.untrusted.append(f"{run_dir.name}: its signature could not be read ({exc.strerror or exc})")
        return None
    if not check.ok:
        search.untrusted.append(f"{run_dir.name}: {check.message}")
        return None
    return check.fingerprint
