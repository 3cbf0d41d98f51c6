"""Takes a target lock in a process of its own and holds it until killed (the other run in lock tests).

    python hold_lock.py file PATH RUN_ID
    python hold_lock.py postgres URL SERVICE TARGET RUN_ID
    python hold_lock.py kubernetes KUBECONFIG NAMESPACE SERVICE TARGET RUN_ID LEASE_SECONDS

Prints ``held`` once it holds the lock (or ``refused: ...``), then waits; it never releases.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any


def make_lock(args: list[str]) -> Any:
    backend = args[0]
    if backend == "file":
        from rollback_harness.rollback.lock import TargetLock

        return TargetLock(Path(args[1]), args[2])
    if backend == "postgres":
        from rollback_harness.rollback.locks.postgres import PostgresLock

        return PostgresLock(args[1], args[2], args[3], Path(args[4] + ".lock"), args[4], timeout=5)
    from rollback_harness.rollback.locks.kubernetes import LeaseLock

    return LeaseLock(
        kubeconfig=args[1],
        context=None,
        namespace=args[2],
        service=args[3],
        target=args[4],
        path=Path(args[5] + ".lock"),
        run_id=args[5],
        lease_duration=float(args[6]),
        timeout=5,
    )


def main() -> None:
    lock = make_lock(sys.argv[1:])
    refused = lock.acquire()
    print("held" if refused is None else f"refused: {refused}", flush=True)
    time.sleep(300)


if __name__ == "__main__":
    main()
