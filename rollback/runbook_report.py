"""Where things stand after a failed or conflicting rollback: the live state read again, the
steps done, and the exact ways forward (run again, it resumes) and back (by hand or by a run).
"""

from __future__ import annotations

from collections import Counter

from .resume import describe_steps
from .runbook_outcome import RollbackOutcome
from .runbook_state import RunbookState


class FailureReport(RunbookState):
    def _failure_report(self, outcome: RollbackOutcome) -> str:
        """Where things stand now, read again, and the exact ways forward and back."""
        try:
            platform = self.target.live_version()
        except Exception as exc:
            platform = f"unknown ({exc})"
        answers = self._read_service_answers()
        outcome.now = {"platform": platform, "service": answers.most_common(1)[0][0], "answers": dict(answers)}
        service = self.config.settings.service.name
        parts = [
            f". Steps: {describe_steps(outcome.steps)}",
            f". Now: {self.spec.name} is on {platform}; {service} answers {self._answers_in_words(answers)}",
            f". To finish: run `pytest --rollback-to {self.to_version}` again (it resumes from here)",
        ]
        if self.from_version is not None and self._changed():
            try:
                outcome.way_back = self.target.way_back(self.from_version)
            except Exception:
                outcome.way_back = None
            by_hand = f"`{outcome.way_back}`" if outcome.way_back else "see the journal"
            back = f"`pytest --rollback-to {self.from_version}`"
            parts.append(f"; to go back to {self.from_version}: {back}, or by hand: {by_hand}")
        return "".join(parts)

    def _read_service_answers(self, count: int = 5) -> Counter[str]:
        """What the service answers now, from a few answers (``{"v1.2.9": 4, "v1.3.0": 1}``).

        One answer from a mixed pool says one version and hides the other. A request that gets
        nothing ends the reading (each is bounded by the service timeout, and this runs on a
        failure, when the engineer is waiting).
        """
        answers: Counter[str] = Counter()
        for _ in range(count):
            answer = self._read_service()
            answers[answer or self.target.context.last_answer() or "nothing"] += 1
            if answer is None:
                break
        return answers

    @staticmethod
    def _answers_in_words(answers: Counter[str]) -> str:
        """ "v1.2.9" when every answer agreed, else "v1.2.9 on 4 of 5, v1.3.0 on 1"."""
        total = sum(answers.values())
        if len(answers) == 1:
            return next(iter(answers))
        return ", ".join(f"{answer} on {n} of {total}" for answer, n in answers.most_common())
