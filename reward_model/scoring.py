"""Both-order scoring and the pairwise metrics: pure functions on per-order probabilities.

For a pair (X, Y) the RM is asked twice: X shown as A (``p_a_first`` = P(A) = P(X ≻ Y | X
first)) and Y shown as A (``p_b_first`` = P(A) = P(Y ≻ X | Y first)). The score removes
position bias by averaging: p = ½·(p_a_first + 1 − p_b_first) = P(X ≻ Y).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    """P(X ≻ Y) over both orders, and each order's own probability."""

    p: float
    p_a_first: float
    p_b_first: float

    @property
    def consistent(self) -> bool:
        """The same response wins in both orders."""
        return (self.p_a_first > 0.5) == (self.p_b_first < 0.5)

    @property
    def position_gap(self) -> float:
        """|P(X ≻ Y | X first) − P(X ≻ Y | X second)|: how much the slot moves the verdict."""
        return abs(self.p_a_first - (1.0 - self.p_b_first))


def two_way_probability(logit_a: float, logit_b: float) -> float:
    """P(A) from the logits of the tokens ``A`` and ``B`` (softmax over those two only)."""
    # the logistic of the difference, written to stay finite for large gaps
    d = logit_a - logit_b
    if d >= 0:
        return 1.0 / (1.0 + math.exp(-d))
    e = math.exp(d)
    return e / (1.0 + e)


def combine(p_a_first: float, p_b_first: float) -> Comparison:
    """Average the two orders: p = ½·(P(X ≻ Y | X first) + 1 − P(Y ≻ X | Y first))."""
    for name, value in (("p_a_first", p_a_first), ("p_b_first", p_b_first)):
        if not 0.0 <= value <= 1.0 or math.isnan(value):
            raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return Comparison(0.5 * (p_a_first + 1.0 - p_b_first), p_a_first, p_b_first)


@dataclass(frozen=True)
class PairMetrics:
    """Held-out figures of a set of (chosen, rejected) comparisons."""

    n: int
    accuracy: float  # share with p(chosen ≻ rejected) > 0.5
    consistency: float  # share whose verdict is the same in both orders
    mean_gap: float  # mean |P(chosen ≻ rejected | chosen first) − P(… | chosen second)|
    first_accuracy: float  # accuracy of the chosen-first order alone
    second_accuracy: float  # accuracy of the chosen-second order alone
    mean_p_a: float  # mean P(A) over both orders: 0.5 without a prior for either slot


def pair_metrics(comparisons: Sequence[Comparison]) -> PairMetrics:
    """Metrics of comparisons whose first response is the chosen (better) one."""
    n = len(comparisons)
    if n == 0:
        raise ValueError("no comparisons to evaluate")
    return PairMetrics(
        n=n,
        accuracy=sum(c.p > 0.5 for c in comparisons) / n,
        consistency=sum(c.consistent for c in comparisons) / n,
        mean_gap=sum(c.position_gap for c in comparisons) / n,
        first_accuracy=sum(c.p_a_first > 0.5 for c in comparisons) / n,
        second_accuracy=sum(c.p_b_first < 0.5 for c in comparisons) / n,
        mean_p_a=sum(c.p_a_first + c.p_b_first for c in comparisons) / (2 * n),
    )
