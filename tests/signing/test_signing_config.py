"""[reports.signing]: the key is read and checked at start-up; a bad one stops the run before any change,
and no error message or file ever holds key material."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from deployments import Deployment, run_dir
from signing_support import COMMAND_TIMEOUT_S, assert_no_key_material, key_material, openssl, openssl_key, verify

from rollback_harness.rollback.evidence import verify_manifest

pytestmark = pytest.mark.integration
ACCEPTED = "expected an Ed25519 private key: PEM PKCS#8 (what `openssl genpkey -algorithm ed25519` writes)"


def refused_at_start(pytester: pytest.Pytester, demo: Deployment) -> str:
    """The run's stderr, once it is known the run stopped as a usage error and changed nothing."""
    reports = pytester.path / "reports"
    result = pytester.runpytest(*demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-yes"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert demo.live_version() == "v1.3.0" and demo.restarts() == 0
    assert not reports.exists() or not any(reports.iterdir()), "no run folder for a run that did not start"
    return result.stderr.str()


def test_a_key_file_that_is_not_there(pytester: pytest.Pytester, demo: Deployment) -> None:
    demo.update_config(reports={"signing": {"key_file": "keys/missing.pem"}})
    error = refused_at_start(pytester, demo)
    assert f"{demo.config_path}: reports.signing.key_file = 'keys/missing.pem' (" in error
    assert "missing.pem): cannot be read: no such file; " + ACCEPTED in error


RSA = ("genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048")
ENCRYPTED = ("genpkey", "-algorithm", "ed25519", "-aes256", "-pass", "pass:correct-horse")


@pytest.mark.parametrize(
    ("make", "why"),
    [(RSA, "it is not an Ed25519 key (RSAPrivateKey)"), (ENCRYPTED, "it is encrypted with a passphrase")],
    ids=["rsa", "encrypted"],
)
def test_a_key_file_that_is_not_a_usable_ed25519_key(
    pytester: pytest.Pytester, demo: Deployment, make: tuple[str, ...], why: str
) -> None:
    key = pytester.path / "key.pem"
    openssl(*make, "-out", str(key), cwd=pytester.path)
    demo.update_config(reports={"signing": {"key_file": str(key)}})
    error = refused_at_start(pytester, demo)
    assert f"reports.signing.key_file = {str(key)!r}: not usable: {why}" in error
    assert ACCEPTED in error
    assert "PRIVATE KEY" not in error


def test_a_public_key_given_as_the_signing_key(pytester: pytest.Pytester, demo: Deployment) -> None:
    _private, public = openssl_key(pytester.path / "keys")
    demo.update_config(reports={"signing": {"key_file": str(public)}})
    assert "not usable: it is a public key; the harness signs with the private key" in refused_at_start(pytester, demo)


def test_a_key_variable_unset_or_malformed(
    pytester: pytest.Pytester, demo: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo.update_config(reports={"signing": {"key_env": "ROLLBACK_SIGNING_KEY"}})
    monkeypatch.delenv("ROLLBACK_SIGNING_KEY", raising=False)
    error = refused_at_start(pytester, demo)
    assert (
        "reports.signing.key_env = 'ROLLBACK_SIGNING_KEY': the environment variable ROLLBACK_SIGNING_KEY is not set"
        in error
    )

    value = "c2VjcmV0LWJ1dC1ub3QtYS1rZXk="  # base64, but of 21 bytes: not a key, and still not to be echoed
    monkeypatch.setenv("ROLLBACK_SIGNING_KEY", value)
    error = refused_at_start(pytester, demo)
    assert "reports.signing.key_env = 'ROLLBACK_SIGNING_KEY': not usable: it is neither PEM" in error
    assert value not in error and "secret-but" not in error


def test_both_or_neither_source(pytester: pytest.Pytester, demo: Deployment) -> None:
    demo.update_config(reports={"signing": {"key_file": "k.pem", "key_env": "K"}})
    error = refused_at_start(pytester, demo)
    assert "reports.signing" in error and 'give exactly one of key_file = "PATH"' in error


LEAKY_GATE = """
import os

import pytest


@pytest.mark.gate("verify")
def test_a_gate_that_prints_its_environment():
    print("the signing key:", os.environ["ROLLBACK_SIGNING_KEY"])
"""


def test_a_raw_key_in_a_variable_signs_and_never_shows(
    pytester: pytest.Pytester, demo: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    private, public = openssl_key(pytester.path / "keys")
    forms = key_material(private)
    raw = forms[2]  # the raw 32 bytes in base64, as a secret store holds it
    private.unlink()  # only the variable holds the key
    monkeypatch.setenv("ROLLBACK_SIGNING_KEY", raw)
    demo.update_config(reports={"signing": {"key_env": "ROLLBACK_SIGNING_KEY"}})
    pytester.makepyfile(test_gates=LEAKY_GATE)
    reports = pytester.path / "reports"

    result = pytester.runpytest(*demo.harness_args(reports, "-rA", "--rollback-to", "v1.2.9", "--rollback-yes"))

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["the signing key: ***"])  # the run's secret: redacted where a gate prints it
    folder = run_dir(reports)
    evidence = json.loads((folder / "evidence.json").read_text())
    assert evidence["signing"]["key_source"] == "reports.signing.key_env = 'ROLLBACK_SIGNING_KEY'"
    assert verify(folder, "--key", str(public)).returncode == 0
    assert_no_key_material(forms, folder=folder, text=result.stdout.str() + result.stderr.str())


def test_an_openssh_key_has_the_fingerprint_ssh_keygen_shows(pytester: pytest.Pytester, demo: Deployment) -> None:
    ssh_keygen = shutil.which("ssh-keygen")
    assert ssh_keygen, "ssh-keygen (openssh-client) is needed"
    key = pytester.path / "id_ed25519"
    subprocess.run([ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=COMMAND_TIMEOUT_S)
    shown = subprocess.run(
        [ssh_keygen, "-l", "-f", f"{key}.pub"], capture_output=True, text=True, check=True, timeout=COMMAND_TIMEOUT_S
    ).stdout.split()[1]
    demo.update_config(reports={"signing": {"key_file": str(key)}})
    reports = pytester.path / "reports"

    result = pytester.runpytest(*demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-yes"))

    assert result.ret == 0, result.stdout.str()
    folder = run_dir(reports)
    assert json.loads((folder / "evidence.json").read_text())["signing"]["fingerprint"] == shown
    checked = verify(folder, "--key", f"{key}.pub")  # the OpenSSH public key line is accepted too
    assert checked.returncode == 0, checked.stdout + checked.stderr
    body = "".join(line for line in key.read_text().splitlines() if not line.startswith("-----"))
    assert_no_key_material([body, body[:40]], folder=folder, text=result.stdout.str())


LATE_BLOCKER = """
from pathlib import Path

import pytest


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        [folder] = [p for p in Path(session.config.option.rollback_report_dir).iterdir() if p.is_dir()]
        # Where the signature goes, a folder: the signature cannot be written (EISDIR), the manifest can.
        (folder / "manifest.sha256.sig").mkdir()
"""


def test_a_signature_not_written_never_ends_in_success(pytester: pytest.Pytester, demo: Deployment) -> None:
    private, public = openssl_key(pytester.path / "keys")
    demo.update_config(reports={"signing": {"key_file": str(private)}})
    pytester.makeconftest(LATE_BLOCKER)
    reports = pytester.path / "reports"

    result = pytester.runpytest(*demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-yes"))

    assert result.ret == 22, result.stdout.str()
    assert demo.live_version() == "v1.2.9", "the rollback itself happened"
    result.stdout.fnmatch_lines(
        [
            "[[]rollback[]] manifest.sha256.sig was not written: Is a directory (EISDIR)",
            "[[]rollback[]] exit code 22: done and verified, but evidence could not be written*",
        ]
    )
    folder = run_dir(reports)
    evidence = json.loads((folder / "evidence.json").read_text())
    assert evidence["exit"]["code"] == 22
    assert evidence["not_written"] == ["manifest.sha256.sig was not written: Is a directory (EISDIR)"]
    assert verify_manifest(folder) == [], "the manifest was written again: it lists evidence.json as it now is"
    checked = verify(folder, "--key", str(public))
    assert checked.returncode == 1 and "not signed: manifest.sha256.sig is not a file" in checked.stdout


def test_a_run_under_xdist_is_signed_once_by_the_controller(
    pytester: pytest.Pytester, demo: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    private, public = openssl_key(pytester.path / "keys")
    monkeypatch.setenv("ROLLBACK_SIGNING_KEY", private.read_text())  # a PEM in a variable, as CI secrets hold it
    demo.update_config(reports={"signing": {"key_env": "ROLLBACK_SIGNING_KEY"}})
    reports = pytester.path / "reports"

    result = pytester.runpytest(*demo.harness_args(reports, "-n", "2", "--rollback-to", "v1.2.9", "--rollback-yes"))

    assert result.ret == 0, result.stdout.str()
    assert result.stdout.str().count("manifest.sha256 signed with key") == 1
    checked = verify(run_dir(reports), "--key", str(public))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert_no_key_material(key_material(private), folder=run_dir(reports), text=result.stdout.str())


def test_a_configured_key_with_the_signing_plugin_left_out_is_no_success(
    pytester: pytest.Pytester, demo: Deployment
) -> None:
    private, _ = openssl_key(pytester.path / "keys")
    demo.update_config(reports={"signing": {"key_file": str(private)}})
    reports = pytester.path / "reports"
    args = demo.harness_args(reports, "-p", "no:rollback_harness.plugins.signing", "--rollback-to", "v1.2.9")

    result = pytester.runpytest(*args, "--rollback-yes")

    assert result.ret == 22, result.stdout.str()
    result.stdout.fnmatch_lines(["[[]rollback[]] manifest.sha256.sig was not written: [[]reports.signing[]] is set*"])
    assert not (run_dir(reports) / "manifest.sha256.sig").exists()
    assert verify_manifest(run_dir(reports)) == []
