"""Checks a `vitmerge export` snapshot with timm: builds create_model(architecture, pretrained=False,
**model_args), loads model.safetensors with load_state_dict(strict=True), runs a fixed input and
compares the logits with ours (`vitmerge forward` on the same input). Exits 1 on a mismatch.

    /work/venv/bin/python scripts/check_export.py --vitmerge .build/debug/vitmerge \
        --checkpoint data/pretrained/vit_mini_glyphs.safetensors --out /tmp/export-mini

With --vitmerge, the script runs `vitmerge export` and `vitmerge forward` itself; without it, give
--out (an exported snapshot) and --ours (a `vitmerge forward` output for --input).
"""
import argparse
import json
import os
import subprocess
import sys

import safetensors.torch
import timm
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True, help='the exported snapshot directory')
    ap.add_argument('--vitmerge', help='the vitmerge binary (runs export and forward)')
    ap.add_argument('--checkpoint', help='the checkpoint to export (with --vitmerge)')
    ap.add_argument('--input', help='input .safetensors with `input` [B, C, H, W] (default: written here)')
    ap.add_argument('--ours', help='our logits (vitmerge forward --output)')
    ap.add_argument('--atol', type=float, default=1e-4)
    a = ap.parse_args()
    if a.vitmerge:
        subprocess.run([a.vitmerge, 'export', '--checkpoint', a.checkpoint, '--out', a.out], check=True)
    with open(os.path.join(a.out, 'config.json')) as f:
        cfg = json.load(f)
    model = timm.create_model(cfg['architecture'], pretrained=False, **cfg['model_args']).eval()
    state = safetensors.torch.load_file(os.path.join(a.out, 'model.safetensors'))
    model.load_state_dict(state, strict=True)
    print(f"timm {timm.__version__}: {cfg['architecture']} **{json.dumps(cfg['model_args'], sort_keys=True)}: "
          f"load_state_dict(strict=True) ok, {len(state)} tensors")
    c, h, w = cfg['pretrained_cfg']['input_size']
    input_path = a.input or os.path.join(a.out, 'check-input.safetensors')
    if a.input is None:
        x = torch.rand(3, c, h, w, generator=torch.Generator().manual_seed(0))
        safetensors.torch.save_file({'input': x}, input_path)
    x = safetensors.torch.load_file(input_path)['input']
    ours_path = a.ours or os.path.join(a.out, 'check-ours.safetensors')
    if a.vitmerge:
        subprocess.run([a.vitmerge, 'forward', '--checkpoint', a.checkpoint, '--input', input_path,
                        '--output', ours_path, '--features'], check=True)
    ours = safetensors.torch.load_file(ours_path)
    with torch.no_grad():
        theirs = model(x) if 'logits' in ours else model.forward_head(model.forward_features(x), pre_logits=True)
    mine = ours['logits'] if 'logits' in ours else ours['features']
    diff = (mine - theirs).abs().max().item()
    print(f"pretrained_cfg: input_size {cfg['pretrained_cfg']['input_size']}, mean {cfg['pretrained_cfg']['mean']}, "
          f"std {cfg['pretrained_cfg']['std']}, interpolation {cfg['pretrained_cfg']['interpolation']}")
    print(f'logits {tuple(theirs.shape)}: max abs diff ours vs timm {diff:.3g} (atol {a.atol})')
    sys.exit(0 if diff <= a.atol else 1)


if __name__ == '__main__':
    main()
