"""The names of the files in a run's report folder, in one place.

Every module that writes, reads, lists or prunes a run folder takes the names from here, so the
evidence, the manifest and retention cannot disagree about what a run folder holds.
"""

from __future__ import annotations

EVIDENCE = "evidence.json"  # the run's evidence (schema rollback-evidence/1)
JOURNAL = "journal.jsonl"  # the step journal: one JSON line per event, flushed as it happens
JUNIT = "junit.xml"  # pytest's JUnit XML, unless --junitxml put it elsewhere
REPORT = "report.html"  # the pytest-html report, unless --html put it elsewhere
MANIFEST = "manifest.sha256"  # SHA-256 of every other file, checked with ``sha256sum -c``
# The manifest's Ed25519 signature ([reports.signing]), written after it: the one file it does not list.
SIGNATURE = "manifest.sha256.sig"
RUN_LOCK = "run.lock"  # held while the rollback happens once per run; removed at the end, not evidence
INCIDENT = "incident.md"  # the incident report, its root cause and lessons left for people to write
STATUS = "status.md"  # a short status update for users
PROGRESS = ".progress.jsonl"  # xdist workers' progress lines for the controller; removed at the end
GATES = ".gates-{worker}.json"  # a worker's gate ids for the scheduler (``.format(worker=...)``), removed once read
TARGETS = "targets"  # a fleet run: one sub folder per target, ``targets/NAME/``
