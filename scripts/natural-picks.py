#!/usr/bin/env python3
"""First picks among the logged linear probes on the tasks where both ImageNet baselines were
logged (docs/meta-eval/where-it-falls-short.md, "The natural-image families against Lite2's
linear probe"). Reads the meta-dataset's Parquet parts with pyarrow; with --runs DIR it also reads
the run records (run.json) under DIR for the SVM probe's own cross-validated accuracy.

    python3 scripts/natural-picks.py [--meta meta_dataset] [--runs DIR]
"""
import argparse, collections, glob, json, math, os, statistics
import pyarrow as pa, pyarrow.parquet as pq

ap = argparse.ArgumentParser()
ap.add_argument("--meta", default="meta_dataset")
ap.add_argument("--runs", default=None)
a = ap.parse_args()
cols = ["task_id", "family", "backbone", "strategy", "r_probe_depth", "r_input_size", "test_accuracy",
        "mf_logme_first", "mf_logme_mid", "mf_logme_last", "mf_ncprobe_first", "mf_ncprobe_mid", "mf_ncprobe_last", "r_name", "n_train"]
parts = glob.glob(os.path.join(a.meta, "**", "*.parquet"), recursive=True)
rows = pa.concat_tables([pq.read_table(f).select([c for c in cols if c in pq.read_schema(f).names]) for f in parts],
                        promote_options="permissive").to_pylist()


def depth(p):
    return "last" if p is None else ("first" if p < 0.25 else ("mid" if p < 0.75 else "last"))


cell, meta = collections.defaultdict(list), {}
for r in rows:
    if r["test_accuracy"] is None:
        continue
    k = (r["task_id"], f"{r['backbone']}@{r['r_input_size']}", r["r_name"])
    cell[k].append(r["test_accuracy"])
    meta[k] = r
tasks = collections.defaultdict(list)
for k, v in cell.items():
    tasks[k[0]].append((k, statistics.mean(v)))


def score(k, name):
    v = meta[k][f"mf_{name}_{depth(meta[k]['r_probe_depth'])}"]
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def cv(k):
    return score(k, "ncprobe")


def logme(k):
    return score(k, "logme")


def lite2(cs, pred):
    return [(k, x) for k, x in cs if k[1].startswith("efficientnet-lite2") and pred(k)]


T = {}
for tid, cs in tasks.items():
    accs = [x for _, x in cs]
    # the probes the anchor ranks (those with LogME), as `anchor_ranking` does
    probes = [(k, x) for k, x in cs if meta[k]["strategy"] == "linear-probe" and logme(k) is not None]
    if len(cs) < 5 or max(accs) - min(accs) < 1e-9 or not probes:
        continue
    T[tid] = (meta[cs[0][0]]["family"], max(accs), min(accs), probes, cs)
fams = sorted({t[0] for t in T.values()})
picks = collections.defaultdict(dict)
for fam in fams:
    # what the training families (all but this one) say of each configuration
    resid, dev = collections.defaultdict(list), collections.defaultdict(list)
    for f, _, _, probes, _ in T.values():
        if f == fam or any(cv(k) is None for k, _ in probes):
            continue
        m = statistics.mean(x for _, x in probes)
        for k, x in probes:
            resid[k[1:]].append(x - cv(k))
            dev[k[1:]].append(x - m)
    R = {c: statistics.mean(v) for c, v in resid.items()}
    D = {c: statistics.mean(v) for c, v in dev.items()}
    for tid, (f, best, worst, probes, cs) in T.items():
        if f != fam:
            continue
        lp = sorted(lite2(cs, lambda k: k[2] == "linear-probe"), key=lambda z: int(z[0][1].split("@")[1]))
        ft = lite2(cs, lambda k: meta[k]["strategy"] == "finetune")
        if not lp or not ft:
            continue
        p = picks[tid]
        p["Lite2 linear probe at its largest logged size (baseline)"] = lp[-1][1]
        if any(cv(k) is None for k, _ in probes):
            # a class with one image: no CV; the anchor (and every rule below) falls back to LogME
            p["LogME fallback (no CV on this task)"] = max(probes, key=lambda z: logme(z[0]))[1]
            p["best logged probe (oracle)"] = max(x for _, x in probes)
            continue
        p["best nearest-centroid CV (the anchor)"] = max(probes, key=lambda z: (cv(z[0]), logme(z[0])))[1]
        p["CV + configuration's mean (acc - CV) on training families"] = max(probes, key=lambda z: cv(z[0]) + R.get(z[0][1:], 0))[1]
        m = statistics.mean(cv(k) for k, _ in probes)
        for w in (0.3, 0.5, 0.7):
            p[f"CV shrunk to configuration means, weight {w}"] = max(probes, key=lambda z: w * cv(z[0]) + (1 - w) * (m + D.get(z[0][1:], 0)))[1]
        base = [z for z in probes if z[0] == lp[-1][0]]
        top = max(probes, key=lambda z: (cv(z[0]), logme(z[0])))
        n = meta[cs[0][0]]["n_train"] or 1
        for zz in (1, 2, 3):
            if base:
                q = (cv(top[0]) + cv(base[0][0])) / 2
                se = math.sqrt(max(q * (1 - q), 0.01) / n)
                p[f"baseline unless CV beats it by {zz} s.e."] = top[1] if cv(top[0]) - cv(base[0][0]) > zz * se else base[0][1]
        p["best logged probe (oracle)"] = max(x for _, x in probes)
print(f"{len(picks)} tasks with both ImageNet baselines")
names = list(dict.fromkeys(n for p in picks.values() for n in p))
for nm in names:
    v = [p[nm] for p in picks.values() if nm in p]
    b = [p["Lite2 linear probe at its largest logged size (baseline)"] for p in picks.values() if nm in p]
    print(f"{statistics.mean(v):.3f}  {nm} ({len(v)} tasks; baseline on them {statistics.mean(b):.3f})")
if a.runs:
    # the SVM probe's own k-fold CV accuracy (best C), from the run records
    own = collections.defaultdict(lambda: collections.defaultdict(list))
    for f in glob.glob(os.path.join(a.runs, "**", "run.json"), recursive=True):
        r = json.load(open(f))
        pr = r.get("probe") or {}
        if r.get("status") == "ok" and pr.get("cv") and r["task_id"] in picks:
            key = (f"{r['backbone']}@{r['input']['height']}", r["recipe"].get("name"))
            own[r["task_id"]][key].append(max(x for _, x in pr["cv"]))
    sel, base, anc = [], [], []
    for tid, d in own.items():
        _, _, _, probes, _ = T[tid]
        P = [(k, x) for k, x in probes if k[1:] in d]
        if len(P) < 3:
            continue
        sel.append(max(P, key=lambda z: statistics.mean(d[z[0][1:]]))[1])
        anc.append(max(P, key=lambda z: cv(z[0]))[1])
        base.append(picks[tid]["Lite2 linear probe at its largest logged size (baseline)"])
    if sel:
        print(f"on the {len(sel)} tasks with run records: SVM probe's own CV {statistics.mean(sel):.3f}, "
              f"nearest-centroid CV {statistics.mean(anc):.3f}, baseline {statistics.mean(base):.3f}")
