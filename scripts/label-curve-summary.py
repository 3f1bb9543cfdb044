#!/usr/bin/env python3
"""Summarise scripts/label-curve-trial.sh: per pair of tasks (S and 2S images a class), the label
curve's predicted gain against the nearest-centroid probe's and the fine-tune's measured gain;
then the means, the mean absolute error, and the correlation. Usage: label-curve-summary.py OUT..."""
import json, math, sys

rows = [json.loads(l) for d in sys.argv[1:] for l in open(f"{d}/rows.jsonl") if l.strip()]
rows = [r for r in rows if r["predicted_gain"] is not None]
print("| task | shots | curve at S | probe at S | predicted gain | probe gain | fine-tune gain |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    ft = "–" if r["ft_a"] is None else f"{r['ft_b'] - r['ft_a']:+.3f}"
    print(f"| {r['key']} | {r['shots']} | {r['curve_at_shots']:.3f} | {r['probe_a']:.3f} | {r['predicted_gain']:+.3f} | {r['probe_b'] - r['probe_a']:+.3f} | {ft} |")

def stats(pairs, what):
    if len(pairs) < 2:
        return
    p = [a for a, _ in pairs]; t = [b for _, b in pairs]
    n = len(pairs); mp = sum(p) / n; mt = sum(t) / n
    mae = sum(abs(a - b) for a, b in pairs) / n
    sd_t = math.sqrt(sum((b - mt) ** 2 for b in t) / (n - 1))
    cov = sum((a - mp) * (b - mt) for a, b in pairs) / (n - 1)
    sd_p = math.sqrt(sum((a - mp) ** 2 for a in p) / (n - 1))
    r = cov / (sd_p * sd_t) if sd_p > 0 and sd_t > 0 else float("nan")
    # mean absolute error of predicting every pair's gain by the mean measured gain (a baseline)
    base = sum(abs(b - mt) for b in t) / n
    print(f"\n{what} over {n} pairs: predicted gain {mp:+.3f}, measured {mt:+.3f} (SE {sd_t / math.sqrt(n):.3f}); "
          f"mean absolute error {mae:.3f} (the measured mean for every pair: {base:.3f}); correlation {r:.2f}")

stats([(r["predicted_gain"], r["probe_b"] - r["probe_a"]) for r in rows], "Nearest-centroid probe")
stats([(r["predicted_gain"], r["ft_b"] - r["ft_a"]) for r in rows if r["ft_a"] is not None], "Standard recipe (fine-tune)")
level = [(r["curve_at_shots"], r["probe_a"]) for r in rows]
if level:
    n = len(level)
    print(f"\nThe curve's level at S against the probe's test accuracy at S: mean {sum(a for a, _ in level) / n:.3f} vs {sum(b for _, b in level) / n:.3f}, "
          f"mean absolute difference {sum(abs(a - b) for a, b in level) / n:.3f}")
