"""xdist: the runbook runs in one worker, in phase order; other tests spread once it is done.

Supplied through xdist's public ``pytest_xdist_make_scheduler`` hook, so no node id is rewritten
and no ``--dist`` mode is forced. The controller does not collect, so it cannot see which items
carry a gate mark: each worker writes the ids of its gates (already in phase order) to a small
file in the run folder before it reports its collection, and the scheduler reads it when that
collection arrives. The run folder is shared by design (the journal and the run lock live there).

Scheduling, with the Scheduling protocol of ``xdist/scheduler/protocol.py``:

- every gate goes, as one unit and in collection order, to the first worker;
- tests without a gate wait until the gates are done, as they do without ``-n`` (they run after
  the verify gate), then spread over all workers as ``--dist load`` would, or grouped by file or
  class for ``--dist loadfile`` / ``loadscope``;
- an xdist worker runs an item only once it knows the next one, so the gates' worker is handed
  the first other test (or told to shut down) when only its last gate is left.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ..rollback import run_files

GATES_FILE = run_files.GATES


def write_gate_ids(run_dir: Path, worker: str, ids: list[str]) -> None:
    """On a worker: the node ids of the gates, in the order they must run."""
    target = run_dir / GATES_FILE.format(worker=worker)
    partial = target.with_suffix(".part")
    partial.write_text(json.dumps(ids))
    partial.replace(target)


def read_gate_ids(run_dir: Path, worker: str) -> list[str]:
    """On the controller: what ``write_gate_ids`` wrote, removed once read (it is not evidence)."""
    path = run_dir / GATES_FILE.format(worker=worker)
    try:
        ids: list[str] = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    path.unlink(missing_ok=True)
    return ids


def _unit_key(dist: str, nodeid: str) -> str:
    """How tests without a gate are grouped, following the user's --dist."""
    if dist == "loadfile":
        return nodeid.split("::", 1)[0]
    if dist == "loadscope":
        return nodeid.rsplit("::", 1)[0]
    if dist == "loadgroup" and nodeid.rfind("@") > nodeid.rfind("]"):
        return nodeid.rsplit("@", 1)[1]
    return nodeid


class RunbookScheduling:
    """Gates on one worker in order, then everything else spread over all workers."""

    def __init__(self, config: pytest.Config, log: Any, run_dir: Path) -> None:
        from xdist.workermanage import parse_tx_spec_config

        self.config = config
        self.log = log.runbooksched if log is not None else (lambda *args: None)
        self.run_dir = run_dir
        self.numnodes = len(parse_tx_spec_config(config))
        self.dist = str(config.getoption("dist"))
        self.node2collection: dict[Any, list[str]] = {}
        self.node2pending: dict[Any, list[int]] = {}
        self.node2gates: dict[Any, list[str]] = {}
        self.collection: list[str] | None = None
        # Units of item indices, in the order they are handed out; the gates are the first one.
        self.units: list[list[int]] = []
        self.gates_left: set[int] = set()
        self.gates_node: Any = None

    # -- the Scheduling protocol -------------------------------------------------------------

    @property
    def nodes(self) -> list[Any]:
        return list(self.node2pending)

    @property
    def collection_is_completed(self) -> bool:
        return len(self.node2collection) >= self.numnodes

    @property
    def tests_finished(self) -> bool:
        if not self.collection_is_completed or self.units:
            return False
        # A worker holds its last item until it is told what comes next (or to stop).
        return all(len(pending) < 2 for pending in self.node2pending.values())

    @property
    def has_pending(self) -> bool:
        return bool(self.units) or any(self.node2pending.values())

    def add_node(self, node: Any) -> None:
        assert node not in self.node2pending
        self.node2pending[node] = []

    def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
        assert node in self.node2pending
        self.node2gates[node] = read_gate_ids(self.run_dir, node.gateway.id)
        if self.collection_is_completed and self.collection is not None and list(collection) != self.collection:
            from xdist.report import report_collection_diff

            first = next(iter(self.node2collection))
            self.log(report_collection_diff(self.collection, collection, first.gateway.id, node.gateway.id))
            return
        self.node2collection[node] = list(collection)

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        self.node2pending[node].remove(item_index)
        if item_index in self.gates_left:
            self.gates_left.discard(item_index)
            if not self.gates_left:
                # The runbook is done: everyone may take the other tests now.
                for other in self.nodes:
                    self._feed(other)
                return
        self._feed(node)

    def mark_test_pending(self, item: str) -> None:
        assert self.collection is not None
        self.units.insert(0, [self.collection.index(item)])
        for node in self.nodes:
            self._feed(node)

    def remove_pending_tests_from_node(self, node: Any, indices: Sequence[int]) -> None:
        raise NotImplementedError  # only --dist worksteal asks for this

    def remove_node(self, node: Any) -> str | None:
        pending = self.node2pending.pop(node)
        if node is self.gates_node:
            self.gates_node = None
        if not pending:
            return None
        assert self.collection is not None
        crashed = self.collection[pending.pop(0)]
        self.gates_left.discard(self.collection.index(crashed))
        # What the lost worker had not started goes back: its gates as one unit, first.
        gates = [index for index in pending if index in self.gates_left]
        others = [[index] for index in pending if index not in self.gates_left]
        self.units[:0] = ([gates] if gates else []) + others
        for other in self.nodes:
            self._feed(other)
        return crashed

    def schedule(self) -> None:
        assert self.collection_is_completed
        if self.collection is not None:
            for node in self.nodes:
                self._feed(node)
            return
        if not self._same_collections():
            self.log("**Different tests collected, aborting run**")
            return
        first = next(iter(self.node2collection))
        self.collection = self.node2collection[first]
        gates = set(self.node2gates.get(first, []))
        gate_indices = [index for index, nodeid in enumerate(self.collection) if nodeid in gates]
        self.gates_left = set(gate_indices)
        grouped: dict[str, list[int]] = {}
        for index, nodeid in enumerate(self.collection):
            if index not in self.gates_left:
                grouped.setdefault(_unit_key(self.dist, nodeid), []).append(index)
        self.units = ([gate_indices] if gate_indices else []) + list(grouped.values())
        for node in self.nodes:
            self._feed(node)

    # -- handing out work ---------------------------------------------------------------------

    def _feed(self, node: Any) -> None:
        if node.shutting_down or node not in self.node2pending:
            return
        pending = self.node2pending[node]
        if self.gates_left:
            if self.gates_node is None and self.units and self.units[0][0] in self.gates_left:
                self.gates_node = node
                self._send(node, self.units.pop(0))
            if node is not self.gates_node or len(pending) > 1:
                return  # others wait for the runbook; its worker is busy
            # Only the last gate is left: it starts once its worker knows what comes next.
            if self.units:
                self._send(node, self.units.pop(0))
            else:
                node.shutdown()
            return
        while len(pending) < 2 and self.units:
            self._send(node, self.units.pop(0))
        if not self.units:
            node.shutdown()

    def _send(self, node: Any, indices: list[int]) -> None:
        self.node2pending[node].extend(indices)
        node.send_runtest_some(indices)

    def _same_collections(self) -> bool:
        from xdist.report import report_collection_diff

        (first, collection), *others = self.node2collection.items()
        same = True
        for node, other in others:
            message = report_collection_diff(collection, other, first.gateway.id, node.gateway.id)
            if message:
                same = False
                self.log(message)
                self.config.hook.pytest_collectreport(
                    report=pytest.CollectReport(node.gateway.id, "failed", message, [])
                )
        return same
