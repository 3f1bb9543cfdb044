#!/usr/bin/env python3
"""Which transferability meta-features carry signal here? For each sampled task, every
(backbone, cut group) candidate is fine-tuned (groups up to the cut transferred and fine-tuned,
groups above it and the head re-initialised) and scored by `graft inspect` (LogME, H-score,
nearest-centroid probe at the cut group; LEEP and NCE of the backbone's source head). Reports
Kendall's tau between each score and the fine-tuned test accuracy per task (the way TLlib
reports it), averaged over tasks. Every run is appended to the meta-dataset folder given.

    python3 scripts/transferability_study.py --tasks 20 --out docs/transferability.md
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

from scipy.stats import kendalltau

G = os.environ.get("GRAFT", "./target/release/graft")
FAMILIES = {"cifar10": "data/cifar10", "fashion-mnist": "data/fashion-mnist", "mnist": "data/mnist", "animal-mnist": "data/animal-mnist"}


def sh(args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{r.stderr}")
    return r.stdout


def recipe(groups, cut, epochs, seed):
    g = {}
    for i, name in enumerate(groups[:-1]):
        g[name] = {"action": "finetune" if i <= cut else "reinit"}
    g[groups[-1]] = {"action": "reinit"}
    return {"schema_version": 1, "name": f"cut-{groups[cut]}", "strategy": "finetune", "default_action": "finetune", "lr": 1e-3,
            "groups": g, "epochs": epochs, "batch_size": 32, "seed": seed, "augment": {"crop_padding": 2}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--backbones", default="resnet8-cifar10,convnet4-mnist,convnet4-fashion,convnet4-animal")
    ap.add_argument("--cuts", default="1,2,3")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--work", default="data/study")
    ap.add_argument("--meta", default="data/study/meta")
    ap.add_argument("--out", default="docs/transferability.md")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    backbones = a.backbones.split(",")
    cards = {m["name"]: m for m in json.loads(sh([G, "models", "--json"]))["models"]}
    cuts = [int(c) for c in a.cuts.split(",")]
    rows = []
    t_start = time.time()
    fams = list(FAMILIES)
    for t in range(a.tasks):
        fam = fams[t % len(fams)]
        k = rng.choice([2, 3, 5, 10])
        shots = rng.choice([5, 10, 20, 40])
        tid = f"{fam}-k{k}-s{shots}-t{t}"
        tdir = os.path.join(a.work, "tasks", tid)
        if not os.path.isdir(tdir):
            sh([G, "task", "--data", FAMILIES[fam], "--n-classes", str(k), "--shots", str(shots), "--test-per-class", "100",
                "--seed", str(a.seed * 1000 + t), "--out", tdir])
        for b in backbones:
            ins = json.loads(sh([G, "inspect", "--data", tdir, "--backbone", b, "--json"]))
            groups = cards[b]["groups"]
            for c in cuts:
                rp = os.path.join(a.work, f"recipe-{tid}-{b}-{c}.json")
                with open(rp, "w") as f:
                    json.dump(recipe(groups, c, a.epochs, t), f)
                run = json.loads(sh([G, "run", "--data", tdir, "--recipe", rp, "--backbone", b, "--json", "--meta", a.meta,
                                     "--runs", os.path.join(a.work, "runs"), "--family", fam, "--task-id", tid]))
                gs = ins["groups"][c]
                rows.append({"task": tid, "family": fam, "backbone": b, "cut": groups[c], "acc": run["test_accuracy"],
                             "logme": gs["logme"], "hscore": gs["hscore"], "probe": gs["probe_accuracy"] or 0.0,
                             "leep": ins["leep"], "nce": ins["nce"], "frechet": ins["frechet_distance"], "seconds": run["train_seconds"]})
                print(f"{tid} {b} cut={groups[c]} acc={run['test_accuracy']:.3f} logme={gs['logme']:.3f}", file=sys.stderr)
    with open(os.path.join(a.work, "study.json"), "w") as f:
        json.dump(rows, f, indent=1)
    metrics = ["logme", "hscore", "probe", "leep", "nce", "frechet"]
    taus = {m: [] for m in metrics}
    for tid in sorted({r["task"] for r in rows}):
        rs = [r for r in rows if r["task"] == tid]
        for m in metrics:
            vals = [r[m] for r in rs]
            if any(v is None for v in vals):
                continue
            sign = -1 if m == "frechet" else 1  # smaller distance should mean better transfer
            tau, _ = kendalltau([sign * v for v in vals], [r["acc"] for r in rs])
            if tau == tau:  # not NaN
                taus[m].append(tau)
    lines = ["# Transferability meta-features vs fine-tuned accuracy", "",
             f"Command: `python3 scripts/transferability_study.py --tasks {a.tasks} --epochs {a.epochs} --cuts {a.cuts} --backbones {a.backbones}`", "",
             f"{len({r['task'] for r in rows})} tasks from {len({r['family'] for r in rows})} families (2-10 classes, 5-40 shots, 100 test images per class), "
             f"{len(backbones)} backbones x cut groups {a.cuts} = {len(backbones) * len(cuts)} candidates per task, {len(rows)} fine-tuning runs "
             f"({a.epochs} epochs, AdamW 1e-3; groups above the cut and the head re-initialised), total {time.time() - t_start:.0f} s wall time.", "",
             "Kendall's tau between each score and the test accuracy, per task over its candidates, then averaged "
             "(LEEP and NCE do not depend on the cut, so they only rank backbones; the Fréchet distance is negated).", "",
             "| metric | mean tau | median tau | tasks | tasks with tau > 0 |", "| --- | --- | --- | --- | --- |"]
    for m in metrics:
        v = sorted(taus[m])
        if v:
            lines.append(f"| {m} | {sum(v) / len(v):.3f} | {v[len(v) // 2]:.3f} | {len(v)} | {sum(1 for x in v if x > 0)} |")
    lines += ["", "Per task (accuracy of the best candidate, and which):", "", "| task | best backbone / cut | best acc | worst acc |", "| --- | --- | --- | --- |"]
    for tid in sorted({r["task"] for r in rows}):
        rs = sorted([r for r in rows if r["task"] == tid], key=lambda r: -r["acc"])
        lines.append(f"| {tid} | {rs[0]['backbone']} / {rs[0]['cut']} | {rs[0]['acc']:.3f} | {rs[-1]['acc']:.3f} |")
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
