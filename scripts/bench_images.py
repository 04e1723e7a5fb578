#!/usr/bin/env python3
"""Pillow + timm peer for `vitmerge-bench --suite images --pillow FILE`.

Measures, for the same image sets as the images suite and each worker count, images per second of
`Image.open(f).convert("RGB")` followed by timm's eval transform for ImageNet defaults (Resize of
the shorter side to 248 with bicubic, CenterCrop 224) up to the uint8 array (no ToTensor/Normalize,
as vitmerge stores u8 crops), and of decoding alone; workers are processes (multiprocessing.Pool,
as a torch DataLoader with num_workers), best of repeated runs.

    /work/venv/bin/python scripts/bench_images.py --threads 1,2 --out /tmp/pillow.json
"""
import argparse
import glob
import json
import multiprocessing
import os
import time

import numpy as np
import PIL
import timm
from PIL import Image
from timm.data import create_transform

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "images", "shapes")
TRANSFORM = None


def init():
    global TRANSFORM
    t = create_transform(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.9, is_training=False)
    TRANSFORM = type(t)(t.transforms[:2])  # Resize, CenterCrop


def both(f):
    img = Image.open(f).convert("RGB")
    return np.asarray(TRANSFORM(img)).shape


def decode(f):
    img = Image.open(f).convert("RGB")
    img.load()
    return img.size


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
    ap.add_argument("--min-seconds", type=float, default=0.4)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    files = sorted(f for f in glob.glob(os.path.join(ROOT, "**", "*"), recursive=True) if f.endswith((".png", ".jpg")))
    large = [f for f in files if Image.open(f).size == (640, 480)]
    sets = [("jpeg 640x480", large * max(1, 96 // max(len(large), 1))), ("folder mix", files * 3)]
    init()
    results = []
    for t in [int(x) for x in a.threads.split(",")]:
        with multiprocessing.Pool(t, initializer=init) as pool:
            for name, fs in sets:
                chunk = max(1, len(fs) // t)
                tb = best_time(lambda: pool.map(both, fs, chunksize=chunk), a.min_seconds)
                td = best_time(lambda: pool.map(decode, fs, chunksize=chunk), a.min_seconds)
                results.append({"name": f"decode+preprocess {name}", "threads": t, "value": len(fs) / tb})
                results.append({"name": f"decode only {name}", "threads": t, "value": len(fs) / td})
                print(f"{name} workers {t}: decode+preprocess {len(fs) / tb:.0f} img/s, decode {len(fs) / td:.0f} img/s",
                      flush=True)
    with open(a.out, "w") as f:
        json.dump({"pillow": PIL.__version__, "timm": timm.__version__, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
