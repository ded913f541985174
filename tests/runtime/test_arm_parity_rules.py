"""benchmarks/arm_parity.py's note column: which ARM-vs-x86 differences are findings."""
import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def arm_parity():
    spec = importlib.util.spec_from_file_location("arm_parity", ROOT / "benchmarks" / "arm_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_verdicts(arm_parity):
    v = arm_parity._verdict
    assert v("int8", 31.7, 31.7, math.inf) == "bit-identical"
    assert v("none", 120.0, 121.0, 124.0) == "fp32 rounding"
    assert v("none", 120.0, 60.0, 62.0).startswith("FINDING")  # fp32 has no int8 steps to excuse it
    assert v("int8", 31.7, 31.4, 38.7).startswith("int8 steps")  # as close to PyTorch: one-step flips
    assert v("int8", 31.7, 30.9, 38.7).startswith("FINDING")  # further from PyTorch than x86
    assert v("fp16", 45.2, 48.6, 45.5) == "fp16 rounding"
    assert v("fp16", 45.2, 29.0, 30.0).startswith("FINDING")  # below fp16's 30 dB
    assert v("fp16", 26.2, 26.2, 37.2) == "fp16 rounding"  # below 30 on x86 already, as close on ARM
    assert v("fp16", 26.2, 25.0, 37.2).startswith("FINDING")
    # An x86 host without fp16 arithmetic computes the fp16 program in fp32 (57.8 dB): ARM's fp16
    # math need not match that, only what fp16 arithmetic gives (MobileMamba-B4 on cortex-a76).
    assert v("fp16", 57.8, 48.6, 49.2) == "fp16 rounding"
    assert v("fp16", 57.8, 38.0, 39.0).startswith("FINDING")  # below what fp16 arithmetic gives
    assert v("fp16", 45.2, 38.0, 40.0).startswith("FINDING")  # more than 6 dB below an fp16 x86 run


def test_rescore_rewrites_only_its_own_tables(arm_parity, tmp_path):
    md = tmp_path / "results.md"
    other = "| model | scheme | note |\n|---|---|---|\n| x | int8 | keep me |\n"
    ours = ("| model | scheme | CPU | x86 vs PyTorch dB | ARM vs PyTorch dB | ARM vs x86 dB | note |\n"
            "|---|---|---|---|---|---|---|\n"
            "| a | int8 | cortex-a76 | 31.7 | 31.7 | 38.7 | FINDING: differs beyond fp32 rounding |\n"
            "| a | fp32 | cortex-a76 | 120.0 | 120.0 | identical | old |\n"
            "| b | int8 | - | 20.0 | - | - | not run: ValueError |\n")
    md.write_text("# R\n\n" + other + "\ntext\n\n" + ours)
    assert arm_parity.rescore(md) == 2
    text = md.read_text()
    assert "keep me" in text and "not run: ValueError" in text
    assert "| a | int8 | cortex-a76 | 31.7 | 31.7 | 38.7 | int8 steps:" in text
    assert "| a | fp32 | cortex-a76 | 120.0 | 120.0 | identical | bit-identical |" in text


def test_models_take_resolution_builder_arguments_and_schemes(arm_parity):
    parse = arm_parity.parse_model
    assert parse("fastvithd@256", ["none", "int8"]) == ("fastvithd", 256, {}, ["none", "int8"])
    assert parse("siglip_so400m_384[depth=2]:none+fp16", ["int8"]) == \
        ("siglip_so400m_384", None, {"depth": 2}, ["none", "fp16"])
    assert parse("bluelm_tile_encoder_b16@384[depth=1;llm_width=1024]", ["none"]) == \
        ("bluelm_tile_encoder_b16", 384, {"depth": 1, "llm_width": 1024}, ["none"])
    assert arm_parity.model_label("siglip_so400m_384", None, {"depth": 2}) == "siglip_so400m_384[depth=2]"
    with pytest.raises(SystemExit, match="end with"):
        parse("siglip_so400m_384[depth=2", ["none"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        parse("siglip_so400m_384[2]", ["none"])
