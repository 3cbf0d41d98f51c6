"""Exit codes of a harness run, documented in the README.

pytest's own codes keep their meaning (1 tests failed, 2 interrupted, 3 internal error,
4 usage error, 5 no tests); the harness adds its own above 9 so CI can tell them apart.
"""

from __future__ import annotations

OK = 0
USAGE_ERROR = 4  # pytest.ExitCode.USAGE_ERROR: bad option or configuration, nothing ran
PREFLIGHT_REFUSED = 10  # a preflight gate failed: nothing was changed
NOT_CONFIRMED = 11  # the rollback was not confirmed (prompt answered no, or no TTY and no --rollback-yes)
ROLLBACK_FAILED = 12  # a rollback step failed: see the journal for what was done
VERIFY_FAILED = 13  # rolled back (or deployed), but a verify gate failed or none ran
CONFLICT = 14  # the target changed after preflight read it (another deploy): the run stopped before writing
# plugins/gates.py: a deploy gate with --rollback-on-failure, and --rollback-watch.
DEPLOY_ROLLED_BACK = 17  # the deploy failed its verify gate; rolled back automatically and verified
AUTO_ROLLBACK_FAILED = 18  # the deploy failed its verify gate; the automatic rollback was refused or failed
WATCH_FAILED = 19  # rolled back and verified, then a watch round failed (flapping, a late crash)
AUTO_ROLLBACK_UNVERIFIED = 20  # the deploy failed its verify gate; rolled back automatically, verify after it failed
# A fleet (--rollback-target all): some targets rolled back, another failed, conflicted or was not started.
PARTIAL = 21
# What was asked was done and verified, but its evidence (evidence.json, the HTML report, JUnit XML,
# the manifest...) could not all be written: a run with missing evidence is never a plain success.
EVIDENCE_NOT_WRITTEN = 22
# Rolled back and verified, but an action around it could not finish after verify (traffic not
# restored, a flag not reset, the CDN not invalidated): the service is right, its surroundings not yet.
ACTIONS_NOT_FINISHED = 23

MEANINGS = {
    OK: "success",
    1: "some tests failed",
    2: "interrupted",
    3: "internal error",
    USAGE_ERROR: "usage or configuration error",
    5: "no tests were collected",
    PREFLIGHT_REFUSED: "preflight refused: nothing was changed",
    NOT_CONFIRMED: "not confirmed: nothing was changed",
    ROLLBACK_FAILED: "rollback failed or not attempted: see the report for what was done",
    VERIFY_FAILED: "verify failed, or no verify gate ran",
    CONFLICT: "conflict: the target changed after preflight; the run stopped before its next write",
    DEPLOY_ROLLED_BACK: "deploy failed its verify gate: rolled back automatically and verified",
    AUTO_ROLLBACK_FAILED: "deploy failed its verify gate, and the automatic rollback was refused or failed",
    WATCH_FAILED: "rolled back and verified, but the watch after it failed (flapping or a late crash)",
    AUTO_ROLLBACK_UNVERIFIED: "deploy failed its verify gate: rolled back automatically, but verify after it failed",
    PARTIAL: "fleet partially rolled back: some targets rolled back, others failed or were not started; "
    "see each target's state",
    EVIDENCE_NOT_WRITTEN: "done and verified, but evidence could not be written (a full or read-only disk, "
    "a team's incident template that failed): the files not written are listed above",
    ACTIONS_NOT_FINISHED: "rolled back and verified, but an action could not finish after verify (traffic not "
    "restored, a flag not reset, the CDN not invalidated): the lines above say which and how to finish it",
}
