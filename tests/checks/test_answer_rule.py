"""The decision rule on answers, tested as a rule: simulated verifies with a seeded generator.

For any share of wrong answers at or above ``detect_share``, a verify that passes only when all of
its ``answers_needed`` answers are right passes at most ``1 - confidence`` of the time.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollback_harness.rollback.sampling import answers_needed, judge_answers

VERIFIES = 2000


def simulated_pass_rate(share: float, needed: int, rng: random.Random) -> float:
    """The share of ``VERIFIES`` simulated verifies that pass, each of ``needed`` answers."""
    passes = 0
    for _ in range(VERIFIES):
        wrong = sum(1 for _ in range(needed) if rng.random() < share)
        passes += judge_answers(needed - wrong, wrong, needed) == "passed"
    return passes / VERIFIES


def sampling_error(p: float) -> float:
    """Four standard errors of a rate measured over ``VERIFIES`` trials (a false alarm about 1 in 30,000)."""
    return 4 * math.sqrt(max(p * (1 - p), 1e-9) / VERIFIES)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    detect_share=st.floats(min_value=0.05, max_value=0.5),
    confidence=st.sampled_from([0.8, 0.9, 0.95, 0.99]),
    excess=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_a_share_at_or_above_detect_share_passes_at_most_one_minus_confidence(
    detect_share: float, confidence: float, excess: float, seed: int
) -> None:
    share = detect_share + excess * (1 - detect_share) / 2  # anywhere from detect_share up
    needed = answers_needed(detect_share, confidence)
    rate = simulated_pass_rate(share, needed, random.Random(seed))
    alpha = 1 - confidence
    assert rate <= alpha + sampling_error(alpha), (share, needed, rate)


def test_a_share_below_detect_share_may_pass_and_none_always_passes() -> None:
    rng = random.Random(16)
    needed = answers_needed(0.05, 0.95)
    assert simulated_pass_rate(0.0, needed, rng) == 1.0
    # One in a hundred is below what the defaults promise to catch: it passes often (0.99^59 = 55 %).
    assert 0.45 < simulated_pass_rate(0.01, needed, rng) < 0.65


@pytest.mark.parametrize(
    ("detect_share", "confidence", "answers"),
    [(0.05, 0.95, 59), (0.1, 0.95, 29), (0.1, 0.99, 44), (0.01, 0.95, 299), (0.2, 0.9, 11), (0.5, 0.95, 5)],
)
def test_the_documented_table(detect_share: float, confidence: float, answers: int) -> None:
    assert answers_needed(detect_share, confidence) == answers
    assert (1 - detect_share) ** answers <= 1 - confidence < (1 - detect_share) ** (answers - 1)


def test_one_wrong_answer_fails_whatever_came_before_and_too_few_cannot_tell() -> None:
    assert judge_answers(1000, 1, 59) == "failed"
    assert judge_answers(59, 0, 59) == "passed"
    assert judge_answers(58, 0, 59) == "inconclusive"
    with pytest.raises(ValueError, match="detect_share"):
        answers_needed(0.0, 0.95)
