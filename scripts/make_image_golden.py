"""Writes the committed image-folder task data/images/shapes/ and its golden file.

    /work/venv/bin/python scripts/make_image_golden.py            # task + data/images/shapes_preprocessing.safetensors
    /work/venv/bin/python scripts/make_image_golden.py --full OUT.safetensors [FILES...]
        # a larger golden (every image of the task at every config, plus FILES) for a one-off check:
        # VITMERGE_IMAGE_GOLDEN=OUT.safetensors swift test --filter ViTMergeIOTests.ImageFolderGoldenTests

The task: 3 classes (`disc`, `square`, `stripes`) of synthetic images drawn with Pillow and
encoded by Pillow's libjpeg-turbo and zlib, in every layout the loader must handle: baseline and
progressive JPEG, gray JPEG, 8-bit RGB, RGBA, gray, gray+alpha, palette (with tRNS), 2-bit gray
and 16-bit RGB PNG, odd and non-square sizes from 23 to 640 pixels. Seeded (numpy seed 0).

The golden: for each config (input size, interpolation, crop_pct, crop_mode) and file, timm's
`transforms_imagenet_eval` (the transform `create_transform(**resolve_data_config(...))` gives a
model) applied to `Image.open(f).convert("RGB")` as timm's ImageFolder loads it. Stored as u8
[3, H, W] = round(255 · (x · std + mean)), checked here to be within 1e-3 of an integer, i.e. the
exact Pillow pixels before ToTensor/Normalize; the mean/std are in the metadata for the
normalization test.
"""

import argparse
import io
import json
import os
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file
from timm.data.transforms_factory import transforms_imagenet_eval

ROOT = os.path.join(os.path.dirname(__file__), "..")
TASK = os.path.join(ROOT, "data", "images", "shapes")
GOLDEN = os.path.join(ROOT, "data", "images", "shapes_preprocessing.safetensors")
CLASSES = ["disc", "square", "stripes"]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# (name, input size, interpolation, crop_pct, crop_mode)
CONFIGS = [
    ("bicubic224", 224, "bicubic", 0.9, "center"),
    ("bicubic32", 32, "bicubic", 0.875, "center"),
    ("bilinear40", 40, "bilinear", 0.95, "center"),
    ("nearest24", 24, "nearest", 0.9, "center"),
    ("squash36", 36, "bicubic", 1.0, "squash"),
    ("pad48", 48, "bilinear", 1.2, "center"),
]
# The committed golden holds the first file of each layout (12 files) at the small sizes and one
# downscaled JPEG at 224 (150 KB); --full holds every file at every config.
GOLDEN_224 = ["train/disc/000.jpg"]

# Per image index: (width, height, encoding)
LAYOUTS = [
    (640, 480, "jpeg"), (97, 131, "png-rgba"), (200, 150, "jpeg-progressive"), (61, 61, "png-gray"),
    (300, 113, "png-palette"), (23, 40, "png-rgb"), (150, 200, "jpeg-gray"), (77, 52, "png-la"),
    (128, 96, "png-gray2"), (90, 120, "png-rgb16"), (255, 254, "jpeg"), (44, 33, "png-rgb"),
]


def draw(cls, w, h, rng):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (x / max(w - 1, 1) * 0.6 + y / max(h - 1, 1) * 0.4)[..., None]
    img = Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    fg = tuple(int(v) for v in rng.integers(0, 256, 3))
    s = min(w, h)
    cx, cy, r = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7), s * rng.uniform(0.2, 0.4)
    if cls == "disc":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif cls == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
    else:
        period = max(4, int(s * rng.uniform(0.1, 0.25)))
        for k in range(-h, w, period):
            d.line([(k, 0), (k + h, h)], fill=fg, width=max(1, period // 3))
    return img


def encode(img, kind, rng):
    buf = io.BytesIO()
    if kind.startswith("jpeg"):
        arr = np.asarray(img).astype(np.int16) + rng.integers(-6, 7, (img.height, img.width, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
        if kind == "jpeg-gray":
            img = img.convert("L")
        img.save(buf, "JPEG", quality=85, progressive=kind == "jpeg-progressive")
        return buf.getvalue(), "jpg"
    if kind == "png-rgba":
        a = Image.linear_gradient("L").resize(img.size)
        img = img.copy()
        img.putalpha(a)
    elif kind == "png-gray":
        img = img.convert("L")
    elif kind == "png-la":
        img = img.convert("LA")
    elif kind == "png-palette":
        img = img.quantize(16)
        img.info["transparency"] = 0
    elif kind == "png-gray2":
        img = img.convert("L").point(lambda v: (v // 85) * 85)
        img.save(buf, "PNG", bits=2)
        return buf.getvalue(), "png"
    elif kind == "png-rgb16":
        return png_rgb16(np.asarray(img)), "png"
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue(), "png"


def png_rgb16(rgb):
    """A 16-bit RGB PNG (Pillow cannot write one): value v → v·257 + (v & 7) so the low bytes vary."""
    import struct
    import zlib

    v = rgb.astype(np.uint16) * 257 + (rgb & 7)
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in v)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", rgb.shape[1], rgb.shape[0], 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def write_task():
    rng = np.random.default_rng(0)
    files = []
    for split, per_class in (("train", 8), ("test", 4)):
        for ci, cls in enumerate(CLASSES):
            os.makedirs(os.path.join(TASK, split, cls), exist_ok=True)
            for i in range(per_class):
                w, h, kind = LAYOUTS[(i * 5 + ci * 3 + (split == "test") * 7) % len(LAYOUTS)]
                data, ext = encode(draw(cls, w, h, rng), kind, rng)
                rel = f"{split}/{cls}/{i:03d}.{ext}"
                with open(os.path.join(TASK, rel), "wb") as f:
                    f.write(data)
                files.append((rel, kind))
    return files


def golden(paths, configs, out, names, subset=()):
    tensors, meta = {}, {"configs": [], "mean": json.dumps(MEAN), "std": json.dumps(STD)}
    for name, size, interp, pct, mode in configs:
        tf = transforms_imagenet_eval(img_size=size, interpolation=interp, crop_pct=pct, crop_mode=mode, mean=MEAN,
                                      std=STD)
        used = []
        for path, key in zip(paths, names):
            if out == GOLDEN and (key not in subset or (size == 224 and key not in GOLDEN_224)):
                continue
            with open(path, "rb") as f:
                x = tf(Image.open(f).convert("RGB"))
            u = x * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]
            u = u.double() * 255
            err = (u - u.round()).abs().max().item()
            assert err < 1e-3, (path, name, err)
            tensors[f"{name}/{key}"] = u.round().clamp(0, 255).to(torch.uint8).contiguous()
            used.append(key)
        meta["configs"].append({"name": name, "input_size": [3, size, size], "interpolation": interp,
                                "crop_pct": pct, "crop_mode": mode, "files": used})
    meta["configs"] = json.dumps(meta["configs"])
    meta["generator"] = (f"scripts/make_image_golden.py; timm {__import__('timm').__version__}, "
                         f"torchvision {__import__('torchvision').__version__}, Pillow {Image.__version__}")
    save_file(tensors, out, metadata=meta)
    print(f"{out}: {len(tensors)} images, {os.path.getsize(out) / 1024:.0f} KB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", metavar="OUT")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    layouts = write_task()
    files = [f for f, _ in layouts]
    subset = [next(f for f, k in layouts if k == kind) for kind in dict.fromkeys(k for _, k in layouts)]
    size = sum(os.path.getsize(os.path.join(TASK, f)) for f in files)
    print(f"{TASK}: {len(files)} files, {size / 1024:.0f} KB")
    paths = [os.path.join(TASK, f) for f in files] + [os.path.abspath(f) for f in args.files]
    names = files + [os.path.abspath(f) for f in args.files]
    if args.full:
        golden(paths, CONFIGS, args.full, names)
    else:
        golden(paths[:len(files)], CONFIGS, GOLDEN, names[:len(files)], subset)


if __name__ == "__main__":
    sys.exit(main())
