#!/usr/bin/env python3
"""numpy (OpenBLAS) SGEMM peer for vitmerge-bench.

Reads a JSON list of {"name", "transA", "transB", "m", "n", "k"} on stdin and prints a JSON list
of {"name", "gflops"}: C = op(A)·op(B) with float32 operands, op = transpose of a C-contiguous
array (a view: numpy passes the transpose flag to BLAS, no copy), output preallocated.
Thread count: set OPENBLAS_NUM_THREADS (vitmerge-bench does, per --threads entry) before start.

    echo '[{"name":"x","transA":false,"transB":true,"m":6304,"n":576,"k":192}]' | python3 scripts/bench_numpy.py
"""
import json
import sys
import time

import numpy as np


def best_time(fn, min_seconds=0.4):
    fn()
    best, total, runs = float("inf"), 0.0, 0
    while total < min_seconds or runs < 3:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, total, runs = min(best, dt), total + dt, runs + 1
    return best


def main():
    shapes = json.load(sys.stdin)
    min_seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 0.4
    rng = np.random.default_rng(1)
    out = []
    for s in shapes:
        m, n, k = s["m"], s["n"], s["k"]
        a = (rng.random((k, m) if s["transA"] else (m, k), dtype=np.float32) - 0.5)
        b = (rng.random((n, k) if s["transB"] else (k, n), dtype=np.float32) - 0.5)
        a_op = a.T if s["transA"] else a
        b_op = b.T if s["transB"] else b
        c = np.empty((m, n), dtype=np.float32)
        t = best_time(lambda: np.matmul(a_op, b_op, out=c), min_seconds)
        out.append({"name": s["name"], "gflops": 2.0 * m * n * k / t * 1e-9})
    json.dump({"numpy": np.__version__, "results": out}, sys.stdout)


if __name__ == "__main__":
    main()
