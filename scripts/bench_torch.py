#!/usr/bin/env python3
"""PyTorch eager (timm) peer for `vitmerge-bench --suite vit --compare FILE`.

Measures, for each model and thread count, batch-32 inference (eval, no_grad) and training step
(forward, cross-entropy, backward, AdamW) in images per second, best of repeated runs, the same
protocol as vitmerge-bench. timm's default attention (fused scaled_dot_product_attention) is kept:
this is the peer as users run it.

    /opt/timmvenv/bin/python scripts/bench_torch.py --threads 1,2 --out /tmp/torch.json
"""
import argparse
import json
import time

import timm
import torch

MODELS = {
    "vit_mini_patch4_28": dict(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=96, depth=6, num_heads=3),
    "vit_tiny_patch16_224": dict(img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=192, depth=12, num_heads=3),
}


def best_time(fn, min_seconds):
    fn()
    best, total, runs = float("inf"), 0.0, 0
    while total < min_seconds or runs < 3:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, total, runs = min(best, dt), total + dt, runs + 1
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--min-seconds", type=float, default=0.4)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    results = []
    for t in [int(x) for x in a.threads.split(",")]:
        torch.set_num_threads(t)
        for name in a.models.split(","):
            cfg = MODELS[name]
            torch.manual_seed(0)
            model = timm.models.vision_transformer.VisionTransformer(**cfg)
            x = torch.rand(a.batch, cfg["in_chans"], cfg["img_size"], cfg["img_size"])
            y = torch.randint(0, cfg["num_classes"], (a.batch,))
            model.eval()
            with torch.no_grad():
                fwd = best_time(lambda: model(x), a.min_seconds)
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

            def step():
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()

            train = best_time(step, a.min_seconds)
            results.append({"name": f"{name} forward", "threads": t, "value": a.batch / fwd})
            results.append({"name": f"{name} train step", "threads": t, "value": a.batch / train})
            print(f"{name} threads {t}: forward {a.batch / fwd:.1f} img/s, train step {a.batch / train:.1f} img/s", flush=True)
    with open(a.out, "w") as f:
        json.dump({"torch": torch.__version__, "timm": timm.__version__, "batch": a.batch, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
