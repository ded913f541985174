"""How much of a Hugging Face ViT's int8 error its embeddings' output alone causes, per tensor and per token.

    python benchmarks/token_quantization.py --models vit,ijepa

For each model of ``coverage_models.json`` (saved by ``coverage.py``), eager PyTorch on the six
sample photos: the logits' worst-image SQNR when only the embeddings' output (class token, patch
tokens and position embeddings) is rounded to int8 with one symmetric scale for the whole tensor,
and with one scale per token. A class token much smaller than the patch tokens gets a level or two
of a per-tensor scale, which the next LayerNorm scales up to unit size.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import coverage  # noqa: E402


def rounded(t: torch.Tensor, per_token: bool) -> torch.Tensor:
    scale = (t.abs().amax(-1, keepdim=True) if per_token else t.abs().amax()) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (t / scale).round().clamp(-128, 127) * scale


def worst_sqnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    return (10 * torch.log10(ref.pow(2).sum(1) / (ref - out).pow(2).sum(1))).min().item()


@torch.no_grad()
def main() -> None:
    import transformers

    from edgeml.images import load_image, sample_images

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", required=True, help="comma-separated keys of coverage_models.json")
    ap.add_argument("--cache", type=Path, default=coverage.DEFAULT_CACHE)
    args = ap.parse_args()
    cache = args.cache.expanduser().resolve()
    entries = {e["key"]: e for e in coverage.load_list()["models"]}
    print("| model | class token RMS | patch token RMS | per tensor dB | per token dB |\n|---|---|---|---|---|")
    for key in args.models.split(","):
        model = transformers.AutoModelForImageClassification.from_pretrained(
            str(coverage.model_dir(cache, key))).eval()
        pre = coverage._preprocessing(entries[key], cache)
        x = torch.cat([pre(load_image(p)) for p in sample_images()])
        embeddings = model.base_model.embeddings
        ref = model(pixel_values=x).logits
        tokens = embeddings(x)
        row = [key, f"{tokens[:, 0].pow(2).mean().sqrt():.3f}", f"{tokens[:, 1:].pow(2).mean().sqrt():.3f}"]
        for per_token in (False, True):
            hook = embeddings.register_forward_hook(lambda m, i, o, p=per_token: rounded(o, p))
            try:
                row.append(f"{worst_sqnr(ref, model(pixel_values=x).logits):.1f}")
            finally:
                hook.remove()
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
