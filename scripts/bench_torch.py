#!/usr/bin/env python3
"""PyTorch peers for `vitmerge-bench --suite vit` (run by `--torch PYTHON`, or saved for `--compare FILE`).

Measures, for each model, batch, thread count and peer, inference (eval, no_grad) and a training
step (forward, cross-entropy, backward, AdamW) in images per second, best of repeated runs after
one warm-up, the same protocol as vitmerge-bench: by default on its clock, CPU time (the calling
thread's with one thread, the process's divided by the thread count with more, so that time the
process was off the cores of a loaded machine is not counted; --clock wall for the wall clock).
The peers, what a user would pick:

    eager           timm's model as shipped: attention through fused scaled_dot_product_attention
    eager-explicit  the same with fused_attn False on every Attention module (q·kᵀ, softmax, ·v)
    compile         torch.compile(model), default mode (inductor, C++/OpenMP kernels on the CPU);
                    compiled afresh per thread count, the compile (first call) not timed but
                    reported as compile_seconds
    eager-bf16      eager under torch.autocast("cpu", dtype=torch.bfloat16) for the forward and the
                    loss (matmuls and linear layers in bfloat16, FP32 master weights and AdamW): the
                    peer of vitmerge-bench --bf16, not of its FP32 rows

A peer that fails (e.g. torch.compile without a C++ compiler) is listed under "failures" and the
others go on. The JSON: {"torch", "timm", "batch", "results": [{"name", "threads", "value", "peer",
"batch", "compile_seconds"?}], "failures": [{"name", "threads", "peer", "batch", "error"}]}; files
from before the peers (no "peer" per result) are read by vitmerge-bench as eager.

    /work/venv/bin/python scripts/bench_torch.py --threads 1,2 --out /tmp/torch.json
    /work/venv/bin/python scripts/bench_torch.py --models vit_tiny_patch16_224 --threads 1 \\
        --peers eager,compile --out /tmp/torch.json
"""
import argparse
import json
import sys
import time
import traceback

import timm
import torch

MODELS = {
    "vit_mini_patch4_28": dict(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=96, depth=6, num_heads=3),
    "vit_tiny_patch16_224": dict(img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=192, depth=12, num_heads=3),
    "vit_small_patch16_224": dict(img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=384, depth=12, num_heads=6),
    "vit_base_patch16_224": dict(img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=768, depth=12, num_heads=12),
}
# Batches per model when --batches is not given; timed runs after the warm-up (a ViT-B step at
# batch 32 is ~1.7 TFLOP, many seconds on one core, so the big models are timed fewer times).
DEFAULT_BATCHES = {"vit_base_patch16_224": (32, 64)}
MIN_RUNS = {"vit_small_patch16_224": 2, "vit_base_patch16_224": 2}
PEERS = ("eager", "eager-explicit", "compile", "eager-bf16")


def make_clock(kind, threads):
    """Seconds on vitmerge-bench's clock ("cpu") or the wall clock ("wall")."""
    if kind == "wall":
        return time.perf_counter
    if threads == 1:  # CPU work of a one-thread torch (autograd's CPU backward included) runs on this thread
        return time.thread_time
    return lambda: time.process_time() / threads


def best_time(fn, min_seconds, min_runs, clock):
    """Best time of fn over runs lasting min_seconds in total and at least min_runs, after one warm-up."""
    fn()
    best, total, runs = float("inf"), 0.0, 0
    while total < min_seconds or runs < min_runs:
        t0 = clock()
        fn()
        dt = clock() - t0
        best, total, runs = min(best, dt), total + dt, runs + 1
    return best


def make_model(cfg, peer):
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(**cfg)
    if peer == "eager-explicit":
        count = 0
        for m in model.modules():
            if hasattr(m, "fused_attn"):
                m.fused_attn = False
                count += 1
        assert count == cfg["depth"], f"expected {cfg['depth']} Attention modules, found {count}"
    return model


def measure(cfg, peer, batch, threads, min_seconds, min_runs, clock_kind):
    """(forward img/s, train step img/s, compile seconds (wall) or None) for one peer."""
    torch.set_num_threads(threads)
    clock = make_clock(clock_kind, threads)
    model = make_model(cfg, peer)
    run = model
    if peer == "eager-bf16":
        def run(inputs):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(inputs).float()
    compile_seconds = None
    if peer == "compile":
        torch._dynamo.reset()
        torch._inductor.config.cpp.threads = threads  # the OpenMP kernels' width, part of the cache key
        run = torch.compile(model)
    x = torch.rand(batch, cfg["in_chans"], cfg["img_size"], cfg["img_size"])
    y = torch.randint(0, cfg["num_classes"], (batch,))

    model.eval()
    with torch.no_grad():
        if peer == "compile":
            t0 = time.perf_counter()
            run(x)
            compile_seconds = time.perf_counter() - t0
        fwd = best_time(lambda: run(x), min_seconds, min_runs, clock)

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(run(x), y)
        loss.backward()
        opt.step()

    if peer == "compile":  # train mode and autograd: a second graph (forward + backward)
        t0 = time.perf_counter()
        step()
        compile_seconds += time.perf_counter() - t0
    train = best_time(step, min_seconds, min_runs, clock)
    return batch / fwd, batch / train, compile_seconds


def int_list(s):
    return [int(v) for v in s.split(",") if v]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated, of: " + ", ".join(MODELS))
    ap.add_argument(
        "--batches", "--batch", default=None,
        help="comma-separated batch sizes for every model (default 32, and 64 too for vit_base_patch16_224)")
    ap.add_argument("--peers", default=",".join(PEERS[:3]), help="comma-separated, of: " + ", ".join(PEERS))
    ap.add_argument("--min-seconds", type=float, default=0.4, help="minimum timed seconds per figure")
    ap.add_argument("--min-runs", type=int, default=None, help="minimum timed runs (default 3; 2 for ViT-S/B)")
    ap.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu",
        help="cpu: vitmerge-bench's clock (thread CPU time at 1 thread, process CPU time / threads above); wall")
    ap.add_argument("--out", required=True, help="JSON file to write")
    a = ap.parse_args()
    models, peers = a.models.split(","), a.peers.split(",")
    for name in models:
        if name not in MODELS:
            ap.error(f"unknown model {name!r} (known: {', '.join(MODELS)})")
    for peer in peers:
        if peer not in PEERS:
            ap.error(f"unknown peer {peer!r} (known: {', '.join(PEERS)})")
    threads = int_list(a.threads)

    results, failures = [], []
    for name in models:
        cfg = MODELS[name]
        batches = int_list(a.batches) if a.batches else DEFAULT_BATCHES.get(name, (32,))
        min_runs = a.min_runs or MIN_RUNS.get(name, 3)
        for batch in batches:
            for t in threads:
                for peer in peers:
                    where = dict(threads=t, peer=peer, batch=batch)
                    try:
                        fwd, train, compile_seconds = measure(cfg, peer, batch, t, a.min_seconds, min_runs, a.clock)
                    except Exception as e:  # report and go on with the other peers
                        traceback.print_exc(file=sys.stderr)
                        error = f"{type(e).__name__}: {e}".splitlines()[0][:500]
                        failures.append(dict(name=name, error=error, **where))
                        print(f"  torch {name} batch {batch} threads {t} {peer}: FAILED ({error})", flush=True)
                        continue
                    extra = {} if compile_seconds is None else {"compile_seconds": round(compile_seconds, 2)}
                    results.append(dict(name=f"{name} forward", value=fwd, **where, **extra))
                    results.append(dict(name=f"{name} train step", value=train, **where, **extra))
                    note = "" if compile_seconds is None else f" (compile {compile_seconds:.1f} s, not timed)"
                    print(
                        f"  torch {name} batch {batch} threads {t} {peer}: forward {fwd:.2f} img/s, "
                        f"train step {train:.2f} img/s{note}", flush=True)
    out = {
        "torch": torch.__version__, "timm": timm.__version__, "batch": int_list(a.batches)[0] if a.batches else 32,
        "clock": a.clock, "results": results, "failures": failures,
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
