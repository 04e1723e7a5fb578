#!/usr/bin/env python3
"""A from-scratch ViT forward written only with tensor ops (no timm modules), from a FORMATS.md
config and a timm-named state dict.  It is the executable form of the semantics the Swift code
must implement, and it is checked against every golden file:

    python scripts/reference_vit.py data/golden/*.safetensors

Nothing here is used at run time of ViTMerge.
"""
import json
import math
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)          # biased variance
    return (x - mu) / torch.sqrt(var + eps) * w + b


def act_fn(name, x):
    if name == "gelu":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))   # exact erf GELU
    return x * torch.sigmoid(1.702 * x)                      # quick_gelu


def forward(cfg, P, x):
    """Returns (output, acts) with the same act.* meanings as the golden files."""
    eps, D, Hh = cfg["norm_eps"], cfg["embed_dim"], cfg["num_heads"]
    hd = D // Hh
    p = cfg["patch_size"]
    B, C, H, W = x.shape
    gh, gw = H // p, W // p
    # patch embedding = conv stride p == linear map of each (C, p, p) patch, flattened c-major
    patches = x.reshape(B, C, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C * p * p)
    t = patches @ P["patch_embed.proj.weight"].reshape(D, C * p * p).T      # tokens row-major (h, w)
    if "patch_embed.proj.bias" in P:
        t = t + P["patch_embed.proj.bias"]
    prefix_tokens = []                                                     # [cls, reg x R] in front
    if cfg["class_token"]:
        prefix_tokens.append(P["cls_token"].expand(B, 1, D))
    if cfg.get("reg_tokens", 0):
        prefix_tokens.append(P["reg_token"].expand(B, cfg["reg_tokens"], D))
    if cfg.get("no_embed_class", False):
        t = torch.cat(prefix_tokens + [t + P["pos_embed"]], dim=1)         # [1, N, D] on the patches only
    else:
        t = torch.cat(prefix_tokens + [t], dim=1) + P["pos_embed"]         # [1, T, D], incl. prefix rows
    acts = {"act.patch_embed": t}
    if cfg["pre_norm"]:
        t = layer_norm(t, P["norm_pre.weight"], P["norm_pre.bias"], eps)
    T = t.shape[1]
    for i in range(cfg["depth"]):
        q_ = f"blocks.{i}."
        h = layer_norm(t, P[q_ + "norm1.weight"], P[q_ + "norm1.bias"], eps)
        qkv = h @ P[q_ + "attn.qkv.weight"].T                              # [B, T, 3D]
        if q_ + "attn.qkv.bias" in P:
            qkv = qkv + P[q_ + "attn.qkv.bias"]
        qkv = qkv.reshape(B, T, 3, Hh, hd)                                 # (which, head, hd)
        q, k, v = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
        a = torch.softmax((q * hd ** -0.5) @ k.transpose(-1, -2), dim=-1)   # [B, H, T, T]
        o = (a @ v).transpose(1, 2).reshape(B, T, D)                       # heads concatenated
        o = o @ P[q_ + "attn.proj.weight"].T + P[q_ + "attn.proj.bias"]
        t = t + (o * P[q_ + "ls1.gamma"] if q_ + "ls1.gamma" in P else o)   # LayerScale (init_values)
        h = layer_norm(t, P[q_ + "norm2.weight"], P[q_ + "norm2.bias"], eps)
        h = act_fn(cfg["act_layer"], h @ P[q_ + "mlp.fc1.weight"].T + P[q_ + "mlp.fc1.bias"])
        h = h @ P[q_ + "mlp.fc2.weight"].T + P[q_ + "mlp.fc2.bias"]
        t = t + (h * P[q_ + "ls2.gamma"] if q_ + "ls2.gamma" in P else h)
        acts[f"act.blocks.{i}"] = t
    if not cfg["fc_norm"]:
        t = layer_norm(t, P["norm.weight"], P["norm.bias"], eps)
    acts["act.norm"] = t
    prefix = (1 if cfg["class_token"] else 0) + cfg.get("reg_tokens", 0)   # num_prefix_tokens
    pooled = t[:, 0] if cfg["global_pool"] == "token" else t[:, prefix:].mean(1)
    if cfg["fc_norm"]:
        pooled = layer_norm(pooled, P["fc_norm.weight"], P["fc_norm.bias"], eps)
    acts["act.pooled"] = pooled
    if cfg["num_classes"] > 0:
        return pooled @ P["head.weight"].T + P["head.bias"], acts
    return pooled, acts


def check(path):
    with safe_open(path, "pt") as f:
        cfg = json.loads(f.metadata()["config"])
    t = {k: v.double() if v.is_floating_point() else v for k, v in load_file(path).items()}
    P = {k[6:]: v for k, v in t.items() if k.startswith("param.")}
    out, acts = forward(cfg, P, t["input"])
    name = "logits" if cfg["num_classes"] > 0 else "features"
    acts[name] = out
    if cfg["num_classes"] > 0:
        acts["loss"] = torch.nn.functional.cross_entropy(out, t["labels"])
    else:
        acts["loss"] = (out * t["loss_weight"]).mean()
    worst = 0.0
    for k, v in acts.items():
        g = t[k]
        assert v.shape == g.shape, (k, v.shape, g.shape)
        worst = max(worst, float(((v - g).abs() / (1e-5 + 1e-4 * g.abs())).max()))
    status = "ok" if worst <= 1 else "FAIL"
    print(f"{status} {path}: plain-ops float64 forward vs golden, error/tolerance {worst:.3f}")
    return worst <= 1


if __name__ == "__main__":
    torch.set_num_threads(1)
    results = [check(p) for p in sys.argv[1:]]
    sys.exit(0 if all(results) else 1)
