"""Hugging Face transformers' image classifiers through edgeml, beside ExecuTorch by hand and optimum-executorch.

The list is ``benchmarks/coverage_models.json``: every class of transformers'
``MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES``, at its default config and image size (or the
smallest published configuration where the default is not a vision model of at most ~100M
parameters), with the reason for each one that cannot run here at all. Each model is built once
with a seeded random init and saved with ``save_pretrained``; every tool then starts from that
directory, as a user would:

* edgeml: ``export(str(DIR))`` to ``.pte`` (XNNPACK) fp32 and int8 and to ``.onnx`` fp32; the
  delegation and the worst-image SQNR against eager PyTorch are the manifest's;
* ExecuTorch by hand, its documented recipe: ``from_pretrained``, ``torch.export.export``,
  ``to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])``, ``to_executorch``;
  delegation through ``get_delegation_info`` summarized by edgeml's helper, SQNR with
  ``measure_parity`` on the same photos and preprocessing;
* optimum-executorch: ``optimum-cli export executorch --recipe xnnpack`` in its own virtual
  environment (it pins its own transformers), the ``.pte`` then measured like the one by hand.

Then every ``.pte`` of the model and ONNX Runtime on edgeml's ``.onnx`` are timed alternately in
one run (ORT's spinning threads off, as ``edgeml profile --compare`` does). Each step runs in a
child process (a crash or a hang costs that step only) and its result is a JSON file in
``benchmarks/coverage_results`` (committed; the report reads nothing else), so an interrupted run
resumes, here or on another machine. The saved models, the programs and the logs go to the cache
(``~/.cache/edgeml/coverage``); where the cache lacks a model it is saved again (deterministic for
the list's seed), and timing needs the programs, so on a new machine ``--tools ...,timing --rerun``
exports them again. Run:

    nice -n 19 python benchmarks/coverage.py [--models a,b] [--tools t1,t2] [--cache DIR]
        [--results DIR] [--threads 2] [--rerun] [--report-only]

Steps run tool by tool across all models (edgeml fp32 .pte and .onnx first, then int8, then the
peers), so a partial run still covers every model for the first tools; with ``--jobs 2``, two
models at a time, each through all its export steps with one thread, then the timing one model
at a time (the whole list: about three hours on the 2-core benchmark machine).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
# benchmarks/kernels.py would shadow the ``kernels`` package transformers imports: this folder goes
# last on the path, for _common only.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]
LIST = HERE / "coverage_models.json"
DEFAULT_CACHE = Path.home() / ".cache" / "edgeml" / "coverage"
# The record of every step (small JSON files, committed): the report is made from these alone, so the
# table survives the cache (models, programs, logs: gigabytes, one machine's) and a run resumes on
# another machine with the steps it lacks.
DEFAULT_RESULTS = HERE / "coverage_results"
RESULTS = DEFAULT_RESULTS
DEFAULT_TIMING_BUDGET_S = 90.0  # per model: rounds = budget / (one round's time), 2 per loading - 200
TIMING_BUDGET_S = DEFAULT_TIMING_BUDGET_S
OPTIMUM_VENV = Path.home() / ".cache" / "edgeml" / "optimum-venv"
OPTIMUM_PINS = ("torch==2.13.0", "optimum-executorch==1.1.0")
TOOLS = ("save", "ceiling", "edgeml-pte", "edgeml-onnx", "timing", "edgeml-pte-int8", "executorch", "optimum")
STEP_TIMEOUT_S = 2400
FP32_DB, INT8_DB = 60.0, 25.0


# -- the list and the cache ----------------------------------------------------------------------------


def load_list() -> dict:
    return json.loads(LIST.read_text())


def result_path(key: str, tool: str) -> Path:
    return RESULTS / key / f"{tool}.json"


def read_result(key: str, tool: str) -> dict | None:
    p = result_path(key, tool)
    return json.loads(p.read_text()) if p.is_file() else None


def write_result(key: str, tool: str, result: dict) -> None:
    p = result_path(key, tool)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str))
    tmp.replace(p)


def model_dir(cache: Path, key: str) -> Path:
    return cache / "models" / key


def artifact_dir(cache: Path, key: str, tool: str) -> Path:
    return cache / "artifacts" / key / tool


def first_line(e: BaseException | str) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def input_size(entry: dict, cache: Path) -> int:
    if entry.get("input_size"):
        return int(entry["input_size"])
    cfg = json.loads((model_dir(cache, entry["key"]) / "config.json").read_text())
    cfg = cfg.get("vision_config", cfg)
    size = cfg.get("image_size", 224)
    return int(size[0] if isinstance(size, list) else size)


# -- the steps (each in a child process) --------------------------------------------------------------


def torch_no_grad(fn):
    def wrapped(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)
    return wrapped


def step_save(entry: dict, cache: Path, seed: int) -> dict:
    import torch
    import transformers

    out = model_dir(cache, entry["key"])
    config = transformers.AutoConfig.for_model(entry["model_type"], **entry.get("config", {}))
    cls = getattr(transformers, entry["class"])
    torch.manual_seed(seed)
    model = cls(config).eval()
    params = sum(p.numel() for p in model.parameters())
    _make_usable(model, entry, config)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(str(tmp))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.replace(out)
    return {"ok": True, "params_m": round(params / 1e6, 1), "input_size": input_size(entry, cache)}


CONV_NORM_SHIFT = 2.0


@torch_no_grad
def _make_usable(model, entry: dict, config) -> None:
    """A random init whose activations neither vanish nor explode, as edgeml's zoo makes them.

    transformers draws some models' normalization weights from N(0, 0.02) when it initializes
    randomly (MobileViT: every BatchNorm scales by ~0.016, the logits come out ~1e-41, below
    float32's normal range, so every parity figure would compare denormals). So the
    normalization layers take PyTorch's defaults (weight 1, bias 0), and the BatchNorm statistics
    are estimated on edgeml's sample photos (``edgeml.models._init.finish_random_init``, the zoo's
    random-init rule). The same rule for every model, deterministic for the seed.

    A convolutional network normalized this way is still chaotic: BatchNorm and GroupNorm centre
    every channel right before its rectifier, each layer then drops half its units, and a
    perturbation grows by ~2 dB per layer (60 dB of input noise comes out at 0 - 17 dB on HGNet-V2,
    BiT, MobileNet V1/V2, ResNet, RegNet and LeViT). A trained network is not; on a chaotic one
    int8 parity would measure the init's amplification, not the toolchain. So those
    normalizations start with bias ``CONV_NORM_SHIFT`` (in units of the normalized standard
    deviation): most units are active, the networks stay nonlinear, and the same noise comes out at
    about 50 - 70 dB (LeViT excepted; the report's "60 dB noise out" column). LayerNorm, the
    transformers' normalization, is left centred: those models are not chaotic (45 - 99 dB)."""
    from torch import nn

    from edgeml.models._init import finish_random_init
    from edgeml.models._registry import ModelConfig
    from edgeml.models.source import HuggingFaceVision

    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
    for m in model.modules():
        if isinstance(m, norms):
            m.reset_parameters()
            if m.bias is not None and not isinstance(m, nn.LayerNorm):
                m.bias.fill_(CONV_NORM_SHIFT)
    vision = getattr(config, "vision_config", None) or config
    size = entry.get("input_size") or getattr(vision, "image_size", 224)
    size = int(size[0] if isinstance(size, (list, tuple)) else size)
    finish_random_init(HuggingFaceVision(model), ModelConfig(name=entry["key"], family="huggingface",
                                                             resolution=size, stride=1))
    model.eval()


def step_edgeml(entry: dict, cache: Path, fmt: str, quantize: str) -> dict:
    import edgeml
    from edgeml.export import export

    out = artifact_dir(cache, entry["key"], f"edgeml-{fmt}-{quantize}")
    out.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    if entry.get("input_size"):
        kwargs["input_shape"] = (1, 3, entry["input_size"], entry["input_size"])
    if quantize != "none" and entry.get("int8"):
        # The list's per-model int8 options: min_sqnr and fp32_fallback (the mixed-precision search),
        # and scheme: "int8-dynamic" where activations are quantized per token at run time.
        options = dict(entry["int8"])
        quantize = options.pop("scheme", quantize)
        kwargs.update(options)
    t = time.perf_counter()
    try:
        art = export(str(model_dir(cache, entry["key"])), format=fmt, quantize=quantize, output_dir=out, **kwargs)
    except edgeml.EdgeMLError as e:
        stage, _, rest = first_line(e).partition(": ")
        return {"ok": False, "stage": stage if rest else "export", "error": first_line(e),
                "seconds": round(time.perf_counter() - t, 1)}
    m = art.manifest
    return {"ok": True, "path": str(art.path), "seconds": round(art.export_seconds, 1),
            "size_mb": round(art.size_bytes / 1e6, 2), "delegation": m.delegation,
            "quantization": _quantization_summary(m.quantization),
            "worst_sqnr_db": m.parity.get("worst_sqnr_db"), "top1": _top1(m.parity),
            "input_shape": list(m.inputs[0].shape), "preprocessing": m.preprocessing,
            "warnings": list(art.warnings)}


def _quantization_summary(quantization: dict | None) -> dict | None:
    """The manifest's scheme and layer counts: the "int8 layers" column, without the program."""
    if not quantization:
        return None
    return {"scheme": quantization.get("scheme"), "layers": quantization.get("layers")}


def _top1(parity: dict) -> float | None:
    for o in (parity.get("outputs") or {}).values():
        if "top1_agreement" in o:
            return o["top1_agreement"]
    return None


def step_ceiling(entry: dict, cache: Path) -> dict:
    """The model's own conditioning, on the photos (worst image): eager fp32 against eager fp64,
    and eager fp32 against itself on inputs carrying white noise 60 dB below them.

    No fp32 program can be expected to match eager fp32 much better than eager fp32 matches the
    exact (fp64) function: a randomly initialized network that amplifies rounding sits below
    60 dB here already, whatever the toolchain. The second figure is how much the network
    amplifies a small perturbation, which is what int8's rounding is: int8 parity cannot be much
    better than it."""
    import copy

    import torch

    from edgeml.images import load_image, sample_images
    from edgeml.runtime.metrics import sqnr_db

    _, reference = _reference(entry, cache)
    pre = _preprocessing(entry, cache)
    exact = copy.deepcopy(reference).double()
    generator = torch.Generator().manual_seed(0)
    worst = noisy = math.inf
    with torch.no_grad():
        for path in sample_images():
            x = pre(load_image(path))
            perturbed = x + x.std() * 1e-3 * torch.randn(x.shape, generator=generator)
            clean = reference(x)
            for a, b in zip(clean, exact(x.double())):
                worst = min(worst, sqnr_db(b, a))
            for a, b in zip(reference(perturbed), clean):
                noisy = min(noisy, sqnr_db(b, a))
    return {"ok": True, "fp32_vs_fp64_db": _rounded(worst), "input_noise_60db_out_db": _rounded(noisy)}


def _rounded(db: float) -> float:
    return round(db, 1) if math.isfinite(db) else db


def _reference(entry: dict, cache: Path):
    """The model as transformers loads it from the directory, and edgeml's wrapper of it."""
    import transformers

    from edgeml.models.source import HuggingFaceVision

    model = getattr(transformers, entry["class"]).from_pretrained(str(model_dir(cache, entry["key"])),
                                                                  local_files_only=True).float().eval()
    return model, HuggingFaceVision(model).eval()


def _preprocessing(entry: dict, cache: Path):
    from edgeml.images import Preprocessing
    from edgeml.models._registry import IMAGENET_MEAN, IMAGENET_STD

    edg = read_result(entry["key"], "edgeml-pte") or read_result(entry["key"], "edgeml-onnx") or {}
    if edg.get("ok"):  # the same photos, prepared the same way as for edgeml's parity
        return Preprocessing.from_dict(edg["preprocessing"])
    return Preprocessing.for_resolution(input_size(entry, cache), IMAGENET_MEAN, IMAGENET_STD)


def _pte_parity(entry: dict, cache: Path, pte: Path) -> dict:
    """Worst-image SQNR of a plain ``.pte`` (no manifest) against eager PyTorch on edgeml's photos."""
    import torch

    from edgeml.images import sample_images
    from edgeml.models._registry import ModelConfig
    from edgeml.runtime.runners import PteRunner
    from edgeml.runtime.verify import measure_parity

    _, reference = _reference(entry, cache)
    pre = _preprocessing(entry, cache)
    x = torch.zeros(1, 3, pre.crop, pre.crop)
    names = reference.output_names(x)
    config = ModelConfig(name=entry["key"], family="huggingface", resolution=pre.crop,
                         output="logits" if names and names[0] == "logits" else "output")
    runner = PteRunner(pte)
    with torch.no_grad():
        parity = measure_parity(lambda t: list(reference(t)), runner, sample_images(), pre, config,
                                output_names=names)
    return {"worst_sqnr_db": parity["worst_sqnr_db"], "top1": _top1(parity)}


def step_executorch(entry: dict, cache: Path) -> dict:
    """ExecuTorch's documented recipe on the saved directory, stage by stage."""
    import torch

    from edgeml.backends.xnnpack.lowering import _summarize

    out = artifact_dir(cache, entry["key"], "executorch")
    out.mkdir(parents=True, exist_ok=True)
    stage = "load"
    t = time.perf_counter()
    try:
        model, _ = _reference(entry, cache)
        size = input_size(entry, cache)
        x = torch.randn(1, 3, size, size)
        stage = "torch.export"
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.devtools.backend_debug import get_delegation_info
        from executorch.exir import to_edge_transform_and_lower

        with torch.no_grad():
            exported = torch.export.export(model, (), {"pixel_values": x})
        stage = "to_edge_transform_and_lower"
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        delegation = _summarize(get_delegation_info(edge.exported_program().graph_module)).to_dict()
        stage = "to_executorch"
        program = edge.to_executorch()
        path = out / f"{entry['key']}_executorch.pte"
        path.write_bytes(program.buffer)
        seconds = time.perf_counter() - t
        stage = "run"
        parity = _pte_parity(entry, cache, path)
    except Exception as e:
        return {"ok": False, "stage": stage, "error": f"{type(e).__name__}: {first_line(e)}",
                "seconds": round(time.perf_counter() - t, 1)}
    return {"ok": True, "path": str(path), "seconds": round(seconds, 1), "size_mb": round(path.stat().st_size / 1e6, 2),
            "delegation": delegation, **parity}


def _pte_portable_ops(path: Path) -> dict:
    """The operators a ``.pte`` runs outside its delegates (with how often), from its execution plan."""
    from collections import Counter

    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(path.read_bytes())
    program = getattr(program, "program", program)
    plan = program.execution_plan[0]
    counts: Counter = Counter()
    for chain in plan.chains:
        for ins in chain.instructions:
            args = ins.instr_args
            if type(args).__name__ == "KernelCall":
                op = plan.operators[args.op_index]
                counts[f"{op.name}.{op.overload}" if op.overload else op.name] += 1
    return dict(counts)


def step_optimum(entry: dict, cache: Path) -> dict:
    from edgeml.backends.xnnpack.lowering import COMPUTE_OPS

    cli = OPTIMUM_VENV / "bin" / "optimum-cli"
    if not cli.is_file():
        return {"ok": False, "stage": "install", "error": f"{cli} is missing: run this script with --setup-optimum"}
    out = artifact_dir(cache, entry["key"], "optimum")
    out.mkdir(parents=True, exist_ok=True)
    cmd = [str(cli), "export", "executorch", "--model", str(model_dir(cache, entry["key"])),
           "--task", "image-classification", "--recipe", "xnnpack", "--output_dir", str(out)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(out), timeout=STEP_TIMEOUT_S)
    seconds = time.perf_counter() - t
    ptes = sorted(out.glob("*.pte"))
    if proc.returncode != 0 or not ptes:
        lines = [ln for ln in (proc.stderr + proc.stdout).strip().splitlines() if ln.strip()]
        errors = [ln for ln in lines if "Error" in ln or "error" in ln]
        return {"ok": False, "stage": "export", "error": (errors[-1] if errors else (lines[-1] if lines else
                f"exit {proc.returncode}, no .pte"))[:300], "seconds": round(seconds, 1)}
    path = ptes[0]
    result: dict = {"ok": True, "path": str(path), "seconds": round(seconds, 1),
                    "size_mb": round(path.stat().st_size / 1e6, 2)}
    try:
        portable = _pte_portable_ops(path)
        compute_left = sum(n for op, n in portable.items() if any(f"{c}." in op + "." for c in COMPUTE_OPS))
        result["delegation"] = {"portable_ops": portable, "portable_compute": compute_left}
    except Exception as e:
        result["delegation"] = {"error": f"{type(e).__name__}: {first_line(e)}"}
    try:
        result.update(_pte_parity(entry, cache, path))
    except Exception as e:
        result.update(ok=False, stage="run", error=f"{type(e).__name__}: {first_line(e)}")
    return result


ARTIFACT_TOOLS = ("edgeml-pte", "edgeml-pte-int8", "executorch", "optimum", "edgeml-onnx")


def timed_artifacts(key: str) -> dict[str, str]:
    found = {}
    for tool in ARTIFACT_TOOLS:
        r = read_result(key, tool)
        if r and r.get("ok") and r.get("path") and Path(r["path"]).is_file():
            found[tool] = r["path"]
    return found


# How the rounds are laid out; a timing made another way is stale (timed again on the next run).
TIMING_METHOD = "random-round-order, balanced-load-orders"
# Where edgeml's .pte and ExecuTorch-by-hand's run within 10% of each other, the by-hand program is
# timed a second time, loaded separately, as a control: the per-round ratio of a program to itself
# shows how close to 1 a ratio can be told apart from 1 (ResNet: 1.002, interval 1.0002 - 1.003,
# 240 rounds; PP-LCNet: four copies of one file 0.5% apart).
CONTROL = "executorch-again"


def step_timing(entry: dict, cache: Path, threads: int, budget_s: float = 90.0) -> dict:
    """Every artifact of the model, one inference each per round (ORT not spinning), each round in
    a fresh random order, as ``edgeml profile --compare`` does (``interleaved_order``).

    With a rotating start, the same program always ran right after ONNX Runtime, and that one ran
    2 - 3% slower: that, not the programs, had made edgeml's PP-LCNet read 1.02 against ExecuTorch
    by hand, whose XNNPACK graph is the same node for node. The programs are also loaded once per
    artifact, each time in another order, so that each is loaded once from every position
    (``balanced_load_orders``), and a share of the rounds runs on each loading. Where the two are
    within 10%, ExecuTorch-by-hand's program runs twice per round, as the control (``CONTROL``)."""
    import gc

    import torch

    from edgeml.profile.compare import time_interleaved
    from edgeml.runtime.runners import PteRunner, make_runner

    found = timed_artifacts(entry["key"])
    if not found:
        return {"ok": False, "stage": "timing", "error": "no artifact to time", "artifacts": {}}

    def load(tool: str):
        path = found["executorch" if tool == CONTROL else tool]
        runner = (make_runner(path, threads=threads, spinning=False) if tool.startswith("edgeml")
                  else PteRunner(path, threads=threads))
        x = [torch.randn(*runner.input_shapes[0])]
        runner.run(x)  # completes loading
        return lambda: runner.run(x)

    # A first loading: the budget's number of rounds, and whether the control is needed.
    tools = list(found)
    runners = {tool: load(tool) for tool in tools}
    once: dict[str, float] = {}
    for _ in range(3):  # the fastest of three rounds (of one where a round takes seconds)
        for tool in tools:
            t = time.perf_counter()
            runners[tool]()
            once[tool] = min(once.get(tool, math.inf), time.perf_counter() - t)
        if sum(once.values()) > 1.0:
            break
    del runners
    gc.collect()
    if "edgeml-pte" in once and "executorch" in once and 0.9 < once["edgeml-pte"] / once["executorch"] < 1.1:
        tools.append(CONTROL)
        once[CONTROL] = once["executorch"]
    # Up to 200 rounds: with 15, a 2 ms model (PP-LCNet) read 1.049 (interval 1.020 - 1.061) against
    # ExecuTorch by hand; 200 rounds read 0.992 (0.984 - 1.002).
    total = max(2 * len(tools), min(200, int(budget_s / max(sum(once.values()), 1e-3))))
    timed = time_interleaved([lambda tool=tool: load(tool) for tool in tools], total)
    orders = [[tools[k] for k in order] for order in timed.orders]
    blocks, done = timed.rounds_per_order, sum(timed.rounds_per_order)
    samples = dict(zip(tools, timed.samples_ms))
    return {"ok": True, "artifacts": found, "exports": _export_dates(entry["key"], found), "rounds": done,
            "method": TIMING_METHOD, "threads": threads, "budget_s": budget_s,
            "load_orders": orders, "rounds_per_order": blocks, "load": _load(),
            "median_ms": {tool: round(statistics.median(s), 3) for tool, s in samples.items()},
            "samples_ms": {tool: [round(v, 3) for v in s] for tool, s in samples.items()}}


def timing_resolution(timing: dict) -> float | None:
    """How far from 1 the per-round ratio of ExecuTorch-by-hand's program to itself (loaded twice,
    the control) reads, at the ends of its ~95% interval: a ratio that close to 1 says nothing about
    two programs. None where the timing has no control."""
    control = paired_ratio(timing, CONTROL, "executorch")
    return None if control is None else max(control[2], 1 / control[0])


def paired_ratio(timing: dict, a: str, b: str) -> tuple[float, float, float] | None:
    """``a``'s time over ``b``'s, round by round (the two ran in the same round, so load that
    changes between rounds cancels): the median of those ratios and its ~95% distribution-free
    confidence interval (order statistics, the sign test's), as (low, median, high). A difference is
    resolved when the interval lies on one side of 1."""
    s = timing.get("samples_ms") or {}
    if a not in s or b not in s:
        return None
    ratios = sorted(x / y for x, y in zip(s[a], s[b], strict=True))
    n = len(ratios)
    k = int(n / 2 - 0.98 * math.sqrt(n))
    if n < 6 or k < 0:
        return None
    return ratios[k], statistics.median(ratios), ratios[n - 1 - k]


def _export_dates(key: str, tools) -> dict[str, str | None]:
    """When each timed program was exported (its result's date): a re-export makes the timing stale."""
    return {tool: (read_result(key, tool) or {}).get("date") for tool in tools}


def run_step(entry: dict, cache: Path, tool: str, seed: int, threads: int) -> dict:
    if tool == "save":
        return step_save(entry, cache, seed)
    if tool == "ceiling":
        return step_ceiling(entry, cache)
    if tool == "edgeml-pte":
        return step_edgeml(entry, cache, "pte", "none")
    if tool == "edgeml-pte-int8":
        return step_edgeml(entry, cache, "pte", "int8")
    if tool == "edgeml-onnx":
        return step_edgeml(entry, cache, "onnx", "none")
    if tool == "executorch":
        return step_executorch(entry, cache)
    if tool == "optimum":
        return step_optimum(entry, cache)
    if tool == "timing":
        return step_timing(entry, cache, threads, TIMING_BUDGET_S)
    raise ValueError(tool)


def worker(key: str, tool: str, cache: Path, threads: int) -> None:
    import warnings

    warnings.simplefilter("ignore")
    data = load_list()
    entry = next(m for m in data["models"] if m["key"] == key)
    try:
        result = run_step(entry, cache, tool, data.get("seed", 0), threads)
    except Exception as e:
        result = {"ok": False, "stage": tool, "error": f"crash: {type(e).__name__}: {first_line(e)}",
                  "traceback": traceback.format_exc()[-2000:]}
    result["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    write_result(key, tool, result)


# -- orchestration -------------------------------------------------------------------------------------


def needs_run(entry: dict, cache: Path, tool: str) -> bool:
    r = read_result(entry["key"], tool)
    if tool == "timing":
        # Timed again whenever the artifacts changed (a peer or int8 exported since, or one re-exported).
        found = timed_artifacts(entry["key"])
        return bool(found) and (set(found) != set((r or {}).get("artifacts", {}))
                                or _export_dates(entry["key"], found) != (r or {}).get("exports")
                                or (r or {}).get("method") != TIMING_METHOD)
    if r is None:
        return True
    return tool != "save" and not (model_dir(cache, entry["key"]) / "config.json").is_file()


def spawn(entry: dict, cache: Path, tool: str, threads: int, env: dict | None = None) -> None:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", entry["key"], tool, "--cache", str(cache),
           "--results", str(RESULTS), "--threads", str(threads), "--timing-budget", str(TIMING_BUDGET_S)]
    log = cache / "logs" / f"{entry['key']}.{tool}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    with open(log, "w") as f:
        try:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=str(cache), timeout=STEP_TIMEOUT_S,
                                  env=env)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    if rc != 0 and read_result(entry["key"], tool) is None or rc is None:
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-1:] or [""]
        why = f"timed out after {STEP_TIMEOUT_S} s" if rc is None else f"the process died (exit {rc}): {tail[0][:200]}"
        write_result(entry["key"], tool, {"ok": False, "stage": tool, "error": why})
    r = read_result(entry["key"], tool) or {}
    status = "ok" if r.get("ok") else f"FAILED {r.get('stage')}: {r.get('error')}"
    extra = f" {r.get('worst_sqnr_db')} dB" if r.get("worst_sqnr_db") is not None else ""
    print(f"  {entry['key']} {tool}: {status}{extra} ({time.perf_counter() - t:.0f} s, load {_load()})", flush=True)


def setup_optimum() -> None:
    """optimum-executorch in its own virtual environment, torch pinned to edgeml's (CPU) build."""
    py = OPTIMUM_VENV / "bin" / "python"
    if not py.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(OPTIMUM_VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", *OPTIMUM_PINS], check=True)


def optimum_versions() -> str:
    py = OPTIMUM_VENV / "bin" / "python"
    if not py.is_file():
        return "not installed"
    code = ("import importlib.metadata as m; print(', '.join(f'{p} {m.version(p)}' for p in "
            "('optimum-executorch', 'executorch', 'torch', 'transformers')))")
    proc = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    return proc.stdout.strip() or first_line(proc.stderr)


# -- the report ----------------------------------------------------------------------------------------


def _fmt_db(r: dict | None) -> str:
    if r is None:
        return ""
    if not r.get("ok"):
        return f"FAIL ({r.get('stage')})"
    v = r.get("worst_sqnr_db")
    return "inf" if v is not None and v > 1e30 else (f"{v:.1f}" if v is not None else "?")


def _int8_layers(r: dict | None) -> str:
    """Layers quantized of the layers the model has, from the artifact's manifest: fewer than all
    where the mixed-precision search kept some in fp32."""
    if not r or not r.get("ok"):
        return ""
    quantization = r.get("quantization") or {}
    layers = quantization.get("layers") or {}
    text = f"{layers['quantized']}/{layers['total']}" if "quantized" in layers else ""
    return text + " dynamic" if quantization.get("scheme") == "int8-dynamic" else text


def _compute(r: dict | None) -> str:
    if not r or not r.get("ok"):
        return ""
    d = r.get("delegation") or {}
    if "compute_total" in d:
        s = f"{d['compute_delegated']}/{d['compute_total']}"
    elif "portable_compute" in d:
        s = "all" if d["portable_compute"] == 0 else f"{d['portable_compute']} left"
    else:
        return "n/a"
    portable = d.get("portable_ops") or {}
    if portable:
        s += " (" + ", ".join(f"{k.replace('aten_', '').replace('_default', '')} x{n}"
                              for k, n in sorted(portable.items(), key=lambda kv: -kv[1])[:4]) + \
             (", ..." if len(portable) > 4 else "") + ")"
    return s


def all_compute_delegated(r: dict | None) -> bool:
    if not r or not r.get("ok"):
        return False
    d = r.get("delegation") or {}
    if "compute_total" in d:
        return d["compute_delegated"] == d["compute_total"]
    return d.get("portable_compute") == 0


def passes(r: dict | None, db: float, pte: bool = True) -> bool:
    return bool(r and r.get("ok") and (r.get("worst_sqnr_db") or -1e9) >= db and (not pte or all_compute_delegated(r)))


def report(cache: Path, models: list[dict], skipped: list[dict]) -> None:
    headers = ["model", "params M", "size", "fp32 ceiling dB", "60 dB noise out dB", "edgeml pte fp32 dB",
               "XNNPACK compute (portable ops)",
               "pte int8 dB", "int8 layers",
               "onnx fp32 dB", "ET by hand dB", "ET by hand compute", "optimum dB", "optimum compute",
               "pte ms", "int8 ms", "ET hand ms", "optimum ms", "ort ms", "pte/ET hand", "pte/ort"]
    rows, ratios_hand, failures = [], [], []
    for e in models:
        key = e["key"]
        R = {t: read_result(key, t) for t in TOOLS}
        timing = R["timing"] or {}
        # A program exported again after the timing has no time here (its cell stays empty).
        exported = _export_dates(key, timing.get("median_ms", {}))
        med = {t: v for t, v in timing.get("median_ms", {}).items()
               if exported.get(t) is not None and exported.get(t) == (timing.get("exports") or {}).get(t)}

        def ms(tool: str, med: dict = med) -> str:
            return f"{med[tool]:.1f}" if tool in med else ""

        def ratio(a: str, b: str, med: dict = med, timing: dict = timing) -> str:
            # The median of the per-round ratios (the two ran in the same rounds), not the ratio of medians.
            paired = paired_ratio(timing, a, b) if a in med and b in med else None
            return f"{paired[1]:.2f}" if paired else (f"{med[a] / med[b]:.2f}" if a in med and b in med else "")

        if "edgeml-pte" in med and "executorch" in med:
            paired = paired_ratio(timing, "edgeml-pte", "executorch")
            ratios_hand.append((key, paired[1] if paired else med["edgeml-pte"] / med["executorch"], paired,
                                timing_resolution(timing)))
        save = R["save"] or {}
        size = str(save.get("input_size") or "")
        if not size and (model_dir(cache, key) / "config.json").is_file():
            size = str(input_size(e, cache))
        ceiling = (R["ceiling"] or {}).get("fp32_vs_fp64_db", "")
        amplified = (R["ceiling"] or {}).get("input_noise_60db_out_db", "")
        rows.append([key, save.get("params_m", e.get("params_m", "")), size, ceiling, amplified,
                     _fmt_db(R["edgeml-pte"]), _compute(R["edgeml-pte"]), _fmt_db(R["edgeml-pte-int8"]),
                     _int8_layers(R["edgeml-pte-int8"]), _fmt_db(R["edgeml-onnx"]),
                     _fmt_db(R["executorch"]), _compute(R["executorch"]), _fmt_db(R["optimum"]),
                     _compute(R["optimum"]), ms("edgeml-pte"), ms("edgeml-pte-int8"), ms("executorch"),
                     ms("optimum"), ms("edgeml-onnx"), ratio("edgeml-pte", "executorch"),
                     ratio("edgeml-pte", "edgeml-onnx")])
        for tool in TOOLS:
            r = R[tool]
            if r is not None and not r.get("ok"):
                error, stage = re.sub(r"\x1b\[[0-9;]*m", "", str(r.get("error"))), str(r.get("stage"))
                failures.append(f"{key} / {tool}: {error if error.startswith(stage + ':') else stage + ': ' + error}")
    from _common import print_table

    print()
    print_table(headers, rows)
    n = len(models) + len(skipped)
    print(f"\n{len(models)} models run of {n} in the list; {len(skipped)} cannot run here: "
          + "; ".join(f"{s['key']} ({s['skip']})" for s in skipped))

    missing = {e["key"]: [t for t in TOOLS if read_result(e["key"], t) is None] for e in models}
    missing = {k: v for k, v in missing.items() if v}
    if missing:
        print("not run yet: " + "; ".join(f"{k} ({', '.join(v)})" for k, v in missing.items()))

    def line(tool: str, label: str, db: float, pte: bool) -> None:
        ran = [e for e in models if read_result(e["key"], tool) is not None]
        good = [e for e in ran if passes(read_result(e["key"], tool), db, pte)]
        what = "every compute op in XNNPACK and " if pte else ""
        print(f"{label}: {len(good)}/{n} of the list ({len(good)}/{len(ran)} of those run) export with "
              f"{what}worst-image SQNR >= {db:.0f} dB")

    for tool, label in (("edgeml-pte", "edgeml .pte fp32"), ("executorch", "ExecuTorch by hand"),
                        ("optimum", "optimum-executorch")):
        done = [r for r in (read_result(e["key"], tool) for e in models) if r and r.get("ok")]
        whole = [r for r in done if not (r.get("delegation") or {}).get("portable_ops", {"?": 1})]
        if done:
            print(f"{label}: {len(whole)}/{len(done)} of the programs it wrote leave no op at all to the portable "
                  f"kernels")
    line("edgeml-pte", "edgeml .pte fp32", FP32_DB, True)
    line("edgeml-pte-int8", "edgeml .pte int8", INT8_DB, False)
    line("edgeml-onnx", "edgeml .onnx fp32", FP32_DB, False)
    line("executorch", "ExecuTorch by hand", FP32_DB, True)
    line("optimum", f"optimum-executorch ({optimum_versions()})", FP32_DB, True)
    if ratios_hand:
        values = [v for _, v, _, _ in ratios_hand]
        slower, even = [], []
        for k, v, q, resolution in ratios_hand:
            if v <= 1.0:
                continue
            about = f"{k} {v:.3f} (interval {q[0]:.3f} - {q[2]:.3f}" if q else f"{k} {v:.3f} ("
            about += f"; control {resolution:.3f})" if resolution else ")"
            # Slower: the ratio's interval lies above 1, and above the control's (a program against itself).
            (slower if q is None or q[0] > max(1.0, resolution or 1.0) else even).append(about)
        print(f"edgeml .pte / ExecuTorch-by-hand latency (per-round ratio): median {statistics.median(values):.2f}, "
              f"max {max(values):.3f} over {len(values)} models both export; slower than by hand on: "
              f"{', '.join(slower) or 'none'}"
              + (f"; above 1 within the timing's resolution: {', '.join(even)}" if even else ""))
    if failures:
        print("\nfailures:")
        for f in failures:
            print(f"  {f}")


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", help="comma-separated keys of coverage_models.json (default: all)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, in this order: {','.join(TOOLS)}")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="the saved models, the programs and the logs (default: %(default)s)")
    ap.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                    help="each step's result, which the report reads (default: benchmarks/coverage_results)")
    ap.add_argument("--threads", type=int, default=2, help="threads of the timed programs")
    ap.add_argument("--timing-budget", type=float, default=DEFAULT_TIMING_BUDGET_S, metavar="S",
                    help="seconds of timed rounds per model (default: %(default)s; "
                         "at least 2 rounds per loading, at most 200)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="models exported at once, each through all its steps (timing still one at a time)")
    ap.add_argument("--rerun", action="store_true", help="run the chosen steps again even if cached")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--setup-optimum", action="store_true", help=f"install {' '.join(OPTIMUM_PINS)} in {OPTIMUM_VENV}")
    ap.add_argument("--worker", nargs=2, metavar=("KEY", "TOOL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    cache = args.cache.expanduser().resolve()
    global RESULTS, TIMING_BUDGET_S
    RESULTS = args.results.expanduser().resolve()
    TIMING_BUDGET_S = args.timing_budget
    if args.worker:
        worker(args.worker[0], args.worker[1], cache, args.threads)
        return
    from _common import machine

    print(f"command: {' '.join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])}")
    print(f"machine: {machine()}\ndate: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}")
    print(f"load average at start: {_load()}; threads {args.threads}; cache {cache}", flush=True)
    if args.setup_optimum:
        setup_optimum()
    data = load_list()
    wanted = set(args.models.split(",")) if args.models else None
    chosen = [m for m in data["models"] if wanted is None or m["key"] in wanted]
    if wanted:
        unknown = wanted - {m["key"] for m in data["models"]}
        if unknown:
            sys.exit(f"not in {LIST.name}: {', '.join(sorted(unknown))}")
    models = [m for m in chosen if "skip" not in m]
    skipped = [m for m in chosen if "skip" in m]
    if not args.report_only:
        # Timing comes twice: after the fp32 exports, and again once int8 and the peers added artifacts.
        tools = [t for t in (*TOOLS, "timing") if t in args.tools.split(",")]
        if tools.count("timing") == 2 and tools.index("timing") == len(tools) - 2:
            tools.pop()  # nothing comes between the two timings
        elif tools.count("timing") == 2 and "edgeml-onnx" not in tools:
            tools.remove("timing")  # without ONNX Runtime, timing waits for the peers
        # Smallest first, so a run cut short has covered the most models.
        order = sorted(models, key=lambda m: m.get("params_m", 0))

        def step(entry: dict, tool: str, env: dict | None = None) -> None:
            if tool != "save" and not (model_dir(cache, entry["key"]) / "config.json").is_file():
                saved = read_result(entry["key"], "save")
                if saved is not None and not saved.get("ok"):
                    return  # saving failed
                spawn(entry, cache, "save", args.threads, env)  # saved (again: it is deterministic) when first needed
                if not (model_dir(cache, entry["key"]) / "config.json").is_file():
                    return
            cached_steps = ("ceiling", "edgeml-pte", "edgeml-onnx", "edgeml-pte-int8", "executorch", "optimum")
            if tool in cached_steps and not (args.rerun or read_result(entry["key"], tool) is None):
                return
            if tool == "save" and not args.rerun and (model_dir(cache, entry["key"]) / "config.json").is_file():
                return
            if tool == "timing" and not (args.rerun or needs_run(entry, cache, tool)):
                return
            spawn(entry, cache, tool, args.threads, env)

        if args.jobs > 1:
            # Several models at once, each through all its export steps, each process with its share
            # of the cores (two processes of two threads on two cores run several times slower than
            # one); then the timing, one model at a time on the quiet machine.
            from concurrent.futures import ThreadPoolExecutor

            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // args.jobs))}
            exports = [t for t in tools if t != "timing"]
            print(f"{', '.join(exports)}: {args.jobs} models at a time", flush=True)
            with ThreadPoolExecutor(args.jobs) as pool:
                list(pool.map(lambda entry: [step(entry, tool, env) for tool in exports], order))
            if "timing" in tools:
                print("timing:", flush=True)
                for entry in order:
                    step(entry, "timing")
        else:
            for tool in tools:
                if tool == "save" and len(tools) > 1:
                    continue
                print(f"{tool}:", flush=True)
                for entry in order:
                    step(entry, tool)
    report(cache, models, skipped)
    print(f"\nload average at end: {_load()}")


if __name__ == "__main__":
    main()
