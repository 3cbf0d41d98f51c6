"""Judging a percentile bound from samples, with the sampling error in view.

A bound "pQ <= L" says that at most a fraction ``1 - Q/100`` of all requests take longer than
L. Of n samples, k took longer. If the bound holds exactly, k is binomial(n, p0 = 1 - Q/100),
so the exact binomial tail tells how surprising k is:

- passed when P(X <= k | n, p0) <= 1 - confidence: so few samples over L would be unlikely if
  the true share over L were p0 or more;
- failed when P(X >= k | n, p0) <= 1 - confidence: so many would be unlikely if it were p0 or
  less;
- undecided otherwise: more samples may decide it.

Plain math (``math.lgamma`` in log space), no scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Decision = Literal["passed", "failed", "inconclusive"]


def _log_pmf(i: int, n: int, p: float) -> float:
    log_comb = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
    return log_comb + i * math.log(p) + (n - i) * math.log1p(-p)


def _log_sum(logs: list[float]) -> float:
    top = max(logs)
    return top + math.log(sum(math.exp(value - top) for value in logs))


def binomial_at_most(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ binomial(n, p), 0 < p < 1."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return min(1.0, math.exp(_log_sum([_log_pmf(i, n, p) for i in range(k + 1)])))


def binomial_at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ binomial(n, p), 0 < p < 1."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return min(1.0, math.exp(_log_sum([_log_pmf(i, n, p) for i in range(k, n + 1)])))


@dataclass(frozen=True)
class Verdict:
    """The decision on one bound, and the two tail probabilities it rests on."""

    decision: Decision
    n: int
    over: int
    p_pass: float  # P(X <= over) if exactly the allowed share were over the bound
    p_fail: float  # P(X >= over) likewise


def judge_bound(n: int, over: int, q: float, confidence: float) -> Verdict:
    """Decide "the q-th percentile is at most the bound" from ``over`` of ``n`` samples above it."""
    p0 = 1 - q / 100
    alpha = 1 - confidence
    p_pass = binomial_at_most(over, n, p0)
    p_fail = binomial_at_least(over, n, p0)
    decision: Decision = "passed" if p_pass <= alpha else "failed" if p_fail <= alpha else "inconclusive"
    return Verdict(decision, n, over, p_pass, p_fail)


def samples_to_pass(q: float, confidence: float, over: int = 0) -> int:
    """The fewest samples with which the bound passes when ``over`` of them are above it.

    With none over: the smallest n with (q/100)^n <= 1 - confidence, n = ceil(ln(1 - c) / ln(q/100));
    at 95 % confidence p50 needs 5, p95 needs 59, p99 needs 299.
    """
    alpha = 1 - confidence
    p0 = 1 - q / 100

    def passes(n: int) -> bool:
        return binomial_at_most(over, n, p0) <= alpha

    low = over  # never passes: every sample would be over the bound
    high = max(over + 1, math.ceil(math.log(alpha) / math.log(q / 100)))
    while not passes(high):
        low, high = high, high * 2
    while high - low > 1:  # passes(high), not passes(low); P(X <= over) falls as n grows
        middle = (low + high) // 2
        low, high = (low, middle) if passes(middle) else (middle, high)
    return high


@dataclass(frozen=True)
class Comparison:
    """Whether one set of latencies is worse than another (one-sided Mann-Whitney U test)."""

    worse: bool
    p_value: float  # small: the candidate is slower than the scaled baseline
    u: float
    baseline_n: int
    candidate_n: int


def mann_whitney_worse(
    baseline: list[float], candidate: list[float], *, tolerance: float, confidence: float
) -> Comparison:
    """Is ``candidate`` stochastically slower than ``baseline`` x (1 + ``tolerance``)?

    The model is Kayenta's canary judge: a Mann-Whitney U test, which needs no assumption about
    the shape of the distributions, with ties given average ranks and the normal approximation
    with tie and continuity corrections (fine from about 8 samples a side).
    """
    scaled = [value * (1 + tolerance) for value in baseline]
    n_b, n_c = len(scaled), len(candidate)
    if n_b == 0 or n_c == 0:
        raise ValueError("both sides need samples")
    combined = sorted([(value, 0) for value in scaled] + [(value, 1) for value in candidate])
    rank_sum = 0.0
    ties = 0.0
    i = 0
    while i < len(combined):
        j = i
        while j + 1 < len(combined) and combined[j + 1][0] == combined[i][0]:
            j += 1
        average_rank = (i + j) / 2 + 1
        rank_sum += average_rank * sum(1 for k in range(i, j + 1) if combined[k][1] == 1)
        size = j - i + 1
        ties += size**3 - size
        i = j + 1
    n = n_b + n_c
    u = rank_sum - n_c * (n_c + 1) / 2
    mean = n_b * n_c / 2
    variance = n_b * n_c / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        p_value = 1.0 if u <= mean else 0.0
    else:
        z = (u - mean - 0.5) / math.sqrt(variance)
        p_value = 0.5 * math.erfc(z / math.sqrt(2))
    return Comparison(p_value <= 1 - confidence, p_value, u, n_b, n_c)


def answers_needed(detect_share: float, confidence: float) -> int:
    """How many answers, none of them wrong, rule out a share ``detect_share`` of wrong ones.

    If a share s of the answers is wrong (one stuck replica in twenty: s = 0.05), n answers all
    come back right with probability (1 - s)^n. Passing only when none is wrong keeps that at
    most 1 - confidence for every s >= ``detect_share`` when n = ceil(ln(1 - c) / ln(1 - s)):
    59 at 0.05 and 95 %, 29 at 0.1 and 95 %, 44 at 0.1 and 99 %.
    """
    if not 0 < detect_share < 1:
        raise ValueError(f"detect_share must be between 0 and 1, got {detect_share}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    # The float division lands a hair above a whole number at times (ln 0.05 / ln 0.95 is
    # 58.40..., fine; others are not): round first so an exact n is not pushed to n + 1.
    return max(1, math.ceil(round(math.log(1 - confidence) / math.log(1 - detect_share), 9)))


def judge_answers(right: int, wrong: int, needed: int) -> Decision:
    """Any wrong answer fails; ``needed`` right ones with none wrong pass; fewer cannot tell.

    A streak of right answers never outvotes a wrong one: a replica that answered wrong once is
    still there, whatever its neighbours said before and after.
    """
    if wrong > 0:
        return "failed"
    return "passed" if right >= needed else "inconclusive"
