"""Writes the committed timm hub snapshots the tests load (data/hub/), with timm's own save_for_hf.

    /work/venv/bin/python scripts/make_hub_fixture.py

- data/hub/vit_tiny_e32_d2_32/: vit_tiny_patch16_224 with model_args img_size 32, patch 8, embed_dim 32,
  depth 2, 2 heads, 5 classes (config.json + model.safetensors), plus `check.safetensors` holding a
  fixed input [2, 3, 32, 32] and timm's logits for it, so the Swift test compares the forward too.
- data/hub/vit_clip_quickgelu_e32_d2_32/: the same for vit_base_patch16_clip_quickgelu_224
  (pre_norm, LayerNorm eps 1e-5, quick_gelu) with avg pooling and fc_norm.
"""
import os

import safetensors.torch
import timm
import torch
from timm.models import save_for_hf

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data', 'hub')
FIXTURES = {
    'vit_tiny_e32_d2_32': ('vit_tiny_patch16_224', dict(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)),
    'vit_clip_quickgelu_e32_d2_32': ('vit_base_patch16_clip_quickgelu_224', dict(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=4, global_pool='avg')),
}


def main():
    torch.manual_seed(0)
    for name, (arch, args) in FIXTURES.items():
        model = timm.create_model(arch, pretrained=False, **args).eval()
        with torch.no_grad():  # non-trivial biases and norms, so a wrong mapping shows in the logits
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        out = os.path.join(ROOT, name)
        os.makedirs(out, exist_ok=True)
        save_for_hf(model, out, safe_serialization=True)
        x = torch.rand(2, 3, args['img_size'], args['img_size'], generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            logits = model(x)
        safetensors.torch.save_file({'input': x.contiguous(), 'logits': logits.contiguous()},
                                    os.path.join(out, 'check.safetensors'),
                                    metadata={'timm_version': timm.__version__, 'torch_version': torch.__version__})
        print(f'wrote {out}: {arch} {args}, logits {tuple(logits.shape)}')


if __name__ == '__main__':
    main()
