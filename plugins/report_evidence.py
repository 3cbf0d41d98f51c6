"""The evidence as the pytest layer gathers it: the run's state, the ledger and the feature modules'
parts, read into rollback/evidence_model.py, which builds the headline and lays out evidence.json.

One object per run, shared by the evidence reporter (plugins/report.py), which sets the exit code
and writes the files, and by the HTML report and the terminal summary, which show the same facts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..rollback import evidence_model as model
from ..rollback.evidence import MANIFEST_NAME
from ..rollback.runbook import preflight_finding_names
from . import exit_codes
from . import report_features as features
from .fixtures import recorded_outcome
from .items import check_specs
from .state import MODE_GATE_PREFLIGHT, MODE_GATE_VERIFY, HarnessRun


class RunEvidence:
    """The run's facts for evidence.json, the HTML summary and the terminal summary."""

    def __init__(self, run: HarnessRun, config: pytest.Config) -> None:
        self.run = run
        self.config = config
        self.redactor = run.redactor
        self.ledger = model.TestLedger()
        # Set when the session ends (plugins/report.py); None before then.
        self.exit_code: int | None = None
        # Built once when the session ends; the HTML summary shows the very same facts.
        self.final: dict[str, Any] | None = None
        # Names of the items left after -k / -m: a gate deselected there is a relaxed guard.
        self.selected_names: set[str] = set()

    def headline(self) -> str:
        """The run's verdict in one line: the model's, told the whole story by the gates."""
        run = self.run
        facts = model.RunFacts(
            service=run.config.settings.service.name,
            requested=run.requested,
            gate={MODE_GATE_VERIFY: "verify", MODE_GATE_PREFLIGHT: "preflight"}.get(run.mode),
            rolls_back=run.rolls_back,
            dry_run=run.dry_run,
            terminated_by=run.terminated_by,
            outcome=recorded_outcome(run),
            usage_error=self.exit_code == pytest.ExitCode.USAGE_ERROR,
            interrupted=self.exit_code == pytest.ExitCode.INTERRUPTED,
        )
        base = model.headline(
            facts,
            self.ledger,
            # A fleet's steps follow, each named "target: step".
            lambda: {**model.driver_steps(run.journal.step_states()), **features.unfinished_steps(run)},
        )
        return features.headline(run, self.config, self.ledger.tests, self.exit_code, base)

    def comparisons(self) -> list[dict[str, Any]]:
        """Each check's baseline and verify result side by side (after an automatic rollback:
        deploy, then rollback), in config order."""
        return self.ledger.comparisons(features.comparison_sides(self.run, self.ledger.tests))

    def shown_evidence(self) -> dict[str, Any]:
        """The evidence as written at the session's end, or as it stands before then."""
        return self.final or self.evidence()

    def evidence(self) -> dict[str, Any]:
        run, config, tests = self.run, self.config, self.ledger.tests
        plan = next((e for e in reversed(run.journal.entries()) if e["step"] == "plan"), None)
        code = self.exit_code if self.exit_code is not None else 0
        spec = run.target_spec
        parts = model.EvidenceParts(
            leading=features.evidence_head(run, config),  # the decision and its inputs come first
            run_id=run.run_id,
            mode=run.mode,
            headline=self.headline(),
            service={"name": run.config.settings.service.name, "base_url": run.config.settings.service.base_url},
            target=model.target_section(spec.name, spec.kind, run.journal.entries()) if spec else None,
            config=str(run.config.path),
            requested=run.requested,
            expect_version=run.expect_version,
            dry_run=run.dry_run,
            outcome=recorded_outcome(run),
            plan=plan["steps"] if plan else [],
            exit={"code": code, "meaning": exit_codes.MEANINGS.get(code, "see pytest's exit codes")},
            started=run.started,
            collection_errors=self.ledger.collection_errors,
            relaxed_safety=self.relaxed_safety(),
            comparisons=self.comparisons(),
            tests=list(tests.values()),
            timeline=model.timeline(run.journal.entries(), list(tests.values())),
            gates=features.evidence_sections(run, config, tests),
            artifacts={
                "html": self.artifact(getattr(config.option, "htmlpath", None)),
                "junit": self.artifact(getattr(config.option, "xmlpath", None)),
                # A gate run that journaled nothing has no journal: only files that exist are listed.
                "journal": run.journal.path.name if run.journal.path.is_file() else None,
                "manifest": MANIFEST_NAME,
                **features.artifacts(run, config),
            },
            additions=features.evidence_tail(run, tests),  # a fleet's targets, a target's hosts
        )
        return model.evidence_document(parts)

    def relaxed_safety(self) -> list[dict[str, str]]:
        """Every setting of this run that lowered a guard, so no reader takes the result for more."""
        run, option = self.run, self.config.option
        guards = model.Guards(
            rolls_back=run.rolls_back,
            dry_run=run.dry_run,
            assume_yes=run.assume_yes,
            fast=run.fast,
            allow_data_loss=bool(run.options.get("allow_data_loss")),
        )
        chosen = [f"{flag} {value!r}" for flag, value in (("-k", option.keyword), ("-m", option.markexpr)) if value]
        chosen += [f"--deselect {value}" for value in getattr(option, "deselect", None) or []]
        selection = " ".join(chosen) or "node ids on the command line"
        feature_relaxed = features.relaxed(run, self.config)
        return model.relaxed_safety(run.config.settings, guards, feature_relaxed, self._gates_not_run(), selection)

    def _gates_not_run(self) -> list[str]:
        """The runbook's preflight and verify items that -k, -m, --deselect or node ids left out."""
        if not self.selected_names:  # collection never finished (interrupted, an error): nothing to say
            return []
        expected: list[str] = []
        for owner in self.run.fleet.values() if self.run.is_fleet else [self.run]:  # a fleet: its targets' items
            if "preflight" in owner.phases:
                expected += [f"preflight-{name}" for name in preflight_finding_names(owner.config, owner.target_spec)]
            if "verify" in owner.phases:
                expected += [f"verify-{spec.key}" for spec in check_specs(owner)]
        return [name for name in dict.fromkeys(expected) if name not in self.selected_names]

    def artifact(self, path: str | None) -> str | None:
        """A file's name inside the run folder, or its full path when the user put it elsewhere."""
        if not path:
            return None
        resolved = Path(path).resolve()
        return resolved.name if resolved.parent == self.run.run_dir.resolve() else str(resolved)
