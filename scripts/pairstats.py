"""Shared by the paired-comparison scripts (imbalance-pairs.py, imbalance-features.py,
centroid-cv-check.py): the mean of a list of differences and its standard error."""
import math


def mean_se(d):
    """Mean of `d` and its standard error (sample SD / sqrt(n)); the SE is NaN for one value."""
    n = len(d)
    m = sum(d) / n
    se = math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1) / n) if n > 1 else float("nan")
    return m, se


def pair_summary(v):
    """For pairs (x, y): their number, the mean x, the mean y, and the mean of y - x with its SE."""
    n = len(v)
    m, se = mean_se([y - x for x, y in v])
    return n, sum(x for x, _ in v) / n, sum(y for _, y in v) / n, m, se
