"""Evidence files: redaction (scenario 27), atomic JSON, and the tamper-evident manifest (scenario 29)."""

from __future__ import annotations

import base64
import errno
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollback_harness.rollback.evidence import (
    MANIFEST_NAME,
    REDACTED,
    Redactor,
    verify_manifest,
    write_json,
    write_manifest,
)

SECRET = "p@ss w/rd+9?"  # differs in every encoding: %-quoted, +-quoted, base64, urlsafe base64
ENCODINGS = {
    "plain": SECRET,
    "quote": quote(SECRET, safe=""),
    "quote_plus": quote_plus(SECRET),
    "base64": base64.b64encode(SECRET.encode()).decode(),
    "urlsafe_base64": base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
}


def test_the_encodings_really_differ() -> None:
    assert len(set(ENCODINGS.values())) == len(ENCODINGS)


@pytest.mark.parametrize("form", sorted(ENCODINGS))
def test_a_secret_is_removed_in_every_form(form: str) -> None:
    text = f"before {ENCODINGS[form]} after"
    assert Redactor([SECRET]).text(text) == f"before {REDACTED} after"


def test_every_occurrence_is_removed_and_longer_secrets_first() -> None:
    redactor = Redactor(["token-abc", "token-abc-extended"])
    assert redactor.text("token-abc-extended and token-abc, token-abc") == "*** and ***, ***"


def test_very_short_secrets_are_not_replaced_in_ordinary_text() -> None:
    # A 3-character "secret" would turn every "abc" in a report into "***".
    assert Redactor(["abc"]).text("abcdef") == "abcdef"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        (
            "connect postgresql+psycopg://app:s3cr%2Ft@db.internal:5432/shop failed",
            "connect postgresql+psycopg://app:***@db.internal:5432/shop failed",
        ),
        ("https://hooks:tok@chat.example/hook", "https://hooks:***@chat.example/hook"),
        ("redis://:onlypass@cache:6379/0", "redis://:***@cache:6379/0"),
    ],
)
def test_passwords_in_urls_are_removed_without_knowing_them(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


@pytest.mark.parametrize(
    "text",
    ["http://127.0.0.1:8080/health", "ssh git@github.com", "sqlite:////var/lib/app.db", "user@example.com: ok"],
)
def test_urls_without_passwords_are_untouched(text: str) -> None:
    assert Redactor().text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer xyz", "Authorization: ***"),
        ("authorization=Basic dXNlcjpwdw==", "authorization=***"),
        ("curl -H 'Authorization: token ghp_123' https://x", "curl -H 'Authorization: ***' https://x"),
        ("{'Authorization': 'Bearer xyz', 'Accept': 'json'}", "{'Authorization': '***', 'Accept': 'json'}"),
        ('{"authorization": "Bearer xyz"}', '{"authorization": "***"}'),
    ],
)
def test_authorization_headers_are_removed_without_knowing_them(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


def test_nested_data_is_redacted_keys_and_values() -> None:
    data = {
        "run": {"steps": [{"output": f"using {SECRET}"}, ("tuple", ENCODINGS["base64"])]},
        f"key-{SECRET}": 3,
        "request": {"headers": {"Authorization": "Bearer xyz", "Accept": "application/json"}},
        "count": 7,
        "ok": True,
        "none": None,
    }
    assert Redactor([SECRET]).data(data) == {
        "run": {"steps": [{"output": "using ***"}, ["tuple", "***"]]},
        "key-***": 3,
        "request": {"headers": {"Authorization": "***", "Accept": "application/json"}},
        "count": 7,
        "ok": True,
        "none": None,
    }


def all_bytes(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_write_json_is_redacted(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "run" / "evidence.json",
        {"db": f"postgresql://app:{SECRET}@db/shop", "note": ENCODINGS["quote"], "where": tmp_path},
        Redactor([SECRET]),
    )
    data = json.loads(path.read_text())
    assert data == {"db": "postgresql://app:***@db/shop", "note": "***", "where": str(tmp_path)}
    for form in ENCODINGS.values():
        assert form.encode() not in all_bytes(tmp_path)


def test_write_json_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "evidence.json"
    write_json(path, {"version": 1}, Redactor())
    with path.open() as old:  # a reader that opened the file before the rewrite
        write_json(path, {"version": 2, "padding": "x" * 10_000}, Redactor())
        # A rename gives the path a new file; the reader still sees the whole old one, never a mix.
        assert json.loads(old.read()) == {"version": 1}
    assert json.loads(path.read_text())["version"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evidence.json"]  # no temporary file left


def make_bundle(run_dir: Path) -> None:
    write_json(run_dir / "evidence.json", {"outcome": "rolled-back"}, Redactor())
    (run_dir / "journal.jsonl").write_text('{"step": "switch-link", "status": "done"}\n')
    (run_dir / "logs").mkdir()
    (run_dir / "logs" / "app log.txt").write_text("started v1.2.9\n")


def sha256sum_check(run_dir: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("sha256sum")
    assert tool, "coreutils sha256sum is needed to check the manifest format"
    return subprocess.run(
        [tool, "-c", MANIFEST_NAME], cwd=run_dir, capture_output=True, text=True, timeout=30, check=False
    )


def test_an_untouched_bundle_verifies_and_sha256sum_accepts_it(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    manifest = write_manifest(tmp_path)
    assert manifest == tmp_path / MANIFEST_NAME
    names = [line.split("  ", 1)[1] for line in manifest.read_text().splitlines()]
    assert names == ["evidence.json", "journal.jsonl", "logs/app log.txt"]
    assert verify_manifest(tmp_path) == []
    checked = sha256sum_check(tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(": OK") == 3


def test_a_changed_file_is_detected(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    write_manifest(tmp_path)
    evidence = tmp_path / "evidence.json"
    evidence.write_text(evidence.read_text().replace("rolled-back", "rolled-bacK"))  # same size
    assert verify_manifest(tmp_path) == ["evidence.json: changed"]
    assert sha256sum_check(tmp_path).returncode != 0


def test_a_removed_file_is_detected(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    write_manifest(tmp_path)
    (tmp_path / "logs" / "app log.txt").unlink()
    assert verify_manifest(tmp_path) == ["logs/app log.txt: missing"]


def test_an_added_file_is_detected(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    write_manifest(tmp_path)
    (tmp_path / "logs" / "extra.txt").write_text("planted")
    assert verify_manifest(tmp_path) == ["logs/extra.txt: added"]


def test_several_changes_are_all_reported(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    write_manifest(tmp_path)
    (tmp_path / "journal.jsonl").write_text("")
    (tmp_path / "evidence.json").unlink()
    (tmp_path / "new.json").write_text("{}")
    assert verify_manifest(tmp_path) == ["evidence.json: missing", "journal.jsonl: changed", "new.json: added"]


def test_a_removed_manifest_is_reported_not_raised(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    write_manifest(tmp_path).unlink()
    assert verify_manifest(tmp_path) == [f"{MANIFEST_NAME}: missing"]


def test_rewriting_the_manifest_covers_files_written_since(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    write_manifest(tmp_path)
    (tmp_path / "report.html").write_text("<html></html>")
    write_manifest(tmp_path)
    assert verify_manifest(tmp_path) == []
    assert sha256sum_check(tmp_path).returncode == 0


def test_a_full_disk_never_leaves_an_empty_or_cut_manifest(tmp_path: Path) -> None:
    from mounts import fill, small_tmpfs

    with small_tmpfs(tmp_path / "disk", size="256k") as run_dir:
        make_bundle(run_dir)
        before = write_manifest(run_dir)
        assert before is not None
        old = before.read_text()
        (run_dir / "late.txt").write_text("added after the first manifest\n")
        fill(run_dir)
        with pytest.raises(OSError) as raised:
            write_manifest(run_dir)
        assert raised.value.errno == errno.ENOSPC
        # The old manifest is whole, and no temporary file is left to pass for evidence.
        assert (run_dir / MANIFEST_NAME).read_text() == old
        assert not list(run_dir.glob(".*.tmp"))
        with pytest.raises(OSError):
            write_json(run_dir / "evidence.json", {"padding": "x" * 100_000}, Redactor())
        assert json.loads((run_dir / "evidence.json").read_text()) == {"outcome": "rolled-back"}
        assert not list(run_dir.glob(".*.tmp"))


def test_a_folder_without_files_gets_no_manifest(tmp_path: Path) -> None:
    assert write_manifest(tmp_path) is None
    assert list(tmp_path.iterdir()) == []


# -- redaction in linear time (scenario 36) ------------------------------------------------------------

MEGABYTE = 1_000_000
# Texts on which the patterns before were quadratic (8 s for 100 KB; a 1 MB one ran for over 10 minutes):
# a regex could start at every letter of a long run, or backtrack between two ``\s*`` side by side.
HOSTILE = {
    "a-run-of-letters": ("a" * MEGABYTE, "a" * MEGABYTE),
    "letters-then-a-scheme": ("a" * MEGABYTE + "://u:pw@h", "a" * MEGABYTE + "://u:***@h"),
    "one-url-many-colons": ("x://" + "a:" * (MEGABYTE // 2), "x://" + "a:" * (MEGABYTE // 2)),
    "many-urls": ("a://u:pw@h " * (MEGABYTE // 11), "a://u:***@h " * (MEGABYTE // 11)),
    "header-then-spaces": ("authorization:" + " " * MEGABYTE, "authorization:" + " " * MEGABYTE),
    "header-quote-then-spaces": ("authorization: '" + " " * MEGABYTE, "authorization: '" + " " * MEGABYTE),
    "many-headers": ("Authorization: Bearer xyz\n" * (MEGABYTE // 26), "Authorization: ***\n" * (MEGABYTE // 26)),
    "near-misses-of-a-secret": (SECRET[:-1] * (MEGABYTE // 11), SECRET[:-1] * (MEGABYTE // 11)),
    "a-secret-every-line": (f"x {SECRET}\n" * (MEGABYTE // 15), "x ***\n" * (MEGABYTE // 15)),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_megabyte_of_hostile_text_is_redacted_correctly(name: str) -> None:
    text, expected = HOSTILE[name]
    assert len(text) >= MEGABYTE - 30
    assert Redactor([SECRET]).text(text) == expected


def test_every_secret_is_found_in_one_pass_of_one_pattern() -> None:
    # One alternation of all the secrets' forms, however many secrets there are: the text is read
    # once for them all (each secret in its own pass made the work grow with the number of secrets).
    many = Redactor([f"secret-number-{i:03d}" for i in range(200)])
    assert len(many.patterns) == len(Redactor([SECRET]).patterns) == 3
    assert len(Redactor().patterns) == 2
    text = " ".join(f"secret-number-{i:03d}" for i in range(0, 200, 7))
    assert many.text(text) == " ".join(["***"] * len(range(0, 200, 7)))


# The patterns before, quadratic but plain: the reference the new ones must agree with on short texts.
_OLD_URL = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<secret>[^@\s/]+)@")
_OLD_AUTH = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(bearer|basic|token)?\s*[^\s'\",}]+")


def _old_text(value: str) -> str:
    for form in sorted(ENCODINGS.values(), key=len, reverse=True):
        value = value.replace(form, REDACTED)
    value = _OLD_URL.sub(lambda m: m.group("head") + REDACTED + "@", value)
    return _OLD_AUTH.sub(lambda m: m.group(1) + REDACTED, value)


# Pieces that meet in every way the patterns care about (letters only before "://": the old pattern
# wanted a letter to start the scheme, the new one only looks at the character before "://").
_PIECES = st.sampled_from([*ENCODINGS.values(), "://", ":", "@", "/", " ", "  ", "'", '"', "=", ",", "}", "ab", "x"])
_SPACES = st.sampled_from(["", " ", "   ", "\n"])
_HEADERS = st.tuples(
    st.sampled_from(["Authorization", "authorization", "AUTHORIZATION"]),
    st.sampled_from(["", "'", '"']),
    _SPACES,
    st.sampled_from([":", "=", ""]),
    _SPACES,
    st.sampled_from(["", "'", '"']),
    st.sampled_from(["", "Bearer", "basic", "token", "Bearerx"]),
    _SPACES,
    st.sampled_from(["", "xyz", SECRET, "'", "}"]),
).map("".join)
_URLS = st.tuples(
    st.sampled_from(["", "a", "postgresql+psycopg"]),
    st.sampled_from(["://", ":/", "//"]),
    st.sampled_from(["", "u", "u:v"]),
    st.sampled_from(["", ":"]),
    st.sampled_from(["", "pw", SECRET, ENCODINGS["quote"], " "]),
    st.sampled_from(["", "@", "@@"]),
    st.sampled_from(["", "h", "h/db", "/"]),
).map("".join)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(_PIECES, _HEADERS, _URLS), max_size=8))
def test_the_linear_patterns_redact_what_the_old_ones_did(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert Redactor([SECRET]).text(text) == _old_text(text)
