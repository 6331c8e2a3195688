"""The latency report's PNG: four panels a person reads at a glance.

Speed beside the peers (RTF, log scale, WER on each bar), per-chunk compute against the
chunk's duration, latencies against the algorithmic floor and the 150 ms target, and the
model's MAC rate against this machine's sgemm peak with memory and size noted.
"""
from __future__ import annotations

LAST_WORD_TARGET_MS = 150.0
CHUNK_BUDGET = 0.10  # chunk compute p99 at most 10 % of the chunk's duration


def figure(report: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    _speed(axes[0][0], report)
    _chunks(axes[0][1], report)
    _latency(axes[1][0], report)
    _limit(axes[1][1], report)
    card = report.get("model_card") or {}
    fig.suptitle(f"framegate bench latency: {report['model']} ({report['utterances']} utterances, "
                 f"{report['audio_s']:.0f} s {report['speech']} audio; load avg "
                 f"{report['load_average']['before'][0]:.1f}){' ' + str(card.get('weights', '')) if card.get('weights') else ''}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _speed(ax, report: dict) -> None:
    names, rtfs, labels, colors = [], [], [], []
    for threads, summary in report["threads"].items():
        names.append(f"framegate\n{threads} thr")
        rtfs.append(summary["rtf"])
        labels.append(f"WER {100 * report['wer']:.0f}%" if report["wer"] is not None else "")
        colors.append("#4c72b0")
    for name, peer in report["peers"].items():
        names.append(f"{name}\n{peer['threads']} thr")
        rtfs.append(peer["rtf"])
        agree = peer.get("tokens_vs_framegate")
        text = f"WER {100 * peer['wer']:.0f}%" if peer.get("wer") is not None else ""
        if agree:
            text += (f"\nsame tokens\n{100 * agree['identical']:.0f}%"
                     f" ({100 * agree['one_is_prefix']:.0f}%\nto file end)")
        labels.append(text)
        colors.append("#dd8452")
    bars = ax.bar(names, rtfs, color=colors)
    ax.set_yscale("log")
    ax.set_ylim(top=max(rtfs) * 8)  # room for the labels above the tallest bar
    for bar, text in zip(bars, labels):
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.axhline(0.05, color="#c44e52", linestyle=":", label="target RTF 0.05")
    ax.set_ylabel("real-time factor (compute / audio, log)")
    ratios = [f"{label} x{report[key]:.2f}" + _interval(report.get(f"{key}_ci95"))
              for key, label in (("engine_overhead", "overhead vs raw ONNX Runtime"), ("vs_sherpa_onnx", "vs sherpa-onnx"))
              if report.get(key) is not None]
    ax.set_title("Speed" + (":\n" + ", ".join(ratios) if ratios else " (peers on the LSTM contract only: none)"),
                 fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(axis="x", labelsize=7)


def _chunks(ax, report: dict) -> None:
    chunk_audio = report["chunk_audio_ms"]
    keys = ["p50", "p95", "p99"]
    for offset, (threads, summary) in enumerate(report["threads"].items()):
        values = [summary["chunk_ms"][k] or 0.0 for k in keys]
        xs = [i + 0.35 * offset for i in range(len(keys))]
        ax.bar(xs, values, width=0.35, label=f"{threads} thread(s)")
    ax.axhline(CHUNK_BUDGET * chunk_audio, color="#c44e52", linestyle=":",
               label=f"budget {100 * CHUNK_BUDGET:.0f} % of the {chunk_audio:.0f} ms chunk")
    ax.set_xticks([i + 0.17 for i in range(len(keys))], keys)
    ax.set_ylabel("compute per chunk (ms)")
    ax.set_title(f"Per-chunk compute at real-time pace ({report['threads'][str(report['threads_headline'])]['chunks']} chunks)",
                 fontsize=9)
    ax.legend(fontsize=7)


def _latency(ax, report: dict) -> None:
    groups = ["first_partial_ms", "last_word_ms", "endpoint_ms"]
    for offset, pct in enumerate(["p50", "p95"]):
        values = [report[g][pct] if report[g][pct] is not None else 0.0 for g in groups]
        bars = ax.bar([i + 0.35 * offset for i in range(len(groups))], values, width=0.35, label=pct)
        for bar, value in zip(bars, values):
            ax.annotate(f"{value:.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=7)
    ax.axhline(report["algorithmic_ms"], color="#55a868", linestyle="--",
               label=f"algorithmic (chunk + lookahead) {report['algorithmic_ms']:.0f} ms")
    ax.axhline(LAST_WORD_TARGET_MS, color="#c44e52", linestyle=":", label="last-word target 150 ms")
    counts = report["latency_counts"]
    ax.set_xticks([i + 0.17 for i in range(len(groups))],
                  [f"{g[:-3].replace('_', ' ')}\n(n={counts[g]})" for g in groups])
    ax.set_ylabel("ms after speech start (first partial) / end (others)")
    ax.set_title("Latency at real-time pace (endpoint includes the rule's silence wait)", fontsize=9)
    ax.legend(fontsize=7)


def _limit(ax, report: dict) -> None:
    limit = report["physical_limit"]
    peak = limit["sgemm"]["macs_per_s"] / 1e9
    framegate = limit["achieved_macs_per_s"] / 1e9
    rows = [("sgemm peak (1 thread)", peak, "#8c8c8c")]
    if limit["raw_onnxruntime_fraction_of_peak"] is not None:
        rows.append(("raw ONNX Runtime", limit["raw_onnxruntime_fraction_of_peak"] * peak, "#dd8452"))
    rows.append(("framegate", framegate, "#4c72b0"))
    values = [value for _, value, _ in rows]
    bars = ax.barh([name for name, _, _ in rows], values, color=[color for _, _, color in rows])
    for bar, value in zip(bars, values):
        ax.annotate(f"{value:.2f}", (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center",
                    fontsize=8, xytext=(3, 0), textcoords="offset points")
    ax.set_xlabel("GMAC/s (model MACs per audio second / RTF, 1 thread)")
    ax.set_title(f"Physical limit: {limit['model_macs']['macs_per_audio_s'] / 1e6:.0f} M MAC per audio second; "
                 f"framegate at {100 * limit['fraction_of_sgemm_peak']:.1f} % of peak", fontsize=9)
    ax.text(0.98, 0.5, f"peak RSS {report['peak_rss_mb']:.0f} MB\nbundle {report['bundle_mb']:.1f} MB",
            transform=ax.transAxes, ha="right", va="center", fontsize=9,
            bbox={"facecolor": "white", "edgecolor": "#cccccc"})


def _interval(ci: list[float] | None) -> str:
    return f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else ""
