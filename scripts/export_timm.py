#!/usr/bin/env python3
"""Export a timm VisionTransformer to a ViTMerge checkpoint (FORMATS.md "Checkpoints").

    # pretrained weights that timm can load without a download (HF cache, or a local file):
    HF_HUB_OFFLINE=1 python scripts/export_timm.py vit_tiny_patch16_224.augreg_in21k_ft_in1k --out ti.safetensors
    python scripts/export_timm.py vit_base_patch32_clip_224.openai --file /path/open_clip_model.bin --out b32.safetensors
    # random init (timm's init), e.g. a small model for tests; --kwargs overrides create_model args:
    python scripts/export_timm.py vit_tiny_patch16_224 --random --kwargs '{"num_classes": 0}' --out ti_rand.safetensors

The output is a safetensors file whose tensor names are the model's state_dict() keys and whose
`__metadata__["config"]` is the FORMATS.md config JSON derived from the model's attributes.
Register tokens (`reg_tokens`) and `no_embed_class` are exported (config keys of the same names,
written only when not at their defaults).  Models using anything else ViTMerge does not
LayerScale is exported as `init_values` (the value timm's LayerScale modules were built with).
Models using anything else ViTMerge does not implement (qk_norm, dynamic image size, attention pooling, SwiGLU, parallel/res-post blocks,
tanh-GELU, non-LayerNorm norms, missing proj biases, a patch-embed norm, ...) are refused with
an error naming the offending option; nothing is silently dropped.  As a last guard the exported
state_dict must have exactly the key set and shapes the config implies.
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn as nn
from safetensors.torch import save_file

import timm
from timm.layers import LayerScale, Mlp, PatchEmbed, QuickGELU
from timm.layers.activations import GELU as TimmGELU, QuickGELU as TimmQuickGELU
from timm.models.vision_transformer import Attention, Block, VisionTransformer


class Unsupported(Exception):
    pass


def is_id(m):
    return m is None or isinstance(m, nn.Identity)


def derive_config(model):
    """FORMATS.md config of a timm VisionTransformer, or Unsupported naming the problem."""
    def refuse(msg):
        raise Unsupported(msg)

    if type(model) is not VisionTransformer:
        refuse(f"model class {type(model).__name__} is not timm's plain VisionTransformer "
               "(distilled/hybrid/other variants are not supported)")
    reg_tokens = int(getattr(model, "num_reg_tokens", 0) or 0)
    if (model.reg_token is not None) != (reg_tokens > 0) or (
            model.reg_token is not None and tuple(model.reg_token.shape[:2]) != (1, reg_tokens)):
        refuse("reg_token does not match num_reg_tokens")
    no_embed_class = bool(getattr(model, "no_embed_class", False))
    if getattr(model, "dynamic_img_size", False):
        refuse("dynamic_img_size=True is not supported")
    if model.pos_embed is None:
        refuse("models without a learned pos_embed are not supported")
    if getattr(model, "attn_pool", None) is not None:
        refuse(f"global_pool={model.global_pool!r} (attention pooling) is not supported")
    if model.global_pool not in ("token", "avg"):
        refuse(f"global_pool={model.global_pool!r} is not supported (only 'token' and 'avg')")
    if getattr(model, "pool_include_prefix", False):
        refuse("pool_include_prefix=True is not supported")
    if not is_id(model.patch_drop):
        refuse("patch_drop_rate > 0 is not supported")

    pe = model.patch_embed
    if type(pe) is not PatchEmbed:
        refuse(f"patch embedding {type(pe).__name__} is not supported")
    if not getattr(pe, "flatten", True) or getattr(pe, "dynamic_img_pad", False):
        refuse("patch embedding without flatten / with dynamic_img_pad is not supported")
    if not is_id(pe.norm):
        refuse("a norm inside the patch embedding (embed_norm_layer) is not supported")
    if pe.img_size is None:
        refuse("patch embedding without a fixed img_size is not supported")
    conv = pe.proj
    if (tuple(conv.kernel_size) != tuple(pe.patch_size) or tuple(conv.stride) != tuple(pe.patch_size)
            or tuple(conv.padding) != (0, 0) or tuple(conv.dilation) != (1, 1) or conv.groups != 1):
        refuse("patch conv must have kernel = stride = patch_size, no padding/dilation/groups")
    ph, pw = pe.patch_size
    if ph != pw:
        refuse(f"non-square patch_size {pe.patch_size} is not supported")
    H, W = pe.img_size
    if H % ph or W % pw:
        refuse(f"img_size {pe.img_size} is not a multiple of patch_size {ph}")

    D = model.embed_dim
    blocks = list(model.blocks)
    if not blocks:
        refuse("depth 0 is not supported")
    pre_norm = not is_id(model.norm_pre)
    if pre_norm == (conv.bias is not None):
        refuse("pre_norm and the patch-embedding bias must go together as in timm "
               f"(pre_norm={pre_norm}, patch bias={conv.bias is not None})")

    # norms: all LayerNorm with affine and one common eps
    norms = []
    if pre_norm:
        norms.append(("norm_pre", model.norm_pre))
    fc_norm = not is_id(model.fc_norm)
    if fc_norm and not is_id(model.norm):
        refuse("both norm and fc_norm present is not supported")
    if not fc_norm and is_id(model.norm):
        refuse("final_norm=False (no norm and no fc_norm) is not supported")
    norms.append(("fc_norm", model.fc_norm) if fc_norm else ("norm", model.norm))

    heads = None
    act_name = None
    hidden = None
    qkv_bias = None
    for i, b in enumerate(blocks):
        n = f"blocks.{i}"
        if type(b) is not Block:
            refuse(f"{n}: block type {type(b).__name__} is not supported")
        if is_id(b.ls1) and is_id(b.ls2):
            ls = None
        elif type(b.ls1) is LayerScale and type(b.ls2) is LayerScale and b.ls1.init_values == b.ls2.init_values:
            ls = float(b.ls1.init_values)
        else:
            refuse(f"{n}: layer scale on one branch only, or not timm's LayerScale, is not supported")
        if i == 0:
            init_values = ls
        elif ls != init_values:
            refuse(f"{n}: layer scale differs across blocks")
        if not is_id(b.drop_path1) or not is_id(b.drop_path2):
            pass  # stochastic depth only matters for training; the weights are the same
        a = b.attn
        if type(a) is not Attention:
            refuse(f"{n}: attention type {type(a).__name__} is not supported")
        if not is_id(a.q_norm) or not is_id(a.k_norm):
            refuse(f"{n}: qk_norm is not supported")
        if not is_id(getattr(a, "norm", None)):
            refuse(f"{n}: scale_attn_norm is not supported")
        if getattr(a, "gate", None) is not None:
            refuse(f"{n}: gated attention is not supported")
        if a.num_heads * a.head_dim != D or a.qkv.out_features != 3 * D:
            refuse(f"{n}: attention head_dim*num_heads != embed_dim is not supported")
        if abs(a.scale - a.head_dim ** -0.5) > 1e-12:
            refuse(f"{n}: attention scale {a.scale} != head_dim^-0.5")
        if a.proj.bias is None:
            refuse(f"{n}: proj_bias=False is not supported")
        heads = a.num_heads if heads is None else heads
        if a.num_heads != heads:
            refuse(f"{n}: differing num_heads across blocks")
        qb = a.qkv.bias is not None
        qkv_bias = qb if qkv_bias is None else qkv_bias
        if qb != qkv_bias:
            refuse(f"{n}: differing qkv_bias across blocks")
        m = b.mlp
        if type(m) is not Mlp or not isinstance(m.fc1, nn.Linear):
            refuse(f"{n}: MLP type {type(m).__name__} is not supported (only timm Mlp)")
        if not is_id(m.norm):
            refuse(f"{n}: scale_mlp_norm is not supported")
        if m.fc1.bias is None or m.fc2.bias is None:
            refuse(f"{n}: MLP without bias is not supported")
        if isinstance(m.act, (QuickGELU, TimmQuickGELU)):
            an = "quick_gelu"
        elif isinstance(m.act, nn.GELU) and m.act.approximate == "none":
            an = "gelu"
        elif type(m.act) is TimmGELU:
            an = "gelu"
        else:
            refuse(f"{n}: activation {m.act!r} is not supported (only exact GELU and QuickGELU)")
        act_name = an if act_name is None else act_name
        if an != act_name:
            refuse(f"{n}: differing activations across blocks")
        hidden = m.fc1.out_features if hidden is None else hidden
        if m.fc1.out_features != hidden:
            refuse(f"{n}: differing MLP widths across blocks")
        norms += [(n + ".norm1", b.norm1), (n + ".norm2", b.norm2)]

    eps = None
    for name, nm in norms:
        if type(nm) not in (nn.LayerNorm, timm.layers.LayerNorm) or not nm.elementwise_affine \
                or getattr(nm, "bias", None) is None:
            refuse(f"{name}: {type(nm).__name__} is not supported (only affine LayerNorm)")
        if tuple(nm.normalized_shape) != (D,):
            refuse(f"{name}: normalized_shape {nm.normalized_shape} != ({D},)")
        eps = nm.eps if eps is None else eps
        if nm.eps != eps:
            refuse(f"{name}: LayerNorm eps {nm.eps} differs from {eps}")

    # mlp_ratio such that timm's int(embed_dim * mlp_ratio) gives the hidden width back
    ratio = hidden / D
    if int(D * ratio) != hidden:
        ratio = math.nextafter(ratio, math.inf)
    if int(D * ratio) != hidden:
        refuse(f"MLP width {hidden} cannot be written as int({D} * mlp_ratio)")

    num_classes = model.num_classes
    if num_classes > 0 and not isinstance(model.head, nn.Linear):
        refuse(f"head {type(model.head).__name__} is not supported (only Linear)")
    if num_classes == 0 and not is_id(model.head):
        refuse("num_classes 0 with a non-identity head")

    cfg = {
        "img_size": H if H == W else [H, W],
        "patch_size": ph,
        "in_chans": conv.in_channels,
        "num_classes": num_classes,
        "embed_dim": D,
        "depth": len(blocks),
        "num_heads": heads,
        "mlp_ratio": ratio,
        "qkv_bias": qkv_bias,
        "class_token": model.cls_token is not None,
        "global_pool": model.global_pool,
        "fc_norm": fc_norm,
        "pre_norm": pre_norm,
        "act_layer": act_name,
        "norm_eps": float(eps),
    }
    if init_values is not None:
        cfg["init_values"] = init_values
    if reg_tokens:
        cfg["reg_tokens"] = reg_tokens
    if no_embed_class:
        cfg["no_embed_class"] = True
    return cfg


def expected_shapes(cfg):
    """The state_dict key -> shape map a FORMATS.md config implies (what ViTMerge will expect)."""
    s = cfg["img_size"]
    H, W = (s, s) if isinstance(s, int) else s
    p, C, D, K = cfg["patch_size"], cfg["in_chans"], cfg["embed_dim"], cfg["num_classes"]
    hid = int(D * cfg["mlp_ratio"])
    R = cfg.get("reg_tokens", 0)
    N = (H // p) * (W // p)
    T = N if cfg.get("no_embed_class", False) else N + (1 if cfg["class_token"] else 0) + R
    e = {"pos_embed": (1, T, D), "patch_embed.proj.weight": (D, C, p, p)}
    if cfg["class_token"]:
        e["cls_token"] = (1, 1, D)
    if R:
        e["reg_token"] = (1, R, D)
    if cfg["pre_norm"]:
        e["norm_pre.weight"] = e["norm_pre.bias"] = (D,)
    else:
        e["patch_embed.proj.bias"] = (D,)
    for i in range(cfg["depth"]):
        b = f"blocks.{i}."
        e.update({b + "norm1.weight": (D,), b + "norm1.bias": (D,),
                  b + "attn.qkv.weight": (3 * D, D),
                  b + "attn.proj.weight": (D, D), b + "attn.proj.bias": (D,),
                  b + "norm2.weight": (D,), b + "norm2.bias": (D,),
                  b + "mlp.fc1.weight": (hid, D), b + "mlp.fc1.bias": (hid,),
                  b + "mlp.fc2.weight": (D, hid), b + "mlp.fc2.bias": (D,)})
        if cfg["qkv_bias"]:
            e[b + "attn.qkv.bias"] = (3 * D,)
        if cfg.get("init_values") is not None:
            e[b + "ls1.gamma"] = e[b + "ls2.gamma"] = (D,)
    n = "fc_norm" if cfg["fc_norm"] else "norm"
    e[n + ".weight"] = e[n + ".bias"] = (D,)
    if K > 0:
        e["head.weight"], e["head.bias"] = (K, D), (K,)
    return e


def export(model, out, extra_meta=None):
    cfg = derive_config(model)
    sd = model.state_dict()
    exp = expected_shapes(cfg)
    extra = sorted(set(sd) - set(exp))
    missing = sorted(set(exp) - set(sd))
    if extra:
        raise Unsupported(f"unexpected tensors in state_dict (unsupported option?): {extra[:8]}")
    if missing:
        raise Unsupported(f"missing tensors: {missing[:8]}")
    for k, shp in exp.items():
        if tuple(sd[k].shape) != shp:
            raise Unsupported(f"tensor {k}: expected shape {list(shp)}, found {list(sd[k].shape)}")
    tensors = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in sd.items()}
    meta = {"config": json.dumps(cfg), "source": "timm", "timm_version": timm.__version__,
            "torch_version": torch.__version__}
    meta.update(extra_meta or {})
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_file(tensors, out, metadata=meta)
    return cfg, tensors


def main():
    ap = argparse.ArgumentParser(description="Export a timm VisionTransformer to a ViTMerge checkpoint.")
    ap.add_argument("name", help="timm model name, e.g. vit_tiny_patch16_224.augreg_in21k_ft_in1k")
    ap.add_argument("--out", required=True)
    ap.add_argument("--random", action="store_true", help="timm's random init instead of pretrained")
    ap.add_argument("--file", help="load pretrained weights from this local file "
                    "(timm pretrained_cfg_overlay file=...)")
    ap.add_argument("--kwargs", default="{}", help="JSON dict of extra timm.create_model kwargs, "
                    "e.g. '{\"num_classes\": 0, \"img_size\": 32}'")
    ap.add_argument("--seed", type=int, default=0, help="torch seed for --random")
    a = ap.parse_args()
    kwargs = json.loads(a.kwargs)
    torch.manual_seed(a.seed)
    if a.random:
        model = timm.create_model(a.name, pretrained=False, **kwargs)
        src = f"timm:{a.name} (random init, seed {a.seed})"
    else:
        if a.file:
            kwargs["pretrained_cfg_overlay"] = dict(file=a.file)
        try:
            model = timm.create_model(a.name, pretrained=True, **kwargs)
        except Exception as e:  # noqa: BLE001 - report the cause and how to proceed
            sys.exit(f"error: could not load pretrained weights for {a.name!r}: {e}\n"
                     "Put them in the Hugging Face cache / pass --file PATH, or use --random.")
        src = f"timm:{a.name}" + (f" (file {a.file})" if a.file else "")
    model.eval()
    try:
        cfg, tensors = export(model, a.out, {"model": src})
    except Unsupported as e:
        sys.exit(f"error: {a.name}: {e}")
    n = sum(v.numel() for v in tensors.values())
    print(f"wrote {a.out}: {len(tensors)} tensors, {n} parameters\nconfig {json.dumps(cfg)}")


if __name__ == "__main__":
    main()
