"""Which fp16 ops lose precision on ARM, and why: one fp16 program, emulated ARM cores, a model.

An fp16 `.pte` computes in fp32 on this x86 host (XNNPACK converts around fp32 arithmetic) and in
fp16 on an ARMv8.2 core. This script exports one fp16 program holding the op kinds of a ViT at
SigLIP-B/16's shapes (576 tokens of width 768, 12 heads of 64, MLP width 3072), each fed from the
input rather than chained after another, so every output reads one op's error alone (the product
of attention's probabilities with the values comes after its own scores and softmax). It runs that
program on the host and, under qemu-user, on the emulated ARM cores (`edgeml setup-aarch64`
first), and scores each output against PyTorch fp32 on the same N(0, 1) input.

For the linear layers it also computes what an fp16 dot product gives when every operand is fp16
and the running sum is rounded to fp16 after each multiply-add in order, one sum per output
(`fp16_accumulation`): if the ARM outputs match that far more closely than they match PyTorch,
the ARM kernels accumulate in fp16 and the error is the arithmetic's, growing with the length of
the sum. The same program holds rewrites of the long sums, scored the same way: a linear layer
split into 256-long partial products added in fp16; a LayerNorm with each average one product of
all 768 features (the fp32 programs' form), as edgeml lowers it in fp16 programs (two-stage
averages), and computed in fp32 between two casts.

    nice -n 19 python benchmarks/arm_fp16_ops.py [--cpu cortex-a76 --cpu max,sme=off] [--work DIR]

Correctness only: emulated timings mean nothing and are not reported.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, machine, print_table  # noqa: E402

TOKENS, WIDTH, HEADS, MLP = 576, 768, 12, 3072
SPLIT = 256


class SplitLinear(nn.Module):
    """``linear``'s function as partial products over ``SPLIT``-long slices of the input
    features, summed in order (the first carries the bias)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        k = linear.in_features
        self.parts = nn.ModuleList()
        for i, start in enumerate(range(0, k, SPLIT)):
            part = nn.Linear(min(SPLIT, k - start), linear.out_features, bias=i == 0)
            with torch.no_grad():
                part.weight.copy_(linear.weight[:, start:start + SPLIT])
                if i == 0:
                    part.bias.copy_(linear.bias)
            self.parts.append(part)

    def forward(self, x):
        y = self.parts[0](x[..., :SPLIT])
        for i, part in enumerate(self.parts[1:], 1):
            y = y + part(x[..., i * SPLIT:(i + 1) * SPLIT])
        return y


def one_stage_layer_norm(x, weight, bias, eps: float = 1e-5):
    """LayerNorm with each average one product of all the features: the form fp32 programs
    lower to (``edgeml.backends.xnnpack.passes.layernorm``), here kept in fp16 to show why fp16
    programs do not use it."""
    averaging = torch.full((1, x.shape[-1]), 1.0 / x.shape[-1], dtype=x.dtype)
    centered = x - F.linear(x, averaging)
    return centered * torch.rsqrt(F.linear(centered * centered, averaging) + eps) * weight + bias


class OpProbe(nn.Module):
    """The op kinds of a ViT block at SigLIP-B/16's shapes, each applied to the input."""

    OUTPUTS = ("linear K=64", "linear K=768", "linear K=3072", "linear K=768, split 3 x 256",
               "linear K=3072, split 12 x 256", "layernorm 768, one-stage averages",
               "layernorm 768 (as edgeml lowers it: two-stage averages)", "layernorm 768 in fp32",
               "softmax over 576", "matmul K=64 (q k^T)", "softmax(.) @ v, K=576", "gelu (tanh form)")

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.k64 = nn.Linear(64, WIDTH)
        self.k768 = nn.Linear(WIDTH, MLP)
        self.k3072 = nn.Linear(MLP, WIDTH)
        self.k768_split = SplitLinear(self.k768)
        self.k3072_split = SplitLinear(self.k3072)
        self.ln = nn.LayerNorm(WIDTH)
        with torch.no_grad():
            self.ln.weight.normal_(1.0, 0.1)
            self.ln.bias.normal_(0.0, 0.1)

    def forward(self, image):  # (1, 3, 384, 384): 576 tokens of width 768
        x = image.reshape(1, TOKENS, WIDTH)
        wide = x.reshape(1, TOKENS * WIDTH // MLP, MLP)
        heads = x.view(1, TOKENS, HEADS, WIDTH // HEADS).transpose(1, 2)
        scores = heads @ heads.flip(2).transpose(-1, -2)
        ln32 = F.layer_norm(x.float(), (WIDTH,), self.ln.weight.float(), self.ln.bias.float()).to(x.dtype)
        return (self.k64(x.reshape(1, -1, 64)), self.k768(x), self.k3072(wide), self.k768_split(x),
                self.k3072_split(wide), one_stage_layer_norm(x, self.ln.weight, self.ln.bias), self.ln(x), ln32,
                torch.softmax(x.reshape(1, WIDTH, TOKENS) * 3.0, dim=-1), scores,
                torch.softmax(scores * 0.125, dim=-1) @ heads, F.gelu(x, approximate="tanh"))


def build() -> nn.Module:
    return OpProbe().eval()


def _fp16(v: np.ndarray) -> np.ndarray:
    return v.astype(np.float16).astype(np.float32)


def fp16_accumulation(a: np.ndarray, linear: nn.Linear) -> np.ndarray:
    """``linear(a)`` with fp16 operands and one fp16 running sum per output, rounded after each
    multiply-add in the order of the input features (a product of two fp16 numbers is exact in
    fp32, so each step is one fused multiply-add rounded to fp16), starting from the bias."""
    a = _fp16(a.reshape(-1, a.shape[-1]))
    w = _fp16(linear.weight.detach().numpy().T)
    if linear.bias is not None:
        acc = np.broadcast_to(_fp16(linear.bias.detach().numpy()), (a.shape[0], w.shape[1])).copy()
    else:
        acc = np.zeros((a.shape[0], w.shape[1]), np.float32)
    for k in range(a.shape[1]):
        acc = _fp16(acc + a[:, k:k + 1] * w[k:k + 1, :])
    return acc


def split_accumulation(a: np.ndarray, split: SplitLinear) -> np.ndarray:
    a = a.reshape(-1, a.shape[-1])
    y = fp16_accumulation(a[:, :SPLIT], split.parts[0])
    for i, part in enumerate(split.parts[1:], 1):
        y = _fp16(y + fp16_accumulation(a[:, i * SPLIT:(i + 1) * SPLIT], part))
    return y


def db(ref: np.ndarray, out: np.ndarray) -> float:
    from edgeml.runtime.metrics import sqnr_db

    return sqnr_db(torch.from_numpy(ref), torch.from_numpy(out).reshape(ref.shape))


def main() -> int:
    from edgeml.aarch64 import DEFAULT_CPUS, resolve_cpu
    from edgeml.aarch64.run import kernel_features, run_calls
    from edgeml.aarch64.setup import find_env
    from edgeml.export import export
    from edgeml.runtime.runners import make_runner

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="append", help="qemu CPU profile (repeatable; default cortex-a76, max,sme=off)")
    p.add_argument("--work", type=Path, default=Path("arm_fp16_ops"), help="the program goes here")
    args = p.parse_args()
    cpus = [resolve_cpu(c) for c in (args.cpu or DEFAULT_CPUS)]
    env = find_env()  # before any export: a missing environment is a one-line error

    start = time.time()
    model = build()
    artifact = export(model, format="pte", quantize="fp16", input_shape=(1, 3, 384, 384),
                      output_dir=args.work)
    x = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = [o.numpy() for o in model(x)]
    host = [o.numpy() for o in make_runner(artifact.path).run([x])]
    tokens = x.reshape(1, TOKENS, WIDTH).numpy()
    wide = tokens.reshape(1, -1, MLP)
    modelled = {0: fp16_accumulation(tokens.reshape(1, -1, 64), model.k64),
                1: fp16_accumulation(tokens, model.k768), 2: fp16_accumulation(wide, model.k3072),
                3: split_accumulation(tokens, model.k768_split), 4: split_accumulation(wide, model.k3072_split)}

    arm: dict[str, list[np.ndarray]] = {}
    features: dict[str, str] = {}
    for cpu in cpus:
        t = time.time()
        print(f"{cpu}: running {artifact.path.name} under qemu-user ...", flush=True)
        [outs], info = run_calls(env, artifact.path, "pte", [[x.numpy()]], cpu)
        arm[cpu], features[cpu] = outs, " ".join(kernel_features(info))
        print(f"{cpu}: done ({time.time() - t:.0f} s)", flush=True)

    print(f"\n## fp16 ops on the ARM cores (benchmarks/arm_fp16_ops.py)\n\n- command: {command()}\n"
          f"- machine: {machine()}\n- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n"
          f"- CPU profiles: " + "; ".join(f"{c} ({features[c]})" for c in cpus) +
          f"\n- one N(0, 1) input, random init (seed 0); wall time {(time.time() - start) / 60:.0f} min\n")
    headers = ["op", "x86 vs PyTorch dB"]
    for cpu in cpus:
        headers += [f"{cpu} vs PyTorch dB", f"{cpu} vs fp16-accumulation model dB"]
    headers += ["fp16-accumulation model vs PyTorch dB"]
    rows = []
    for i, name in enumerate(OpProbe.OUTPUTS):
        row = [name, f"{db(ref[i], host[i]):.1f}"]
        m = modelled.get(i)
        for cpu in cpus:
            row += [f"{db(ref[i], arm[cpu][i]):.1f}", f"{db(m, arm[cpu][i]):.1f}" if m is not None else ""]
        row.append(f"{db(ref[i], m):.1f}" if m is not None else "")
        rows.append(row)
    print_table(headers, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
