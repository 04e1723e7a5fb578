#!/usr/bin/env python3
"""Golden file for position-embedding resampling, produced by PyPI torch + timm (float32, CPU).

    python scripts/make_resample_golden.py      # writes data/golden/resample/pos_embed_resample.safetensors

ViTMerge resamples a checkpoint's pos_embed once at load time when its patch grid differs from
the model config's, as timm's `resample_abs_pos_embed` with its defaults (interpolation
"bicubic", antialias True) and the prefix rows kept: rows [0, prefix) are copied, the rest is a
square old grid (row-major) resized to the new grid with F.interpolate(mode="bicubic",
align_corners=False, antialias=True).  prefix = num_prefix_tokens (class + register tokens),
or 0 with no_embed_class (pos_embed then has no prefix rows), as timm's checkpoint_filter_fn.
This is what timm.create_model(name, pretrained=True, img_size=X) loads.

Tensors, for every case NAME in the metadata `cases` (a JSON list of objects with name, prefix,
from [H, W], to [H, W], dim, via):
    NAME.input   [1, prefix + H0*W0, D]   pos_embed before (N(0, 1) from a seeded generator)
    NAME.output  [1, prefix + H1*W1, D]   after
`via` is "resample_abs_pos_embed" (the function, called directly) or "checkpoint_filter_fn" (a
VisionTransformer at the new img_size loading a state dict made at the old one, through timm's
checkpoint_filter_fn with its defaults; the model's config is in the case as `model`, with
img_size [before, after]).
Python is only used here, never at run time of ViTMerge.
"""
import inspect
import json
import os

import torch
from safetensors.torch import save_file

import timm
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "data", "golden", "resample", "pos_embed_resample.safetensors")

# name -> (prefix, old grid, new grid, dim): up, down (the filter stretched), non-square target,
# large factors both ways, and the common 14x14 <-> 16x16 (224 <-> 256 at patch 16)
FUNCTION_CASES = {
    "up_cls": (1, (4, 4), (6, 6), 8),
    "down_noprefix": (0, (5, 5), (3, 3), 5),
    "down_cls": (1, (8, 8), (5, 5), 4),
    "nonsquare_reg4": (5, (3, 3), (4, 7), 3),
    "up_x4": (0, (2, 2), (9, 9), 4),
    "down_x4_reg1": (2, (12, 12), (3, 3), 3),
    "up_14_16_cls": (1, (14, 14), (16, 16), 4),
    "down_16_14": (0, (16, 16), (14, 14), 3),
}
# name -> (VisionTransformer args shared by the old and the new model, img_size before, after)
_ARGS = dict(patch_size=4, embed_dim=8, depth=1, num_heads=2, num_classes=3, class_token=True, reg_tokens=2)
MODEL_CASES = {
    "filter_reg2": (dict(_ARGS, no_embed_class=False), 16, 24),  # grid 4x4 -> 6x6
    "filter_reg2_noembed": (dict(_ARGS, no_embed_class=True), 16, 24),
    "filter_reg2_down": (dict(_ARGS, no_embed_class=False), 28, 20),  # grid 7x7 -> 5x5
    "filter_reg2_noembed_down": (dict(_ARGS, no_embed_class=True), 28, 20),
}


def main():
    # what timm.create_model(..., pretrained=True, img_size=X) uses: the filter's own defaults
    filter_args = inspect.signature(checkpoint_filter_fn).parameters
    assert filter_args["antialias"].default is True and filter_args["interpolation"].default == "bicubic"
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(17)
    tensors, cases = {}, []
    for name, (prefix, old, new, dim) in FUNCTION_CASES.items():
        x = torch.randn(1, prefix + old[0] * old[1], dim, generator=g)
        y = resample_abs_pos_embed(x, new_size=list(new), old_size=list(old), num_prefix_tokens=prefix,
                                   interpolation="bicubic", antialias=True)
        tensors[name + ".input"], tensors[name + ".output"] = x, y.contiguous()
        cases.append(dict(name=name, prefix=prefix, **{"from": list(old)}, to=list(new), dim=dim,
                          via="resample_abs_pos_embed"))
    for name, (args, size0, size1) in MODEL_CASES.items():
        before = VisionTransformer(img_size=size0, **args)
        after = VisionTransformer(img_size=size1, **args)
        sd = before.state_dict()
        with torch.no_grad():
            sd["pos_embed"] = torch.randn(sd["pos_embed"].shape, generator=g)
        filtered = checkpoint_filter_fn(dict(sd), after)  # its defaults: bicubic, antialias True
        after.load_state_dict(filtered, strict=True)
        prefix = 0 if args["no_embed_class"] else after.num_prefix_tokens
        old, new = before.patch_embed.grid_size, after.patch_embed.grid_size
        tensors[name + ".input"] = sd["pos_embed"].contiguous()
        tensors[name + ".output"] = after.pos_embed.detach().contiguous()
        # the function with the same arguments gives the same tensor (the filter adds nothing)
        direct = resample_abs_pos_embed(sd["pos_embed"], new_size=list(new), num_prefix_tokens=prefix,
                                        interpolation="bicubic", antialias=True)
        assert torch.equal(direct, after.pos_embed.detach()), name
        model = dict(args, img_size=[size0, size1])
        cases.append(dict(name=name, prefix=prefix, **{"from": list(old)}, to=list(new),
                          dim=args["embed_dim"], via="checkpoint_filter_fn", model=model))
    meta = {"format": "vitmerge-resample-golden", "version": "1", "cases": json.dumps(cases),
            "interpolation": "bicubic", "antialias": "true", "align_corners": "false",
            "torch_version": torch.__version__, "timm_version": timm.__version__}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata=meta)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
