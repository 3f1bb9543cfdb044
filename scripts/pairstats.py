"""Shared by the paired-comparison scripts (imbalance-pairs.py, imbalance-features.py,
centroid-cv-check.py): reading the meta-dataset's rows, a task draw's identity, a row's class
imbalance, and the mean of a list of differences with its standard error."""
import glob, json, math

import pyarrow.parquet as pq

# most over fewest training images a class from which a task counts as imbalanced (the ratio at
# which the advisor weights classes, `ClassWeightPolicy::IMBALANCE_RATIO`)
IMBALANCED = 1.5


def load_rows(meta, cols, require):
    """Every row of META's source files, with those of `cols` its file has; files lacking a
    column of `require` are skipped."""
    rows = []
    for f in sorted(glob.glob(f"{meta}/source=*/*.parquet")):
        t = pq.read_table(f)
        if not all(c in t.column_names for c in require):
            continue
        rows.extend(t.select([c for c in cols if c in t.column_names]).to_pylist())
    return rows


def draw_of(task_spec):
    """The draw a sweep task came from (family, index, draw seed, classes, shots, shift) and its
    imbalance (1 for the balanced draw); None where the spec is not JSON."""
    try:
        d = json.loads(task_spec)
    except ValueError:
        return None
    s = d["spec"]
    draw = (d["family"], d["index"], d["seed"], s["n_classes"], s["shots"], json.dumps(d["shift"], sort_keys=True))
    return draw, s.get("imbalance", 1.0)


def ratio(r):
    """A row's most over fewest training images a class."""
    return r["mf_shots_max"] / max(r["mf_shots_min"], 1)


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
