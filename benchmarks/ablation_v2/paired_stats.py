"""Paired comparison of two arms scored on the same eval samples: difference, bootstrap CI, McNemar's exact test.

Pooling over seeds: each arm has one 0/1 vector per seed over the same ordered items; seed s of an arm is paired with
seed s of the reference. The bootstrap resamples *items* (with all their seeds together), because the item is what
varies between this eval set and the next one; seeds of one item are not independent draws. McNemar's exact test
counts discordant pairs pooled over seeds, which treats those pairs as independent: it is reported beside the
bootstrap CI, and the CI is what the report's "distinguishable from zero" rests on.

numpy does the resampling; scipy's `binomtest` gives McNemar's exact p-value (McNemar's exact test is a two-sided
binomial test of the discordant pairs at p = 1/2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest


@dataclass
class PairedResult:
    n_items: int
    n_seeds: int
    acc_a: float
    acc_b: float
    diff: float  # acc_a - acc_b, pooled over items and seeds
    ci_low: float
    ci_high: float
    a_only: int  # discordant pairs: a right, b wrong (pooled over seeds)
    b_only: int
    mcnemar_p: float
    resamples: int

    @property
    def ci_width(self) -> float:
        return self.ci_high - self.ci_low

    @property
    def distinguishable(self) -> bool:
        """The 95% CI excludes zero."""
        return self.ci_low > 0 or self.ci_high < 0

    def as_dict(self) -> dict:
        return asdict(self) | {"ci_width": self.ci_width, "distinguishable": self.distinguishable}


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when there is none)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    return float(binomtest(a_only, n, 0.5, alternative="two-sided").pvalue)


def _matrix(vectors: list) -> np.ndarray:
    m = np.asarray(vectors, dtype=np.int8)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or not np.isin(m, (0, 1)).all():
        raise ValueError("each arm needs a list of 0/1 vectors (one per seed) of equal length")
    return m


def _percentile_ci(per_item: np.ndarray, denom: int, resamples: int, seed: int, level: float) -> tuple[float, float]:
    """Percentile CI of `per_item.sum() / denom` when the items are resampled with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_item), size=(resamples, len(per_item)))
    boot = per_item[idx].sum(axis=1) / denom
    tail = (1 - level) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    return float(low), float(high)


def paired_bootstrap(a: list, b: list, resamples: int = 10_000, seed: int = 0, level: float = 0.95) -> PairedResult:
    """Compare arm `a` with arm `b`: `a[s][i]` / `b[s][i]` is 1 when seed s got item i right.

    Percentile bootstrap over items; returns the pooled difference, its CI and McNemar's exact p-value.
    """
    ma, mb = _matrix(a), _matrix(b)
    if ma.shape != mb.shape:
        raise ValueError(f"paired comparison needs the same seeds × items, got {ma.shape} vs {mb.shape}")
    n_seeds, n_items = ma.shape
    if n_items == 0:
        raise ValueError("no items to compare")
    per_item = (ma.astype(np.int32) - mb).sum(axis=0)  # Σ over seeds of a - b, per item
    low, high = _percentile_ci(per_item, n_items * n_seeds, resamples, seed, level)
    a_only = int(((ma == 1) & (mb == 0)).sum())
    b_only = int(((ma == 0) & (mb == 1)).sum())
    return PairedResult(
        n_items=n_items, n_seeds=n_seeds, acc_a=float(ma.mean()), acc_b=float(mb.mean()),
        diff=float(per_item.sum() / (n_items * n_seeds)), ci_low=low, ci_high=high,
        a_only=a_only, b_only=b_only, mcnemar_p=mcnemar_exact(a_only, b_only), resamples=resamples,
    )


def accuracy_ci(vectors: list, resamples: int = 10_000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """One arm's pooled accuracy and its percentile-bootstrap CI over items (seeds of an item kept together)."""
    m = _matrix(vectors)
    if m.shape[1] == 0:
        raise ValueError("no items")
    return (float(m.mean()), *_percentile_ci(m.sum(axis=0), m.size, resamples, seed, level))


def paired_mean_difference(a: list, b: list, resamples: int = 10_000, seed: int = 0, level: float = 0.95) -> dict:
    """Compare a continuous per-item measure of arm `a` with arm `b`: `a[s][i]` is seed s's value on item i.

    The difference is the mean over seeds and items of a - b (seed s of `a` paired with seed s of `b`); its CI is the
    percentile bootstrap over items, an item's seeds resampled together (as `paired_bootstrap`). `per_seed` is each
    seed's own mean difference: the seed-to-seed spread beside the item CI.
    """
    ma, mb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if ma.ndim != 2 or ma.shape != mb.shape:
        raise ValueError(f"paired comparison needs the same seeds × items, got {ma.shape} vs {mb.shape}")
    if ma.shape[1] == 0 or not (np.isfinite(ma).all() and np.isfinite(mb).all()):
        raise ValueError("needs at least one item and finite values only")
    n_seeds, n_items = ma.shape
    per_item = (ma - mb).sum(axis=0)  # Σ over seeds of a - b, per item
    low, high = _percentile_ci(per_item, n_items * n_seeds, resamples, seed, level)
    return {"n_items": n_items, "n_seeds": n_seeds, "mean_a": float(ma.mean()), "mean_b": float(mb.mean()),
            "diff": float(per_item.sum() / (n_items * n_seeds)), "ci_low": low, "ci_high": high,
            "distinguishable": low > 0 or high < 0, "per_seed": [float(d) for d in (ma - mb).mean(axis=1)],
            "resamples": resamples}
