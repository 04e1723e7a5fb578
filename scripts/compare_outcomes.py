#!/usr/bin/env python3
"""Paired differences between two experiment runs on the same test sets (e.g. `demo --precision bf16`
against `demo`), from each run's test_outcomes.json (per test image: 1 correct, 0 wrong).

For each model the two runs share (probe, aligned, full, addition.aligned, …) prints the mean test
accuracy over the tasks in A and in B and B − A in points with a paired percentile bootstrap interval:
each replicate resamples every task's test images with replacement, the same indices for A and B.
No third-party packages.

    python3 scripts/compare_outcomes.py demo-fp32 demo-bf16 [--replicates 2000] [--seed 0] [--level 0.95]
"""
import argparse
import json
import os
import random


def load(run):
    with open(os.path.join(run, "test_outcomes.json")) as f:
        data = json.load(f)
    return data["tasks"], data["models"]


def mean_accuracy(outcomes, keys, draws=None):
    """Mean over the tasks `keys` of each task's accuracy; with draws, on each task's resampled indices."""
    total = 0.0
    for j, key in enumerate(keys):
        bits = outcomes[key]
        idx = draws[j] if draws else range(len(bits))
        total += sum(bits[i] == "1" for i in idx) / len(idx)
    return total / len(keys)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="the reference run's output directory")
    ap.add_argument("b", help="the compared run's output directory")
    ap.add_argument("--replicates", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--level", type=float, default=0.95)
    args = ap.parse_args()
    tasks_a, models_a = load(args.a)
    tasks_b, models_b = load(args.b)
    if tasks_a != tasks_b:
        raise SystemExit(f"the runs have different tasks: {tasks_a} and {tasks_b}")
    for name in [m for m in models_a if m in models_b]:
        a, b = models_a[name], models_b[name]
        keys = sorted(a, key=int)  # the tasks this model was tested on (a task subset for count.*)
        if keys != sorted(b, key=int) or any(len(a[k]) != len(b[k]) for k in keys):
            raise SystemExit(f"{name}: the runs' test sets differ")
        lengths = [len(a[k]) for k in keys]
        rng = random.Random(args.seed)
        diffs = []
        for _ in range(args.replicates):
            draws = [[rng.randrange(n) for _ in range(n)] for n in lengths]
            diffs.append(mean_accuracy(b, keys, draws) - mean_accuracy(a, keys, draws))
        diffs.sort()
        lo = diffs[int((1 - args.level) / 2 * len(diffs))]
        hi = diffs[min(len(diffs) - 1, int((1 + args.level) / 2 * len(diffs)))]
        va, vb = mean_accuracy(a, keys), mean_accuracy(b, keys)
        print(f"{name:28s} A {va:.4f}  B {vb:.4f}  B - A {100 * (vb - va):+6.2f} [{100 * lo:+6.2f}, {100 * hi:+6.2f}]")


if __name__ == "__main__":
    main()
