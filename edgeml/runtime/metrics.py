"""Parity metrics between a reference output and an edge-runtime output."""
from __future__ import annotations

import math

import torch


def sqnr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio, 10 log10(sum ref^2 / sum (ref - out)^2), in dB."""
    ref, out = ref.double(), out.double()
    noise = (ref - out).pow(2).sum().item()
    signal = ref.pow(2).sum().item()
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def cosine(ref: torch.Tensor, out: torch.Tensor) -> float:
    a, b = ref.double().flatten(), out.double().flatten()
    denom = a.norm() * b.norm()
    return float((a @ b) / denom) if denom > 0 else float(torch.equal(a, b))


def compare(ref: torch.Tensor, out: torch.Tensor, *, logits: bool) -> dict[str, float]:
    """SQNR, cosine, max abs error and (for class logits) top-1 agreement over the batch."""
    if ref.shape != out.shape:
        raise ValueError(f"reference shape {tuple(ref.shape)} != runtime shape {tuple(out.shape)}")
    metrics = {
        "sqnr_db": sqnr_db(ref, out),
        "cosine": cosine(ref, out),
        "max_abs_error": float((ref.double() - out.double()).abs().max()) if ref.numel() else 0.0,
    }
    if logits:
        agree = (ref.flatten(1).argmax(1) == out.flatten(1).argmax(1)).double().mean()
        metrics["top1_agreement"] = float(agree)
    return metrics
