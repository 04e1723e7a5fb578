#!/usr/bin/env python3
"""numpy thin-SVD peer for vitmerge-bench's svd suite.

Times numpy.linalg.svd(a, full_matrices=False) (LAPACK gesdd through numpy's BLAS/LAPACK) on
uniform random float32 matrices of the shapes given as MxN arguments (default 768x768 3072x768)
and prints JSON {"numpy", "results": [{"shape", "seconds", "relative_reconstruction_error"}]}: the best of
a few runs after one warm-up. Thread count: set OPENBLAS_NUM_THREADS before start (vitmerge-bench
does, per --threads entry).

    OPENBLAS_NUM_THREADS=1 /work/venv/bin/python scripts/bench_svd_numpy.py 768x768 3072x768
"""
import json
import sys
import time

import numpy as np


def best_time(fn, min_seconds=1.0, min_runs=3):
    fn()
    best, total, runs = float("inf"), 0.0, 0
    while total < min_seconds or runs < min_runs:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, total, runs = min(best, dt), total + dt, runs + 1
    return best


def main():
    shapes = sys.argv[1:] or ["768x768", "3072x768"]
    rng = np.random.default_rng(1)
    out = []
    for s in shapes:
        m, n = (int(x) for x in s.split("x"))
        a = (2 * rng.random((m, n), dtype=np.float32) - 1)
        u, sv, vt = np.linalg.svd(a, full_matrices=False)
        err = float(np.linalg.norm(a - (u * sv) @ vt) / np.linalg.norm(a))
        t = best_time(lambda: np.linalg.svd(a, full_matrices=False))
        out.append({"shape": s, "seconds": t, "relative_reconstruction_error": err})
    json.dump({"numpy": np.__version__, "results": out}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
