"""``rollback-harness verify RUN_DIR [--key PUB]``: is this run folder the evidence the harness wrote?

Every file must match ``manifest.sha256`` and the manifest's signature (``manifest.sha256.sig``)
must hold; with ``--key`` it must be that key's. Read by people who were not there: each refusal
names the file that changed, was added or removed, or says the manifest was rewritten, or the
signature is missing or made by another key. Never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from . import run_files
from .evidence import verify_manifest
from .signing import (
    MISSING,
    NO_MANIFEST,
    OK,
    PUBLIC_ACCEPTED,
    SignatureCheck,
    check_signature,
    parse_public_key,
    read_key_file,
)

VERIFIED, REFUSED, USAGE = 0, 1, 2
EXIT_CODES = f"""\
exit codes:
  {VERIFIED}  verified: every file matches the manifest and its signature holds
  {REFUSED}  refused: a file changed, was added or removed, the manifest was rewritten, the signature is
     missing, malformed or made by another key, or a file could not be read
  {USAGE}  usage: RUN_DIR is not a run folder, or --key is not an Ed25519 public key

Without --key the signature is checked against the public key it names: that proves the bundle was
not changed after signing, not who signed it. Pass --key with the public key you trust (PEM, e.g.
from `openssl pkey -in signing-key.pem -pubout`) to check that too.
"""
_PROBLEM_WORDS = {
    "changed": "changed after the manifest was written",
    "added": "added after the manifest was written (not listed in it)",
    "missing": "removed (listed in the manifest, not in the folder)",
}


class UsageProblem(Exception):
    """A usage error: exit code 2, the message on stderr."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollback-harness", description="Tools for the rollback harness's evidence bundles."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verify = commands.add_parser(
        "verify",
        help="check a run folder against its manifest and the manifest's signature",
        description="Check a run folder: every file must match manifest.sha256, and the manifest's signature "
        "(manifest.sha256.sig) must hold; with --key, it must be made by that key.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, e.g. reports/20261203-021500-ab12")
    verify.add_argument(
        "--key",
        metavar="PUBLIC_KEY",
        help="the signer's public key you trust: a PEM file, an OpenSSH public key line, or 32 bytes in base64",
    )
    verify.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="accept a bundle with no signature (runs before [reports.signing] was set): only the manifest is checked",
    )
    return parser


def trusted_key(option: str | None) -> Any:
    """The public key ``--key`` names, or None; UsageProblem saying why it is not one."""
    if option is None:
        return None
    path = Path(option).expanduser()
    try:
        return parse_public_key(read_key_file(path))
    except OSError as exc:
        raise UsageProblem(f"--key {option}: cannot be read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageProblem(f"--key {option}: not usable: {exc}; expected {PUBLIC_ACCEPTED}") from None


def check_folder(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise UsageProblem(f"{run_dir}: {'not a folder' if run_dir.exists() else 'no such folder'}")
    names = (run_files.MANIFEST, run_files.EVIDENCE, run_files.SIGNATURE)
    if not any((run_dir / name).exists() for name in names):
        raise UsageProblem(f"{run_dir}: not a run folder (none of {', '.join(names)} is in it)")


def _evidence_key(run_dir: Path) -> str | None:
    """The fingerprint evidence.json names for the key that signs the bundle, if it names one."""
    try:
        evidence = json.loads((run_dir / run_files.EVIDENCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    signing = evidence.get("signing") if isinstance(evidence, dict) else None
    found = signing.get("fingerprint") if isinstance(signing, dict) else None
    return found if isinstance(found, str) else None


def findings(run_dir: Path, trusted: Any, allow_unsigned: bool) -> tuple[list[str], list[str]]:
    """What is wrong with the bundle (refusals) and what holds (notes). OSError when a file cannot be read."""
    problems = []
    for problem in verify_manifest(run_dir):
        name, _, what = problem.rpartition(": ")
        if name == run_files.MANIFEST:
            problems.append(f"{run_files.MANIFEST} is missing: nothing says what the bundle held")
        else:
            problems.append(f"{name}: {_PROBLEM_WORDS.get(what, what)}")
    listed = _listed(run_dir)
    notes = [f"{listed} file{'s' if listed != 1 else ''} listed in {run_files.MANIFEST}, each one matches"]
    check = check_signature(run_dir, trusted)
    if check.status == MISSING and allow_unsigned:
        notes.append(
            f"not signed ({run_files.SIGNATURE} is missing; --allow-unsigned): only the manifest was checked, "
            "and anyone who can change a file can rewrite it"
        )
    elif check.status != NO_MANIFEST:
        problems.extend(_signature_findings(run_dir, check, trusted, notes))
    return problems, notes


def _signature_findings(run_dir: Path, check: SignatureCheck, trusted: Any, notes: list[str]) -> list[str]:
    if check.status != OK:
        return [check.message]
    claimed = _evidence_key(run_dir)
    if claimed is not None and claimed != check.fingerprint:
        return [
            f"evidence.json says the bundle is signed by key {claimed}, but {run_files.SIGNATURE} was made by "
            f"key {check.fingerprint}: it was signed again by someone else"
        ]
    if trusted is None:
        notes.append(f"{check.message} (not checked against a key you trust: pass --key PUBLIC_KEY)")
    else:
        notes.append(f"{check.message}: the key you gave")
    return []


def _what_it_says(run_dir: Path) -> list[str]:
    """The run's own account, now that it is known to be the harness's: its id, exit code and headline."""
    try:
        evidence = json.loads((run_dir / run_files.EVIDENCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(evidence, dict):
        return []
    code = (evidence.get("exit") or {}).get("code")
    return [f"run {evidence.get('run_id')} (exit code {code}): {evidence.get('headline')}"]


def _listed(run_dir: Path) -> int:
    try:
        text = (run_dir / run_files.MANIFEST).read_text(encoding="utf-8")
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if line.strip())


def verify(run_dir: Path, key_option: str | None, allow_unsigned: bool, out: TextIO) -> int:
    """Print the verdict on ``run_dir``; the exit code."""
    if key_option is not None and allow_unsigned:
        raise UsageProblem("--key and --allow-unsigned: a key is checked against a signature; give one or the other")
    trusted = trusted_key(key_option)
    check_folder(run_dir)
    try:
        problems, notes = findings(run_dir, trusted, allow_unsigned)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        out.write(f"NOT VERIFIED: {run_dir}: cannot read{where}: {exc.strerror or exc}\n")
        return REFUSED
    if problems:
        out.write(f"REFUSED: {run_dir} is not the evidence the harness wrote and signed:\n")
        out.writelines(f"  {line}\n" for line in problems)
        return REFUSED
    out.write(f"VERIFIED: {run_dir}\n")
    out.writelines(f"  {line}\n" for line in [*notes, *_what_it_says(run_dir)])
    return VERIFIED


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return verify(Path(args.run_dir), args.key, args.allow_unsigned, sys.stdout)
    except UsageProblem as exc:
        sys.stderr.write(f"rollback-harness verify: {exc}\n")
        return USAGE
    except KeyboardInterrupt:
        sys.stderr.write("rollback-harness verify: interrupted\n")
        return 130
