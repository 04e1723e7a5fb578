#!/usr/bin/env python3
"""Golden reference files for ViTMerge, produced by PyPI torch + timm (float32, CPU).

Usage
-----
    python scripts/make_golden.py --config cfg.json --seed 0 --batch 3 --out data/golden/NAME.safetensors
    python scripts/make_golden.py --config cfg.json --labels 1,0,4 --out /tmp/x.safetensors
    python scripts/make_golden.py --all                  # regenerate the committed set in data/golden/
    python scripts/make_golden.py --only NAME [NAME…]    # regenerate only these entries of the set
    python scripts/make_golden.py --verify FILE [FILE…]  # re-check files (bitwise + float64 margins)

The file layout is the one of /work/shared/FORMATS.md, "Golden files"; scripts/README.md explains
every key.  Python is only used here, never at run time of ViTMerge.

What is computed (all float32 on CPU, one thread, fused attention OFF, deterministic algorithms)
------------------------------------------------------------------------------------------------
Model: timm.models.vision_transformer.VisionTransformer built from the FORMATS.md config JSON:
    img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads, mlp_ratio, qkv_bias,
    class_token, global_pool, fc_norm, pre_norm, init_values, reg_tokens, no_embed_class
                                                 -> the timm keyword arguments of the same name,
    act_layer "gelu" -> torch.nn.GELU (exact erf), "quick_gelu" -> timm.layers.QuickGELU
    (x * sigmoid(1.702 x)), norm_eps -> norm_layer = partial(torch.nn.LayerNorm, eps=norm_eps).
    Everything else is timm's default (no dropout, learned pos_embed, final_norm True).
    reg_tokens (default 0) and no_embed_class (default false) are left out of the config JSON when
    they have their default value; init_values (default null: no LayerScale) likewise.

Parameters: torch.manual_seed(seed), timm's own init, THEN every parameter is perturbed with
    seeded Gaussian noise (torch.Generator seeded with seed + 1, parameters visited in state_dict
    order) so that no bias is 0, no LayerNorm weight is 1, and activations are O(1) with clearly
    non-uniform attention:
        weights with ndim >= 2 (patch conv, Linear):  += N(0, 1) / sqrt(fan_in)
        LayerNorm weights:                            += N(0, 0.2)
        LayerNorm biases and Linear/conv biases:      += N(0, 0.1)
        cls_token, reg_token, pos_embed:              += N(0, 0.5)
    The exact values are stored in the file (`param.*`), so nobody has to reproduce this RNG.

Input: `input` = N(0, 1) of shape [B, C, H, W] from torch.Generator(seed + 2).
    `labels` = uniform integers in [0, num_classes) from the same generator (or --labels).

Loss:
    num_classes > 0: loss = mean over the batch of cross-entropy(logits, labels)
                     (torch.nn.functional.cross_entropy, reduction "mean").
    num_classes == 0 (no head): the model output is the pooled feature vector, stored as
                     `features` [B, D] (instead of `logits`), and
                         loss = mean(features * loss_weight)   (mean over all B*D elements)
                     where `loss_weight` [B, D] = N(0, 1) from torch.Generator(seed + 3) is stored
                     in the file.  `labels` is still written (zeros, unused) for uniformity.

Activations (B = batch, T = number of tokens = num_prefix_tokens + num_patches, where
num_prefix_tokens = (1 if class_token else 0) + reg_tokens; tokens are [cls, reg x R, patches],
patch tokens in row-major (h, w) order of the patch grid):
    act.patch_embed [B, T, D]  output of VisionTransformer._pos_embed: patch tokens
                               (conv -> flatten(2).transpose(1, 2)); then either the class and
                               register tokens concatenated in front and + pos_embed [1, T, D], or
                               with no_embed_class + pos_embed [1, num_patches, D] on the patches
                               first and the prefix tokens (without position) concatenated after.
                               BEFORE norm_pre (for pre_norm models the first block's input is
                               norm_pre(act.patch_embed)).
    act.blocks.{i} [B, T, D]   output of block i.
    act.norm [B, T, D]         output of `norm` on the full token sequence.  When fc_norm is true
                               timm's `norm` is Identity, so act.norm == act.blocks.{depth-1}.
    act.pooled [B, D]          after pooling ("token": token 0; "avg": mean over the patch tokens
                               only, the class and register tokens are excluded) and after fc_norm (Identity when
                               fc_norm is false), i.e. the head input.
    grad.input [B, C, H, W]    d loss / d input.

AdamW: a fresh copy of the initial parameters, torch.optim.AdamW with ONE parameter group
    (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.1 applied to every tensor, including
    biases, norms, cls_token, pos_embed; foreach=False), 10 steps on the same batch:
        for t in 1..10: adamw.loss[t-1] = loss(params); backward; step
    `adamw.param.<key>` are the parameters after the 10th step.  (adamw.loss[0] == loss.)
    ONE DEVIATION from plain torch: before every step the KEY part of each qkv bias gradient,
    grad of blocks.{i}.attn.qkv.bias[D:2D], is set to exactly 0.  That gradient is exactly zero
    in exact arithmetic (softmax is invariant to adding q·b_k to every logit of a row), but
    float32 autograd returns rounding noise of ~1e-8, which AdamW (eps 1e-8) amplifies into
    lr-sized random steps; no other implementation could then match `adamw.param` within
    1e-4.  With the slice zeroed, that part of the bias only decays (p *= 1 - lr*wd per step).
    An implementation must do the same (zero that slice of the gradient before its AdamW
    update) to reproduce `adamw.param`.  Metadata `adamw_zero_grad` records this.
    `grad.<key>` itself is torch's raw autograd value (the slice is ~1e-8, i.e. 0 within the
    gradient tolerance).

JVP: `jvp.tangent.<key>` = N(0, 1) * 0.1 from torch.Generator(seed + 4) for every parameter, and
    `jvp.logits` [B, K] = J·v of the logits w.r.t. the parameters at the initial parameters
    (torch.func.jvp over torch.func.functional_call; input and labels are not perturbed).
    For num_classes == 0 the same is done for the pooled features and stored as `jvp.features`
    [B, D].
"""
import argparse
import copy
import functools
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import safetensors
from safetensors.torch import load_file, save_file
from safetensors import safe_open

import timm
from timm.layers import QuickGELU, set_fused_attn
from timm.models.vision_transformer import VisionTransformer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN_DIR = os.path.join(REPO, "data", "golden")

# FORMATS.md config keys, in the documented order, with timm's defaults where a key may be omitted.
CONFIG_KEYS = ["img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth",
               "num_heads", "mlp_ratio", "qkv_bias", "class_token", "global_pool", "fc_norm",
               "pre_norm", "act_layer", "norm_eps", "init_values", "reg_tokens", "no_embed_class"]
DEFAULTS = {"in_chans": 3, "mlp_ratio": 4.0, "qkv_bias": True, "class_token": True,
            "global_pool": "token", "pre_norm": False, "act_layer": "gelu", "norm_eps": 1e-6,
            "init_values": None, "reg_tokens": 0, "no_embed_class": False}
# Optional keys written to the config JSON only when they differ from their default.
OMIT_AT_DEFAULT = ["init_values", "reg_tokens", "no_embed_class"]
REQUIRED = ["img_size", "patch_size", "num_classes", "embed_dim", "depth", "num_heads"]

ADAMW = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.1,
         "steps": 10, "decay_1d_params": True}

# FORMATS.md tolerances |a - b| <= atol + rtol * |b|, used for the float64 self-check.
TOLS = {"act": (1e-5, 1e-4), "grad": (1e-5, 1e-3), "adamw": (1e-4, 1e-3)}

# The committed golden set: name -> (config, batch, seed).
GOLDEN_SET = {
    # plain timm ViT: class token pooling, norm before pooling, exact GELU, RGB
    "vit_token_gelu": (dict(img_size=16, patch_size=4, in_chans=3, num_classes=10, embed_dim=32,
                            depth=2, num_heads=4, mlp_ratio=4.0, qkv_bias=True, class_token=True,
                            global_pool="token", fc_norm=False, pre_norm=False, act_layer="gelu",
                            norm_eps=1e-6), 3, 0),
    # MNIST-shaped: 1 channel, 28x28, patch 7, head_dim 12
    "vit_mnist_c1": (dict(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=24,
                          depth=2, num_heads=2, mlp_ratio=4.0, qkv_bias=True, class_token=True,
                          global_pool="token", fc_norm=False, pre_norm=False, act_layer="gelu",
                          norm_eps=1e-6), 4, 1),
    # average pooling over patch tokens (class token present but excluded), fc_norm after pooling
    "vit_avg_fcnorm": (dict(img_size=16, patch_size=4, in_chans=3, num_classes=7, embed_dim=32,
                            depth=2, num_heads=4, mlp_ratio=4.0, qkv_bias=True, class_token=True,
                            global_pool="avg", fc_norm=True, pre_norm=False, act_layer="gelu",
                            norm_eps=1e-6), 3, 2),
    # CLIP-like: norm_pre, no patch bias, QuickGELU, LayerNorm eps 1e-5, depth 3
    "vit_clip_prenorm": (dict(img_size=16, patch_size=4, in_chans=3, num_classes=5, embed_dim=32,
                              depth=3, num_heads=4, mlp_ratio=4.0, qkv_bias=True, class_token=True,
                              global_pool="token", fc_norm=False, pre_norm=True,
                              act_layer="quick_gelu", norm_eps=1e-5), 2, 3),
    # non-square image [H, W] = [24, 32] -> 3 x 4 patch grid; head_dim 10 (not a multiple of 8)
    "vit_nonsquare_hd10": (dict(img_size=[24, 32], patch_size=8, in_chans=3, num_classes=6,
                                embed_dim=30, depth=2, num_heads=3, mlp_ratio=4.0, qkv_bias=True,
                                class_token=True, global_pool="token", fc_norm=False,
                                pre_norm=False, act_layer="gelu", norm_eps=1e-6), 3, 4),
    # mlp hidden = int(30 * 2.66) = int(79.8) = 79 (timm truncates); head_dim 6; token pooling
    # with fc_norm true (norm after pooling, `norm` is Identity)
    "vit_odd_mlp": (dict(img_size=20, patch_size=5, in_chans=3, num_classes=4, embed_dim=30,
                         depth=2, num_heads=5, mlp_ratio=2.66, qkv_bias=True, class_token=True,
                         global_pool="token", fc_norm=True, pre_norm=False, act_layer="gelu",
                         norm_eps=1e-6), 3, 5),
    # no head: output = pooled features, loss = mean(features * loss_weight)
    "vit_features_only": (dict(img_size=16, patch_size=4, in_chans=3, num_classes=0, embed_dim=24,
                               depth=2, num_heads=3, mlp_ratio=4.0, qkv_bias=True,
                               class_token=True, global_pool="token", fc_norm=False,
                               pre_norm=False, act_layer="gelu", norm_eps=1e-6), 3, 6),
    # no class token, avg pooling + fc_norm, qkv without bias, 1 channel, patch 3
    "vit_noclass_avg": (dict(img_size=12, patch_size=3, in_chans=1, num_classes=3, embed_dim=24,
                             depth=2, num_heads=2, mlp_ratio=4.0, qkv_bias=False,
                             class_token=False, global_pool="avg", fc_norm=True, pre_norm=False,
                             act_layer="gelu", norm_eps=1e-6), 3, 7),
    # LayerScale (init_values, as DeiT-III and DINOv2) on both branches; γ perturbed around 0.5
    "vit_layerscale": (dict(img_size=16, patch_size=4, in_chans=3, num_classes=5, embed_dim=24,
                            depth=2, num_heads=3, mlp_ratio=4.0, qkv_bias=True, class_token=True,
                            global_pool="token", fc_norm=False, pre_norm=False, act_layer="gelu",
                            norm_eps=1e-6, init_values=0.5), 3, 9),
    # register tokens (DINOv2-reg) with pos_embed on the patches only (no_embed_class, DeiT-III):
    # tokens [cls, reg0, reg1, patches], cls/reg without position; token pooling; LayerScale
    "vit_reg2_noembed_token": (dict(img_size=16, patch_size=4, in_chans=3, num_classes=5,
                                    embed_dim=24, depth=2, num_heads=3, mlp_ratio=4.0,
                                    qkv_bias=True, class_token=True, global_pool="token",
                                    fc_norm=False, pre_norm=False, act_layer="gelu",
                                    norm_eps=1e-6, init_values=0.5, reg_tokens=2,
                                    no_embed_class=True), 3, 10),
    # no class token, one register token, no_embed_class, avg pooling over the patches only
    # (register excluded) + fc_norm, as timm's vit_*_reg1_gap_* models
    "vit_reg1_noclass_avg": (dict(img_size=12, patch_size=3, in_chans=1, num_classes=3,
                                  embed_dim=24, depth=2, num_heads=2, mlp_ratio=4.0,
                                  qkv_bias=True, class_token=False, global_pool="avg",
                                  fc_norm=True, pre_norm=False, act_layer="gelu", norm_eps=1e-6,
                                  reg_tokens=1, no_embed_class=True), 3, 11),
    # three register tokens with timm's default pos_embed (rows for cls and registers too),
    # avg pooling with `norm` first: the mean skips cls and the registers
    "vit_reg3_posprefix_avg": (dict(img_size=16, patch_size=4, in_chans=3, num_classes=4,
                                    embed_dim=16, depth=2, num_heads=2, mlp_ratio=4.0,
                                    qkv_bias=True, class_token=True, global_pool="avg",
                                    fc_norm=False, pre_norm=False, act_layer="gelu",
                                    norm_eps=1e-6, reg_tokens=3), 2, 12),
    # avg pooling with fc_norm false (`norm` on all tokens, then mean of patch tokens), QuickGELU
    "vit_avg_normfirst_quickgelu": (dict(img_size=16, patch_size=4, in_chans=3, num_classes=8,
                                         embed_dim=16, depth=2, num_heads=2, mlp_ratio=4.0,
                                         qkv_bias=True, class_token=True, global_pool="avg",
                                         fc_norm=False, pre_norm=False, act_layer="quick_gelu",
                                         norm_eps=1e-6), 2, 8),
}


# ----------------------------------------------------------------------------------------------
# config and model

def normalize_config(cfg):
    """Checks a FORMATS.md config and fills the optional keys; returns a new dict in key order."""
    if not isinstance(cfg, dict):
        raise ValueError("config must be a JSON object")
    for k in cfg:
        if k not in CONFIG_KEYS:
            raise ValueError(f"unknown config key {k!r}")
    for k in REQUIRED:
        if k not in cfg:
            raise ValueError(f"missing config key {k!r}")
    out = {}
    for k in CONFIG_KEYS:
        if k in cfg:
            out[k] = cfg[k]
        elif k == "fc_norm":
            out[k] = cfg.get("global_pool", "token") == "avg"   # timm: default true for "avg"
        else:
            out[k] = DEFAULTS[k]
    if isinstance(out["img_size"], (list, tuple)):
        if len(out["img_size"]) != 2:
            raise ValueError("img_size must be an int or [H, W]")
        out["img_size"] = [int(v) for v in out["img_size"]]
    if out["global_pool"] not in ("token", "avg"):
        raise ValueError(f"global_pool must be 'token' or 'avg', got {out['global_pool']!r}")
    if out["global_pool"] == "token" and not out["class_token"]:
        raise ValueError("global_pool 'token' needs class_token true")
    if out["act_layer"] not in ("gelu", "quick_gelu"):
        raise ValueError(f"act_layer must be 'gelu' or 'quick_gelu', got {out['act_layer']!r}")
    if out["embed_dim"] % out["num_heads"] != 0:
        raise ValueError("embed_dim must be a multiple of num_heads")
    out["mlp_ratio"] = float(out["mlp_ratio"])
    out["norm_eps"] = float(out["norm_eps"])
    if out["init_values"] is not None:
        out["init_values"] = float(out["init_values"])
    out["reg_tokens"] = int(out["reg_tokens"])
    out["no_embed_class"] = bool(out["no_embed_class"])
    if out["reg_tokens"] < 0:
        raise ValueError("reg_tokens must be >= 0")
    for k in OMIT_AT_DEFAULT:
        if out[k] == DEFAULTS[k]:
            del out[k]
    return out


def img_hw(cfg):
    s = cfg["img_size"]
    return (s[0], s[1]) if isinstance(s, list) else (s, s)


def build_model(cfg, dtype=torch.float32):
    act = {"gelu": nn.GELU, "quick_gelu": QuickGELU}[cfg["act_layer"]]
    img = img_hw(cfg)
    model = VisionTransformer(
        img_size=img, patch_size=cfg["patch_size"], in_chans=cfg["in_chans"],
        num_classes=cfg["num_classes"], embed_dim=cfg["embed_dim"], depth=cfg["depth"],
        num_heads=cfg["num_heads"], mlp_ratio=cfg["mlp_ratio"], qkv_bias=cfg["qkv_bias"],
        class_token=cfg["class_token"], global_pool=cfg["global_pool"], fc_norm=cfg["fc_norm"],
        pre_norm=cfg["pre_norm"], act_layer=act, init_values=cfg.get("init_values"),
        reg_tokens=cfg.get("reg_tokens", 0), no_embed_class=cfg.get("no_embed_class", False),
        norm_layer=functools.partial(nn.LayerNorm, eps=cfg["norm_eps"]))
    for blk in model.blocks:
        blk.attn.fused_attn = False
        if cfg["act_layer"] == "gelu":
            assert isinstance(blk.mlp.act, nn.GELU) and blk.mlp.act.approximate == "none"
    model.eval()
    return model.to(dtype)


def setup_torch():
    set_fused_attn(False)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def perturb_(model, seed):
    g = torch.Generator().manual_seed(seed + 1)
    norms = {n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    with torch.no_grad():
        for name, p in model.state_dict(keep_vars=True).items():
            owner, _, leaf = name.rpartition(".")
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name in ("cls_token", "reg_token", "pos_embed"):
                p.add_(noise * 0.5)
            elif owner in norms and leaf == "weight":
                p.add_(noise * 0.2)
            elif p.ndim >= 2:
                fan_in = p[0].numel()
                p.add_(noise / math.sqrt(fan_in))
            else:
                p.add_(noise * 0.1)


# ----------------------------------------------------------------------------------------------
# computations

def forward_acts(model, x):
    """The timm forward, unrolled to capture activations. Returns (output, acts)."""
    acts = {}
    t = model.patch_embed(x)
    t = model._pos_embed(t)          # cat(cls, reg, patches) + pos_embed, or with no_embed_class
                                     # cat(cls, reg, patches + pos_embed) (then pos_drop, p = 0)
    acts["act.patch_embed"] = t
    t = model.patch_drop(t)          # Identity
    t = model.norm_pre(t)            # LayerNorm when pre_norm, else Identity
    for i, blk in enumerate(model.blocks):
        t = blk(t)
        acts[f"act.blocks.{i}"] = t
    t = model.norm(t)                # Identity when fc_norm
    acts["act.norm"] = t
    p = model.pool(t)                # token 0, or mean over patch tokens (prefix excluded)
    p = model.fc_norm(p)             # Identity unless fc_norm
    acts["act.pooled"] = p
    out = model.head(p)              # Identity when num_classes == 0
    return out, acts


def loss_fn(cfg, out, labels, loss_weight):
    if cfg["num_classes"] > 0:
        return F.cross_entropy(out, labels)
    return (out * loss_weight).mean()


def zero_key_bias_grad_(model):
    """Sets the key third of every qkv.bias gradient to exactly 0 (see "AdamW" in the header)."""
    D = model.embed_dim
    for blk in model.blocks:
        b = blk.attn.qkv.bias
        if b is not None and b.grad is not None:
            b.grad[D:2 * D] = 0


def adamw_run(cfg, model, x, labels, loss_weight):
    model = copy.deepcopy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=ADAMW["lr"],
                            betas=(ADAMW["beta1"], ADAMW["beta2"]), eps=ADAMW["eps"],
                            weight_decay=ADAMW["weight_decay"], amsgrad=False, foreach=False)
    losses = []
    for _ in range(ADAMW["steps"]):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(cfg, model(x), labels, loss_weight)
        losses.append(loss.detach().clone())
        loss.backward()
        zero_key_bias_grad_(model)
        opt.step()
    return torch.stack(losses), {k: v.detach().clone() for k, v in model.state_dict().items()}


def jvp_run(model, x, tangents):
    from torch.func import functional_call, jvp
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p):
        return functional_call(model, p, (x,))
    with torch.no_grad():
        _, tangent_out = jvp(f, (params,), ({k: tangents[k] for k in params},))
    return tangent_out


def compute_all(cfg, model, x, labels, loss_weight, tangents):
    """Everything that is derived from (config, params, input, labels, loss_weight, tangents)."""
    out = {}
    xin = x.detach().clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    y, acts = forward_acts(model, xin)
    y_plain = model(x)
    if not torch.equal(y.detach(), y_plain.detach()):
        raise AssertionError("unrolled forward differs from model(x)")
    loss = loss_fn(cfg, y, labels, loss_weight)
    loss.backward()
    out.update({k: v.detach().clone() for k, v in acts.items()})
    out["logits" if cfg["num_classes"] > 0 else "features"] = y.detach().clone()
    out["loss"] = loss.detach().clone().reshape(())
    out["grad.input"] = xin.grad.detach().clone()
    for k, p in model.named_parameters():
        out[f"grad.{k}"] = p.grad.detach().clone()
    model.zero_grad(set_to_none=True)
    if tangents is not None:
        jv = jvp_run(model, x, tangents)
        out["jvp.logits" if cfg["num_classes"] > 0 else "jvp.features"] = jv.detach().clone()
    al, ap = adamw_run(cfg, model, x, labels, loss_weight)
    out["adamw.loss"] = al
    for k, v in ap.items():
        out[f"adamw.param.{k}"] = v
    return out


def make_golden(cfg, seed, batch, labels=None):
    setup_torch()
    cfg = normalize_config(cfg)
    torch.manual_seed(seed)
    model = build_model(cfg)
    perturb_(model, seed)
    sd = model.state_dict()
    if set(sd) != {k for k, _ in model.named_parameters()}:
        raise AssertionError("state_dict has non-parameter entries")
    H, W = img_hw(cfg)
    K, D = cfg["num_classes"], cfg["embed_dim"]
    g = torch.Generator().manual_seed(seed + 2)
    x = torch.randn(batch, cfg["in_chans"], H, W, generator=g, dtype=torch.float32)
    if labels is None:
        labels = (torch.randint(0, K, (batch,), generator=g, dtype=torch.int64) if K > 0
                  else torch.zeros(batch, dtype=torch.int64))
    else:
        labels = torch.tensor(labels, dtype=torch.int64)
        if labels.shape != (batch,) or (K > 0 and (labels.min() < 0 or labels.max() >= K)):
            raise ValueError(f"--labels needs {batch} integers in [0, {K})")
    loss_weight = None
    if K == 0:
        loss_weight = torch.randn(batch, D, generator=torch.Generator().manual_seed(seed + 3))
    gt = torch.Generator().manual_seed(seed + 4)
    tangents = {k: torch.randn(p.shape, generator=gt) * 0.1 for k, p in sd.items()}

    t = {"input": x, "labels": labels}
    if loss_weight is not None:
        t["loss_weight"] = loss_weight
    for k, v in sd.items():
        t[f"param.{k}"] = v.detach().clone()
    for k, v in tangents.items():
        t[f"jvp.tangent.{k}"] = v
    t.update(compute_all(cfg, model, x, labels, loss_weight, tangents))
    meta = {"format": "vitmerge-golden", "version": "1", "config": json.dumps(cfg),
            "adamw": json.dumps(ADAMW), "torch_version": torch.__version__,
            "timm_version": timm.__version__, "seed": str(seed),
            "adamw_zero_grad": "blocks.*.attn.qkv.bias[embed_dim:2*embed_dim]"}
    return {k: v.contiguous() for k, v in t.items()}, meta


# ----------------------------------------------------------------------------------------------
# verification

def group_of(key):
    if key.startswith("adamw."):
        return "adamw"
    if key.startswith("grad."):
        return "grad"
    return "act"


def verify(path, quiet=False):
    """Rebuilds the model from the file, recomputes everything in float32 (must be bitwise equal
    on the machine that made the file) and in float64 (reports the worst error of the float32
    golden relative to the FORMATS.md tolerance: ratio < 1 passes)."""
    setup_torch()
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "vitmerge-golden" and meta["version"] == "1", meta
    assert json.loads(meta["adamw"]) == ADAMW
    cfg = normalize_config(json.loads(meta["config"]))
    t = load_file(path)
    pkeys = [k[len("param."):] for k in t if k.startswith("param.")]
    K = cfg["num_classes"]
    lw = t.get("loss_weight")
    tang = {k[len("jvp.tangent."):]: v for k, v in t.items() if k.startswith("jvp.tangent.")}
    derived = [k for k in t if k.startswith(("act.", "grad.", "adamw.", "jvp.logits",
                                             "jvp.features", "logits", "features", "loss"))
               and k != "loss_weight"]

    # --- float32, bitwise
    model = build_model(cfg)
    missing, unexpected = model.load_state_dict({k: t[f"param.{k}"] for k in pkeys}, strict=True)
    ref = compute_all(cfg, model, t["input"], t["labels"], lw, tang or None)
    if set(ref) != set(derived):
        raise AssertionError(f"key sets differ: {sorted(set(ref) ^ set(derived))}")
    bad = [k for k in derived if ref[k].shape != t[k].shape or not torch.equal(ref[k], t[k])]
    if bad:
        diffs = {k: float((ref[k] - t[k]).abs().max()) for k in bad if ref[k].shape == t[k].shape}
        print(f"  NOTE {os.path.basename(path)}: float32 recompute not bitwise equal "
              f"(other machine/thread count?): {diffs}")
        for k in bad:
            torch.testing.assert_close(ref[k], t[k], rtol=1e-5, atol=1e-6)
    expect_params = {k for k, _ in model.named_parameters()}
    assert set(pkeys) == expect_params and set(tang) == expect_params
    assert all(f"grad.{k}" in t and f"adamw.param.{k}" in t for k in expect_params)

    # --- float64 margin check
    m64 = build_model(cfg, torch.float64)
    m64.load_state_dict({k: t[f"param.{k}"].double() for k in pkeys}, strict=True)
    r64 = compute_all(cfg, m64, t["input"].double(), t["labels"],
                      None if lw is None else lw.double(),
                      {k: v.double() for k, v in tang.items()} or None)
    worst = {}
    for k in derived:
        atol, rtol = TOLS[group_of(k)]
        a, b = t[k].double(), r64[k]
        ratio = float(((a - b).abs() / (atol + rtol * b.abs())).max()) if a.numel() else 0.0
        g = group_of(k)
        if ratio > worst.get(g, (-1, ""))[0]:
            worst[g] = (ratio, k)
    if not quiet:
        w = ", ".join(f"{g} {r:.3f} ({k})" for g, (r, k) in sorted(worst.items()))
        print(f"  ok {os.path.basename(path)}: f32 recompute equal; f32-vs-f64 error / tolerance: {w}")
    return worst


# ----------------------------------------------------------------------------------------------

def write(cfg, seed, batch, out, labels=None):
    tensors, meta = make_golden(cfg, seed, batch, labels)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_file(tensors, out, metadata=meta)
    size = os.path.getsize(out)
    print(f"wrote {out} ({size} bytes, {len(tensors)} tensors)")
    if size > 1_000_000:
        print(f"  WARNING: {out} is larger than 1 MB")
    verify(out)
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="FORMATS.md config JSON file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--labels", help="comma-separated labels, one per batch element")
    ap.add_argument("--out", help="output .safetensors")
    ap.add_argument("--all", action="store_true", help="regenerate the committed set in data/golden")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="regenerate only these entries of the set")
    ap.add_argument("--verify", nargs="+", metavar="FILE", help="re-check golden files")
    a = ap.parse_args()
    if a.verify:
        for p in a.verify:
            verify(p)
        return
    if a.all or a.only:
        unknown = sorted(set(a.only or []) - set(GOLDEN_SET))
        if unknown:
            ap.error(f"not in the golden set: {', '.join(unknown)}")
        os.makedirs(os.path.join(GOLDEN_DIR, "configs"), exist_ok=True)
        for name, (cfg, batch, seed) in GOLDEN_SET.items():
            if a.only and name not in a.only:
                continue
            cfg = normalize_config(cfg)
            with open(os.path.join(GOLDEN_DIR, "configs", name + ".json"), "w") as f:
                f.write(json.dumps(cfg, indent=1) + "\n")
            write(cfg, seed, batch, os.path.join(GOLDEN_DIR, name + ".safetensors"))
        return
    if not (a.config and a.out):
        ap.error("--config and --out are required (or --all / --verify)")
    with open(a.config) as f:
        cfg = json.load(f)
    labels = [int(s) for s in a.labels.split(",")] if a.labels else None
    write(cfg, a.seed, a.batch, a.out, labels)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, AssertionError) as e:
        sys.exit(f"error: {e}")
