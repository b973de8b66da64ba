"""Statistics of a bench: mean, standard deviation, t confidence intervals, paired t-tests.

scipy answers the Student-t quantiles and tail probabilities when it is installed (it comes
with ``augreg[bench]``). Without it, the same numbers come from the closed-form series of the
Student-t distribution for integer degrees of freedom (Abramowitz & Stegun 26.7.3-4), which is
all a bench needs (degrees of freedom = seeds - 1), so a summary never depends on scipy.

Example:
    >>> s = mean_ci([80.0, 82.0, 84.0])
    >>> round(s.mean, 2), round(s.std, 2), round(s.high - s.mean, 2)
    (82.0, 2.0, 4.97)
    >>> d = paired_test([81.0, 83.0, 86.0], [80.0, 82.0, 84.0])
    >>> round(d.mean, 3), round(d.p, 3)
    (1.333, 0.074)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Estimate", "PairedTest", "mean_ci", "paired_test", "t_quantile", "t_two_sided_p"]


@dataclass(frozen=True)
class Estimate:
    """Mean of ``n`` values with sample standard deviation and a t confidence interval.

    ``std``, ``low`` and ``high`` are None with fewer than two values.
    """

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedTest:
    """Paired difference (variant minus base over the seeds both have) and its t-test.

    Attributes:
        seeds: The seeds in both.
        estimate: Mean, std and confidence interval of the differences.
        t: The t statistic (None below two pairs or with no spread).
        p: Two-sided p-value of "mean difference is 0" (None below two pairs).
    """

    seeds: tuple[int, ...]
    estimate: Estimate
    t: float | None
    p: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"seeds": list(self.seeds), **self.estimate.to_dict(), "t": self.t, "p": self.p}


def _t_central(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df`` (A&S 26.7.3 odd df, 26.7.4 even df).

    Written out because scipy is optional; the series has df/2 terms, exact in floating point.
    """
    theta = math.atan(abs(t) / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 1:
        total, term = 0.0, 1.0
        if df > 1:
            total = 1.0
            for k in range(1, (df - 1) // 2):
                term *= c2 * (2 * k) / (2 * k + 1)
                total += term
            total *= math.sin(theta) * math.cos(theta)
        return 2.0 / math.pi * (theta + total)
    total, term = 1.0, 1.0
    for k in range(1, df // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


def t_two_sided_p(t: float, df: int) -> float:
    """Two-sided tail probability P(|T| >= |t|) of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    try:
        from scipy import stats
    except ImportError:
        return max(0.0, 1.0 - _t_central(t, df))
    return float(2.0 * stats.t.sf(abs(t), df))


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (``0 < q < 1``)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    try:
        from scipy import stats
    except ImportError:
        pass
    else:
        return float(stats.t.ppf(q, df))
    if q == 0.5:
        return 0.0
    target = abs(2.0 * q - 1.0)  # central mass between -t and t
    lo, hi = 0.0, 1.0
    while _t_central(hi, df) < target:
        hi *= 2.0
    for _ in range(200):  # bisection to machine precision
        mid = 0.5 * (lo + hi)
        if _t_central(mid, df) < target:
            lo = mid
        else:
            hi = mid
    return math.copysign(0.5 * (lo + hi), q - 0.5)


def mean_ci(values: Sequence[float], level: float = 0.95) -> Estimate:
    """Mean, sample standard deviation and the t confidence interval of the mean.

    Raises:
        ValueError: no values, or ``level`` outside (0, 1).
    """
    if not values:
        raise ValueError("mean_ci needs at least one value")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Estimate(n, mean, None, None, None)
    std = statistics.stdev(values)
    half = t_quantile(0.5 + level / 2.0, n - 1) * std / math.sqrt(n)
    return Estimate(n, mean, std, mean - half, mean + half)


def paired_test(
    variant: Sequence[float],
    base: Sequence[float],
    seeds: Sequence[int] | None = None,
    level: float = 0.95,
) -> PairedTest:
    """Paired t-test of ``variant - base`` (same seeds, same order) against zero.

    Raises:
        ValueError: the sequences differ in length or are empty.
    """
    if len(variant) != len(base) or not variant:
        raise ValueError(
            f"paired_test needs two equally long, non-empty sequences, got {len(variant)} and "
            f"{len(base)}"
        )
    diffs = [v - b for v, b in zip(variant, base, strict=True)]
    est = mean_ci(diffs, level)
    seeds_t = tuple(seeds) if seeds is not None else tuple(range(len(diffs)))
    if est.n < 2 or est.std is None:
        return PairedTest(seeds_t, est, None, None)
    if est.std == 0.0:
        # No spread: the difference is exactly the same on every seed.
        return PairedTest(seeds_t, est, None, 1.0 if est.mean == 0.0 else 0.0)
    t = est.mean / (est.std / math.sqrt(est.n))
    return PairedTest(seeds_t, est, t, t_two_sided_p(t, est.n - 1))
