"""Version strings (scenario 2): a strict pattern, version ordering, and resolving ``previous``."""

from __future__ import annotations

import pytest

from rollback_harness.rollback.versions import (
    PREVIOUS,
    is_newer,
    requested_problem,
    resolve_target,
    same_version,
    sort_versions,
    version_problem,
)


@pytest.mark.parametrize(
    "version",
    ["v1.2.9", "1.2.9", "v1.2.9-rc.1", "2024.01.05+build7", "V2", "release_42", "a" * 128],
)
def test_plain_versions_are_accepted(version: str) -> None:
    assert version_problem(version) is None


@pytest.mark.parametrize(
    "version",
    [
        "",
        " ",
        "v1.2.9 ",
        " v1.2.9",
        "v1 2",
        "v1.2.9;rm -rf /",
        "v1.2.9&&reboot",
        "v1|sh",
        "$(id)",
        "`id`",
        "v1>out",
        "v1<in",
        "v1'",
        'v1"',
        "v1*",
        "v1?",
        "v1\\2",
        "v1\n",
        "v1\x00",
        "../v1.2.9",
        "v1/../../etc",
        "releases/v1.2.9",
        "/etc/passwd",
        "v1..2",
        "..",
        ".",
        ".hidden",
        "-rf",
        "--help",
        "+1",
        "a" * 129,
        "v1.2.9\u00e9",
        "v1.2.9\u2024",
    ],
)
def test_non_plain_versions_are_refused(version: str) -> None:
    problem = version_problem(version)
    assert problem is not None
    assert repr(version) in problem
    assert "not a plain version" in problem


def test_refusal_says_what_is_accepted() -> None:
    problem = version_problem("v1;id")
    assert problem is not None
    assert "letters, digits" in problem and "e.g. v1.2.9" in problem
    assert "'..' is not allowed" in (version_problem("v1..2") or "")


def test_sorted_as_versions_not_as_text() -> None:
    assert sort_versions(["v1.10.0", "v1.9.2", "v1.2.9", "v1.2.10"]) == ["v1.2.9", "v1.2.10", "v1.9.2", "v1.10.0"]


def test_prereleases_sort_before_their_release_and_prefix_v_is_optional() -> None:
    assert sort_versions(["v1.3.0", "1.3.0rc1", "v1.2.9", "v1.3.0-rc.2"]) == [
        "v1.2.9",
        "1.3.0rc1",
        "v1.3.0-rc.2",
        "v1.3.0",
    ]


def test_non_version_names_come_first_by_name() -> None:
    assert sort_versions(["v1.0.0", "latest", "v0.9", "build_b", "build_a"]) == [
        "build_a",
        "build_b",
        "latest",
        "v0.9",
        "v1.0.0",
    ]


def test_duplicates_are_dropped() -> None:
    assert sort_versions(["v1", "v1", "v2"]) == ["v1", "v2"]


HISTORY = ["v1.2.8", "v1.2.9", "v1.9.2", "v1.10.0"]  # oldest first, as a driver lists it


def test_previous_is_the_version_before_the_live_one() -> None:
    version, how = resolve_target(PREVIOUS, "v1.10.0", HISTORY)
    assert version == "v1.9.2"
    assert "v1.9.2" in how and "v1.10.0" in how
    assert resolve_target(PREVIOUS, "v1.9.2", HISTORY)[0] == "v1.2.9"


def test_previous_follows_the_history_order_not_the_version_numbers() -> None:
    # Kubernetes revisions 2, 3, 4: v1.2.8 came back as revision 4, so v1.3.0 ran just before it.
    by_revision = ["v1.2.9", "v1.3.0", "v1.2.8"]
    assert resolve_target(PREVIOUS, "v1.2.8", by_revision)[0] == "v1.3.0"
    assert resolve_target(PREVIOUS, "v1.3.0", by_revision)[0] == "v1.2.9"
    version, how = resolve_target(PREVIOUS, "v1.2.9", by_revision)
    assert version is None
    assert "no version before the live v1.2.9 (history: v1.2.9, v1.3.0, v1.2.8)" in how


def test_a_version_that_ran_twice_counts_where_it_ran_last() -> None:
    assert resolve_target(PREVIOUS, "v1.3.0", ["v1.2.9", "v1.2.8", "v1.2.9", "v1.3.0"])[0] == "v1.2.9"
    assert resolve_target(PREVIOUS, "v1.3.0", ["v1.3.0", "v1.2.8", "v1.3.0"])[0] == "v1.2.8"


def test_previous_when_live_is_the_oldest() -> None:
    version, how = resolve_target(PREVIOUS, "v1.2.8", HISTORY)
    assert version is None
    assert "no version before the live v1.2.8" in how
    assert "v1.2.8, v1.2.9, v1.9.2, v1.10.0" in how


def test_previous_when_live_is_not_in_history() -> None:
    version, how = resolve_target(PREVIOUS, "v2.0.0", HISTORY)
    assert version is None
    assert "v2.0.0" in how and "v1.2.8, v1.2.9, v1.9.2, v1.10.0" in how


def test_previous_when_live_is_unknown() -> None:
    version, how = resolve_target(PREVIOUS, None, HISTORY)
    assert version is None
    assert "could not be read" in how


def test_previous_with_empty_history() -> None:
    version, how = resolve_target(PREVIOUS, "v1", [])
    assert version is None
    assert "none" in how


def test_a_named_version_is_passed_through_unchecked() -> None:
    # Whether it exists is the preflight's "target-exists" finding, not resolve_target's.
    assert resolve_target("v9.9.9", "v1.10.0", HISTORY) == ("v9.9.9", "requested v9.9.9")
    assert resolve_target("v1.2.9", None, [])[0] == "v1.2.9"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("v1.2.9", "1.2.9", True),
        ("V1.2.9", "v1.2.9", True),
        ("v1.2.9\n", "v1.2.9", True),  # a version endpoint's body with a trailing newline
        ("v1.2.9", "v1.2.90", False),
        ("v1.2.9", "v1.2.8", False),
        ("vnext", "next", False),  # only a "v" before a digit is a prefix
        (None, "v1.2.9", False),
        (None, None, False),
    ],
)
def test_same_version(a: str | None, b: str | None, same: bool) -> None:
    assert same_version(a, b) is same
    assert same_version(b, a) is same


@pytest.mark.parametrize("requested", ["revision:1", "revision:42", "previous", "v1.2.9"])
def test_a_revision_number_is_a_target_where_the_driver_has_revisions(requested: str) -> None:
    assert requested_problem(requested, kind="kubernetes", accepts_revisions=True) is None


@pytest.mark.parametrize("requested", ["revision:", "revision:x", "revision:1.2", "revision: 1", "revision:1\n"])
def test_only_revision_and_digits_is_a_revision(requested: str) -> None:
    problem = requested_problem(requested, kind="kubernetes", accepts_revisions=True)
    assert problem is not None and "revision:<number> (e.g. revision:3)" in problem


def test_a_revision_number_is_refused_where_the_driver_has_none() -> None:
    problem = requested_problem("revision:2", kind="symlink", accepts_revisions=False)
    assert problem == (
        "'revision:2' names a revision number, which a 'symlink' target does not have: "
        "use a plain version (e.g. v1.2.9) or 'previous'"
    )
    assert "or 'previous'" in (requested_problem("v1;id", kind="symlink", accepts_revisions=False) or "")


@pytest.mark.parametrize(
    ("version", "than", "newer"),
    [
        ("v1.3.0", "v1.2.9", True),
        ("v1.10.0", "v1.9.2", True),  # as versions, not as text
        ("1.3.0", "v1.2.9", True),
        ("v1.3.0", "v1.3.0-rc.1", True),
        ("v1.2.9", "v1.3.0", False),
        ("v1.2.9", "1.2.9", False),
        ("latest", "v1.2.9", False),  # not a version: cannot tell, so not called a roll forward
        ("v1.3.0", "latest", False),
        ("v1.3.0", None, False),
        (None, "v1.2.9", False),
    ],
)
def test_is_newer(version: str | None, than: str | None, newer: bool) -> None:
    assert is_newer(version, than) is newer
