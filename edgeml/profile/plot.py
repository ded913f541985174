"""Charts of profile reports (``edgeml profile --plot FILE.png``), drawn with matplotlib's Agg backend.

* one artifact: per-operator time as horizontal bars (the 20 most expensive operators, delegated
  and portable in different colours) next to a histogram of the single-run latencies;
* ``--compare``: the latency histograms of all artifacts overlaid on the same bins (log-spaced,
  on a log axis, when the latencies span more than ``LOG_BINS_ABOVE`` times), next to bars of the
  median and trimmed-mean ratios against the first artifact;
* ``--resolutions``: latency against input resolution (p50 with the min..p90 range).

Every figure is ``FIGSIZE`` inches at ``DPI``, so the PNG is always ``PNG_SIZE`` pixels, and is
titled with the artifact(s) and the machine (``host.describe_device``). Statistics are named as
in ``compare.STAT_LABELS``. A panel whose figures the report lacks (a phone's app reports no
single runs) says why instead.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgeml.profile.compare import STAT_LABELS
from edgeml.profile.host import ProfileReport, describe_device

FIGSIZE = (12.0, 5.0)
DPI = 100
PNG_SIZE = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
DELEGATED_COLOR = "#1f77b4"
PORTABLE_COLOR = "#d62728"
TOP_OPS = 20
HIST_BINS = 40
LOG_BINS_ABOVE = 4.0  # max / min latency beyond which the shared bins are log-spaced
RATIO_COLORS = {"p50": "#2ca02c", "trimmed_mean": "#9467bd"}


def shared_bin_edges(samples: Sequence[Sequence[float]], bins: int = HIST_BINS) -> tuple[list[float], bool]:
    """One set of histogram bin edges for every sample list, and whether they are log-spaced.

    Overlaid histograms compare only on the same edges. Linear edges from the smallest to the
    largest latency of all lists; when the largest is more than ``LOG_BINS_ABOVE`` times the
    smallest, log-spaced edges (drawn on a log axis), so a fast artifact's runs are not squeezed
    into one bin beside a slow one's.
    """
    values = [v for s in samples for v in s]
    if not values:
        raise ValueError("no samples to bin")
    lo, hi = min(values), max(values)
    if hi <= lo:  # every run took the same time: one narrow bin around it
        pad = max(abs(lo) * 0.01, 1e-6)
        lo, hi, bins = lo - pad, hi + pad, 1
    if lo > 0 and hi / lo > LOG_BINS_ABOVE:
        import math

        a, b = math.log(lo), math.log(hi)
        return [math.exp(a + (b - a) * i / bins) for i in range(bins + 1)], True
    return [lo + (hi - lo) * i / bins for i in range(bins + 1)], False


def _figure(ncols: int = 2):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=FIGSIZE, dpi=DPI)
    return plt, fig, axes


def _save(plt, fig, path: str | Path) -> Path:
    import io

    from edgeml.manifest import atomic_write_bytes

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)  # no bbox_inches: the size stays PNG_SIZE
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _message(ax, text: str) -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10, transform=ax.transAxes)


def _where(report: ProfileReport, delegated: bool) -> str:
    if not delegated:
        return "portable kernels"
    return "XNNPACK delegate" if report.format == "pte" else "ONNX Runtime CPU"


def plot_report(report: ProfileReport, path: str | Path, top: int = TOP_OPS) -> Path:
    """Per-operator bars (top ``top``) and the latency histogram of one report."""
    plt, fig, (ax_ops, ax_hist) = _figure()
    ops = report.per_op[:top]
    if ops:
        ops = ops[::-1]  # most expensive at the top
        colors = [DELEGATED_COLOR if o.delegated else PORTABLE_COLOR for o in ops]
        ax_ops.barh(range(len(ops)), [o.total_ms for o in ops], color=colors)
        ax_ops.set_yticks(range(len(ops)), [o.name[:40] for o in ops], fontsize=7)
        ax_ops.set_xlabel(f"ms per inference (mean of {report.per_op_runs} instrumented runs)")
        shown = {o.delegated for o in ops}
        from matplotlib.patches import Patch

        ax_ops.legend(handles=[Patch(color=DELEGATED_COLOR if d else PORTABLE_COLOR, label=_where(report, d))
                               for d in (True, False) if d in shown], loc="lower right", fontsize=8)
        more = f" (top {top} of {len(report.per_op)})" if len(report.per_op) > top else ""
        ax_ops.set_title(f"per-operator time{more}", fontsize=10)
    else:
        _message(ax_ops, "per-operator time not available:\n" + report.unavailable.get("per_op", "no data"))
    if report.latency_ms:
        ax_hist.hist(report.latency_ms, bins=min(30, max(5, len(report.latency_ms) // 3)), color="#7f7f7f")
        for key, style in (("p50", "-"), ("trimmed_mean", "--")):
            value = report.stats.get(key)
            if value is not None:
                ax_hist.axvline(value, color="black", linestyle=style, label=f"{STAT_LABELS[key]} {value:.2f} ms")
        ax_hist.legend(fontsize=8)
        ax_hist.set_xlabel("latency (ms)")
        ax_hist.set_ylabel("runs")
        ax_hist.set_title(f"latency of {len(report.latency_ms)} runs after {report.warmup} warm-up", fontsize=10)
    else:
        s = report.stats
        figures = ", ".join(f"{STAT_LABELS[k]} {s[k]:.2f} ms" for k in ("mean", "trimmed_mean") if s.get(k) is not None)
        _message(ax_hist, "no single-run latencies: " + report.unavailable.get("latency_ms", "no data")
                 + (f"\n{figures}" if figures else ""))
    fig.suptitle(f"{report.artifact} on {describe_device(report.device)}", fontsize=11)
    return _save(plt, fig, path)


def plot_comparison(reports: Sequence[ProfileReport], ratios: Sequence[dict], path: str | Path) -> Path:
    """Overlaid latency histograms (the same bins for every artifact) and bars of the ratios against the first."""
    plt, fig, (ax_hist, ax_ratio) = _figure()
    with_runs = [r for r in reports if r.latency_ms]
    if with_runs:
        edges, log = shared_bin_edges([r.latency_ms for r in with_runs])
        for r in with_runs:
            ax_hist.hist(r.latency_ms, bins=edges, alpha=0.5, label=r.artifact[:40])
        if log:
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            ax_hist.set_xscale("log")
            ax_hist.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax_hist.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax_hist.xaxis.set_minor_formatter(NullFormatter())
        ax_hist.legend(fontsize=7)
        ax_hist.set_xlabel("latency (ms" + (", log scale)" if log else ")"))
        ax_hist.set_ylabel("runs")
        runs = with_runs[0].runs
        ax_hist.set_title(f"latency of {runs} interleaved runs each, same {len(edges) - 1} bins"
                          + (" (log-spaced)" if log else ""), fontsize=10)
    else:
        _message(ax_hist, "no single-run latencies: " + reports[0].unavailable.get("latency_ms", "no data"))
    names = [str(row["artifact"])[:40] for row in ratios]
    y = list(range(len(names)))[::-1]
    drawn, largest = False, 1.0
    for offset, key in ((-0.2, "p50"), (0.2, "trimmed_mean")):
        values = [row[key] for row in ratios]
        if all(v is not None for v in values):
            bars = ax_ratio.barh([v + offset for v in y], values, height=0.4, color=RATIO_COLORS[key],
                                 label=STAT_LABELS[key])
            ax_ratio.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
            drawn, largest = True, max(largest, *values)
    if drawn:
        ax_ratio.set_xlim(0, largest * 1.12)  # room for the value labels
        ax_ratio.axvline(1.0, color="black", linewidth=0.8)
        ax_ratio.set_yticks(y, names, fontsize=7)
        ax_ratio.set_xlabel(f"latency / latency of {names[0]}")
        ax_ratio.legend(fontsize=8)
        ax_ratio.set_title("ratios against the first artifact (below 1 = faster)", fontsize=10)
    else:
        _message(ax_ratio, "no ratios to draw")
    fig.suptitle(f"{len(reports)} artifacts compared on {describe_device(reports[0].device)}", fontsize=11)
    return _save(plt, fig, path)


def plot_resolutions(reports: Sequence[ProfileReport], path: str | Path) -> Path:
    """p50 latency (min..p90 as error bars) and ms per megapixel against the input resolution."""
    plt, fig, (ax_lat, ax_mp) = _figure()
    res = [r.input_shapes[0][-1] for r in reports]
    p50 = [r.stats["p50"] for r in reports]
    lower = [r.stats["p50"] - r.stats["min"] for r in reports]
    upper = [r.stats["p90"] - r.stats["p50"] for r in reports]
    ax_lat.errorbar(res, p50, yerr=[lower, upper], marker="o", capsize=4)
    ax_lat.set_xlabel("input resolution (px, square)")
    ax_lat.set_ylabel("latency p50 (ms), bars: min..p90")
    ax_lat.set_title(f"{reports[0].artifact}: latency vs resolution", fontsize=10)
    mp = [r.input_shapes[0][-1] * r.input_shapes[0][-2] / 1e6 for r in reports]
    ax_mp.plot(res, [p / m for p, m in zip(p50, mp)], marker="o")
    ax_mp.set_xlabel("input resolution (px, square)")
    ax_mp.set_ylabel("p50 ms per megapixel")
    ax_mp.set_title("cost per pixel", fontsize=10)
    fig.suptitle(f"{reports[0].artifact} on {describe_device(reports[0].device)}", fontsize=11)
    return _save(plt, fig, path)
