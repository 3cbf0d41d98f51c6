"""What a swarm service ran before, by the harness's own records: Swarm keeps one level of history
(PreviousSpec), the journals of earlier runs remember the rest.

Reads files only: the driver adds PreviousSpec and Spec from the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..journal import Journal
from ..resume import read_record
from .swarm_engine import split_image
from .swarm_settings import STEP_WAIT


def recorded_versions(base_dir: Path, kind: str, service_id: str) -> list[str]:
    """Versions this service (this very one: same id) ran by the journals the harness's records name.

    A record (``.rollback-<target>.state.json`` beside the config) names its run's journal; that
    journal describes the service before the run (image, previous image) and says which version
    a finished wait saw every task run. Unreadable records and journals are skipped.
    """
    found: list[tuple[str, list[str]]] = []
    for path in sorted(base_dir.glob(".rollback-*.state.json")):
        record, _ = read_record(path)
        journal = record.get("journal") if record else None
        if record is None or not isinstance(journal, str) or not Path(journal).is_file():
            continue
        versions = versions_in_journal(Journal(Path(journal)).entries(), kind, service_id)
        if versions:
            found.append((str(record.get("started") or ""), versions))
    return [version for _, versions in sorted(found) for version in versions]


def versions_in_journal(entries: list[dict[str, Any]], kind: str, service_id: str) -> list[str]:
    """The service's image and previous image as the run found them, then each version a wait saw done."""
    described = next((e for e in entries if e.get("step") == "target" and e.get("status") == "described"), None)
    if described is None or described.get("kind") != kind or described.get("service_id") != service_id:
        return []
    versions = [split_image(str(described.get(key) or ""))[1] for key in ("previous_image", "image")]
    waiting: str | None = None
    for entry in entries:
        if entry.get("step") == STEP_WAIT and entry.get("status") == "started":
            waiting = entry.get("version")
        elif entry.get("step") == STEP_WAIT and entry.get("status") == "done" and waiting:
            versions.append(waiting)  # every task ran it and Swarm said the update completed
    return [version for version in versions if version]
