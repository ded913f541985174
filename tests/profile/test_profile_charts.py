"""Host side of edgeml profile: --compare (interleaved), --plot (real PNGs), --resolutions (dynamic sizes).

The artifacts are real XNNPACK programs of a tiny network (profile_helpers.TinyNet, with one op
XNNPACK does not take, so the charts have delegated and portable bars), exported once per module.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest
from PIL import Image
from profile_helpers import tiny_pte

from edgeml.cli import main
from edgeml.errors import InputShapeError
from edgeml.profile import plot
from edgeml.profile.compare import (
    STAT_LABELS,
    Comparison,
    balanced_load_orders,
    compare_on_host,
    interleaved_order,
    split_rounds,
)
from edgeml.profile.host import ProfileReport, describe_device, latency_stats
from edgeml.profile.plot import DELEGATED_COLOR, PNG_SIZE, PORTABLE_COLOR
from edgeml.profile.resolution import sweep_resolutions


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    return {
        "small": tiny_pte(folder, "tinynet_xnnpack_fp32.pte", width=8),
        # 8x the channels and 3 body convolutions: many times the arithmetic of "small".
        "large": tiny_pte(folder, "tinynetwide_xnnpack_fp32.pte", width=64, depth=3),
        "dynamic": tiny_pte(folder, "tinynetdyn_xnnpack_fp32.pte", width=16, dynamic=(32, 256)),
    }


def _png(path):
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG"
        return img.convert("RGB")


def _has_color(img, hex_color: str, min_pixels: int = 50) -> bool:
    rgb = tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    counts = {color: n for n, color in img.getcolors(maxcolors=img.width * img.height)}
    return counts.get(rgb, 0) >= min_pixels


def test_interleaved_order_gives_every_artifact_every_predecessor():
    n, rounds = 4, 400
    sequence = [i for r in range(rounds) for i in interleaved_order(r, n)]
    assert all(sorted(interleaved_order(r, n)) == list(range(n)) for r in range(rounds))
    assert interleaved_order(7, n) == interleaved_order(7, n)  # repeatable
    # Which artifact runs right before which: a fixed rotation would give each one a single
    # predecessor among the others (the one after ONNX Runtime always the same).
    follows = Counter(zip(sequence, sequence[1:]))
    for b in range(n):
        before = [follows[(a, b)] for a in range(n) if a != b]
        assert min(before) > 0.6 * max(before), (b, before)
    firsts = Counter(interleaved_order(r, n)[0] for r in range(rounds))
    assert min(firsts.values()) > 0.6 * max(firsts.values())


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_balanced_load_orders_put_each_artifact_in_each_position_once(n):
    orders = balanced_load_orders(n)
    assert len(orders) == n
    assert all(sorted(order) == list(range(n)) for order in orders)
    for position in range(n):
        assert sorted(order[position] for order in orders) == list(range(n))


def test_split_rounds():
    assert split_rounds(10, 4) == [3, 3, 2, 2]
    assert split_rounds(2, 3) == [1, 1, 0]
    assert sum(split_rounds(199, 4)) == 199


def test_compare_loads_each_artifact_from_each_position(tiny, monkeypatch):
    import edgeml.profile.compare as compare

    loaded = []
    real = compare.make_runner
    monkeypatch.setattr(compare, "make_runner", lambda o, **kw: loaded.append(o.path.name) or real(o, **kw))
    comparison = compare_on_host([tiny["small"], tiny["large"]], runs=5, warmup=1)
    small, large = tiny["small"].name, tiny["large"].name
    assert loaded == [small, large, large, small]
    assert [len(r.latency_ms) for r in comparison.reports] == [5, 5]
    # Fewer rounds than artifacts: one loading, every round timed.
    loaded.clear()
    compare_on_host([tiny["small"], tiny["large"]], runs=1, warmup=0)
    assert loaded == [small, large]


def test_single_profile_with_plot_and_json(tiny, tmp_path, capsys):
    png, out_json = tmp_path / "ops.png", tmp_path / "ops.json"
    assert main(["profile", str(tiny["small"]), "--runs", "12", "--warmup", "2", "--per-op",
                 "--plot", str(png), "--json", str(out_json)]) == 0
    assert "p50" in capsys.readouterr().out
    img = _png(png)
    assert img.size == PNG_SIZE
    # Delegated (XNNPACK) and portable (the flip, the mean) bars, each in its own colour.
    assert _has_color(img, DELEGATED_COLOR) and _has_color(img, PORTABLE_COLOR)
    report = json.loads(out_json.read_text())
    assert len(report["latency_ms"]) == 12 and report["input_shapes"] == [[1, 3, 64, 64]]
    where = {o["delegated"] for o in report["per_op"]}
    assert where == {True, False}


def test_compare_on_host(tiny, tmp_path, capsys):
    png, out_json = tmp_path / "cmp.png", tmp_path / "cmp.json"
    assert main(["profile", str(tiny["small"]), str(tiny["large"]), "--compare", "--runs", "15", "--warmup", "2",
                 "--plot", str(png), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "trimmed ratio" in printed and "tinynetwide_xnnpack_fp32.pte" in printed
    data = json.loads(out_json.read_text())
    assert [len(r["latency_ms"]) for r in data["reports"]] == [15, 15]
    small, large = data["ratios"]
    assert small["p50"] == pytest.approx(1.0) and small["trimmed_mean"] == pytest.approx(1.0)
    # The wide network does about 100x the arithmetic; even on a busy machine it is clearly slower.
    assert large["p50"] > 2 and large["trimmed_mean"] > 2
    assert large["p50"] == pytest.approx(data["reports"][1]["stats"]["p50"] / data["reports"][0]["stats"]["p50"])
    assert _png(png).size == PNG_SIZE


def test_compare_api_times_every_artifact_every_round(tiny):
    calls = []
    comparison = compare_on_host([tiny["small"], tiny["small"]], runs=4, warmup=1, on_run=lambda: calls.append(1))
    assert len(calls) == 2 * (4 + 1)
    assert [len(r.latency_ms) for r in comparison.reports] == [4, 4]
    assert "peak_rss_mb" in comparison.reports[0].unavailable


def test_compare_keeps_onnx_runtime_from_spinning(tiny, monkeypatch):
    # ORT's intra-op threads busy-wait after a run by default; interleaved with another runtime on
    # a small machine they slow it down (MobileMamba T2 .pte: 9.5 -> 20.4 ms on the 2-core VM).
    import edgeml.profile.compare as compare

    seen = []
    real = compare.make_runner
    monkeypatch.setattr(compare, "make_runner", lambda o, **kw: seen.append(kw) or real(o, **kw))
    compare_on_host([tiny["small"], tiny["small"]], runs=1, warmup=0)
    assert [kw.get("spinning") for kw in seen] == [False, False]


def test_onnx_runner_spinning_option(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgeml.backends.ort.runner import OnnxRunner

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    entry = "session.intra_op.allow_spinning"
    quiet = OnnxRunner(path, threads=2, spinning=False).session.get_session_options()
    assert quiet.get_session_config_entry(entry) == "0"
    default = OnnxRunner(path, threads=2).session.get_session_options()
    with pytest.raises(Exception, match="does not have configuration"):  # ORT's own default: spinning
        default.get_session_config_entry(entry)


def test_resolutions_sweep(tiny, tmp_path, capsys):
    png, out_json = tmp_path / "res.png", tmp_path / "res.json"
    assert main(["profile", str(tiny["dynamic"]), "--resolutions", "64,128,256", "--runs", "8", "--warmup", "2",
                 "--plot", str(png), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "64x64" in printed and "256x256" in printed and "ms/MP" in printed
    data = json.loads(out_json.read_text())
    assert data["resolutions"] == [64, 128, 256]
    assert [r["input_shapes"][0] for r in data["reports"]] == [[1, 3, s, s] for s in (64, 128, 256)]
    p50 = [r["stats"]["p50"] for r in data["reports"]]
    assert p50[2] > p50[0]  # 16x the pixels
    assert _png(png).size == PNG_SIZE


def test_resolutions_outside_the_range_or_on_a_static_artifact(tiny, capsys):
    with pytest.raises(InputShapeError, match="32..256 x 32..256 pixels; 512 is outside"):
        sweep_resolutions(tiny["dynamic"], [64, 512], runs=1, warmup=0)
    assert main(["profile", str(tiny["small"]), "--resolutions", "64,128"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "static 64x64 input, so it cannot run at 128x128" in err[0]
    assert "export it with a dynamic resolution" in err[0]
    # Its own size is fine.
    [report] = sweep_resolutions(tiny["small"], [64], runs=2, warmup=0)
    assert report.input_shapes == [[1, 3, 64, 64]]


def test_usage_errors(tiny, capsys):
    for argv, expected in (
        (["profile", str(tiny["small"]), "--compare"], "at least two artifacts"),
        (["profile", str(tiny["small"]), str(tiny["large"])], "add --compare"),
        (["profile", str(tiny["small"]), "--resolutions", "64,x"], "expected integers"),
        (["profile", str(tiny["small"]), "--plot", "chart.svg"], "name it FILE.png"),
        (["profile", str(tiny["small"]), str(tiny["large"]), "--compare", "--resolutions", "64"], "for one artifact"),
    ):
        assert main(argv) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], (argv, err)


def _report(name: str, latency_ms: list[float], device: dict) -> ProfileReport:
    return ProfileReport(artifact=name, model=name.split("_")[0], format="pte", quantization="none", device=device,
                         threads=None, runs=len(latency_ms), warmup=0, load_ms=1.0, latency_ms=latency_ms,
                         stats=latency_stats(latency_ms), delegation={}, peak_rss_mb=None, rss_increase_mb=None)


def _drawn(monkeypatch):
    """Figures the plot functions would save, kept open for inspection."""
    figures = []
    monkeypatch.setattr(plot, "_save", lambda plt, fig, path: figures.append(fig))
    return figures


def _edges(container) -> list[float]:
    bars = list(container)
    return [b.get_x() for b in bars] + [bars[-1].get_x() + bars[-1].get_width()]


@pytest.mark.parametrize("slow_ms, log", [(1.3, False), (20.0, True)], ids=["close", "far-apart"])
def test_compare_chart_same_bins_machine_in_title_readable_legend(monkeypatch, slow_ms, log):
    device = {"kind": "host", "processor": "Example CPU 9000", "cores": 8}
    fast = [1.0 + 0.01 * i for i in range(30)]
    slow = [slow_ms + 0.05 * slow_ms * (i % 7) for i in range(30)]
    reports = [_report("a_xnnpack_fp32.pte", fast, device), _report("b_xnnpack_fp32.pte", slow, device)]
    figures = _drawn(monkeypatch)
    ratios = Comparison(reports, 30, "interleaved").ratios()
    plot.plot_comparison(reports, ratios, "cmp.png")
    [fig] = figures
    ax_hist, ax_ratio = fig.axes
    first, second = ax_hist.containers
    assert _edges(first) == pytest.approx(_edges(second))  # one set of bins for both histograms
    widths = [b.get_width() for b in first]
    assert bool(max(widths) / min(widths) > 1.5) is log  # log-spaced only when the latencies are far apart
    assert ax_hist.get_xscale() == ("log" if log else "linear")
    assert sum(b.get_height() for b in first) == 30 and sum(b.get_height() for b in second) == 30
    title = fig._suptitle.get_text()
    assert describe_device(device) in title and "Example CPU 9000 (8 cores)" in title
    labels = [t.get_text() for t in ax_ratio.get_legend().get_texts()]
    assert labels == [STAT_LABELS["p50"], STAT_LABELS["trimmed_mean"]] == ["median (p50)", "trimmed mean (middle 80%)"]
    assert [t.get_text() for t in ax_hist.get_legend().get_texts()] == [r.artifact for r in reports]


def test_single_and_resolution_charts_name_the_machine_and_the_statistics(monkeypatch):
    device = {"kind": "adb", "brand": "google", "model": "Pixel 8", "abi": "arm64-v8a", "soc": "Tensor G3",
              "os": "Android 14", "serial": "R5CT12345"}
    report = _report("a_xnnpack_fp32.pte", [2.0 + 0.1 * i for i in range(20)], device)
    report.input_shapes = [[1, 3, 64, 64]]
    figures = _drawn(monkeypatch)
    plot.plot_report(report, "one.png")
    plot.plot_resolutions([report], "res.png")
    for fig in figures:
        assert describe_device(device) in fig._suptitle.get_text()
    legend = [t.get_text() for t in figures[0].axes[1].get_legend().get_texts()]
    assert [text.rsplit(" ", 2)[0] for text in legend] == ["median (p50)", "trimmed mean (middle 80%)"]
    assert not any("_" in text for text in legend)


def test_shared_bin_edges():
    edges, log = plot.shared_bin_edges([[1.0, 2.0], [1.5, 3.0]], bins=4)
    assert edges == pytest.approx([1.0, 1.5, 2.0, 2.5, 3.0]) and not log
    edges, log = plot.shared_bin_edges([[1.0], [100.0]], bins=2)
    assert edges == pytest.approx([1.0, 10.0, 100.0]) and log
    edges, log = plot.shared_bin_edges([[5.0, 5.0], [5.0]])
    assert len(edges) == 2 and edges[0] < 5.0 < edges[1]
