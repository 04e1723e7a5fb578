#!/usr/bin/env python3
"""Golden file for position-embedding resampling, produced by PyPI torch + timm (float32, CPU).

    python scripts/make_resample_golden.py      # writes data/golden/resample/pos_embed_resample.safetensors

ViTMerge resamples a checkpoint's pos_embed once at load time when its patch grid differs from
the model config's, as timm's `resample_abs_pos_embed` with interpolation "bicubic",
antialias False and the prefix rows kept: rows [0, prefix) are copied, the rest is a square
old grid (row-major) resized to the new grid with F.interpolate(mode="bicubic",
align_corners=False, antialias=False).  prefix = num_prefix_tokens (class + register tokens),
or 0 with no_embed_class (pos_embed then has no prefix rows), as timm's checkpoint_filter_fn.

Tensors, for every case NAME in the metadata `cases` (a JSON list of objects with name, prefix,
from [H, W], to [H, W], dim, via):
    NAME.input   [1, prefix + H0*W0, D]   pos_embed before (N(0, 1) from a seeded generator)
    NAME.output  [1, prefix + H1*W1, D]   after
`via` is "resample_abs_pos_embed" (the function, called directly) or "checkpoint_filter_fn" (a
VisionTransformer at the new img_size loading a state dict made at the old one, through timm's
checkpoint_filter_fn with antialias=False; the model's config is in the case as `model`).
Python is only used here, never at run time of ViTMerge.
"""
import json
import os

import torch
from safetensors.torch import save_file

import timm
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "data", "golden", "resample", "pos_embed_resample.safetensors")

# name -> (prefix, old grid, new grid, dim): up, down, non-square target, large factor
FUNCTION_CASES = {
    "up_cls": (1, (4, 4), (6, 6), 8),
    "down_noprefix": (0, (5, 5), (3, 3), 5),
    "nonsquare_reg4": (5, (3, 3), (4, 7), 3),
    "up_x4": (0, (2, 2), (9, 9), 4),
}
# name -> VisionTransformer args shared by the old and the new model (img_size differs)
MODEL_CASES = {
    "filter_reg2": dict(patch_size=4, embed_dim=8, depth=1, num_heads=2, num_classes=3,
                        class_token=True, reg_tokens=2, no_embed_class=False),
    "filter_reg2_noembed": dict(patch_size=4, embed_dim=8, depth=1, num_heads=2, num_classes=3,
                                class_token=True, reg_tokens=2, no_embed_class=True),
}
MODEL_SIZES = (16, 24)  # img_size before and after: grid 4x4 -> 6x6


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(17)
    tensors, cases = {}, []
    for name, (prefix, old, new, dim) in FUNCTION_CASES.items():
        x = torch.randn(1, prefix + old[0] * old[1], dim, generator=g)
        y = resample_abs_pos_embed(x, new_size=list(new), old_size=list(old), num_prefix_tokens=prefix,
                                   interpolation="bicubic", antialias=False)
        tensors[name + ".input"], tensors[name + ".output"] = x, y.contiguous()
        cases.append(dict(name=name, prefix=prefix, **{"from": list(old)}, to=list(new), dim=dim,
                          via="resample_abs_pos_embed"))
    for name, args in MODEL_CASES.items():
        small = VisionTransformer(img_size=MODEL_SIZES[0], **args)
        large = VisionTransformer(img_size=MODEL_SIZES[1], **args)
        sd = small.state_dict()
        with torch.no_grad():
            sd["pos_embed"] = torch.randn(sd["pos_embed"].shape, generator=g)
        filtered = checkpoint_filter_fn(dict(sd), large, antialias=False)
        large.load_state_dict(filtered, strict=True)
        prefix = 0 if args["no_embed_class"] else large.num_prefix_tokens
        old, new = small.patch_embed.grid_size, large.patch_embed.grid_size
        tensors[name + ".input"] = sd["pos_embed"].contiguous()
        tensors[name + ".output"] = large.pos_embed.detach().contiguous()
        # the function with the same arguments gives the same tensor (the filter adds nothing)
        direct = resample_abs_pos_embed(sd["pos_embed"], new_size=list(new), num_prefix_tokens=prefix,
                                        interpolation="bicubic", antialias=False)
        assert torch.equal(direct, large.pos_embed.detach()), name
        model = dict(args, img_size=list(MODEL_SIZES))
        cases.append(dict(name=name, prefix=prefix, **{"from": list(old)}, to=list(new),
                          dim=args["embed_dim"], via="checkpoint_filter_fn", model=model))
    meta = {"format": "vitmerge-resample-golden", "version": "1", "cases": json.dumps(cases),
            "interpolation": "bicubic", "antialias": "false", "align_corners": "false",
            "torch_version": torch.__version__, "timm_version": timm.__version__}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata=meta)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
