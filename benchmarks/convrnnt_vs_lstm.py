"""ConvRNN-T against the baseline LSTM transducer, and the global CNN's per-frame cost.

`python -m framegate.benchmarks.convrnnt_vs_lstm --lstm BUNDLE --convrnnt BUNDLE
 --manifest data/corpus/test.jsonl --json OUT.json` runs both bundles on the same utterances
(streamed in 100 ms blocks, one ONNX Runtime thread) and reports each WER with its 95 %
interval, the paired-bootstrap interval on the difference (ConvRNN-T minus LSTM; negative
means ConvRNN-T is better), parameters and MACs per second of audio (from bundle.json's
`compute`, counted at export), and RTF; plus the per-frame cost of the streamed global CNN at
stream positions 1 s, 10 min and 60 min against a naive recompute-over-history reference.
Writes JSON and a PNG beside it. The speech is synthetic and the report says so.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from framegate.benchmarks.report import (machine_info, paired_wer_difference, wer_interval, word_errors,
                                         write_report)
from framegate.benchmarks.wer import transcribe_blocks
from framegate.engine.audio import read_audio
from framegate.engine.encoder_runner import encoder_runner
from framegate.engine.recognizer import Recognizer
from framegate.kernels import GlobalCnn

SCHEMA = "framegate.bench.convrnnt_vs_lstm/1"
ENCODER_FRAMES_PER_S = 25  # 10 ms fbank frames, subsampled x4
POSITIONS_S = (1, 600, 3600)


def _transcribe_all(bundle: Path, rows: list[dict], root: Path) -> tuple[list[str], float, float, dict]:
    recognizer = Recognizer(bundle, num_threads=1, endpoint=None)
    hyps, compute_s, audio_s = [], 0.0, 0.0
    for row in rows:
        samples, rate = read_audio(root / row["audio"])
        text, seconds = transcribe_blocks(recognizer, samples, rate)
        hyps.append(text)
        compute_s += seconds
        audio_s += len(samples) / rate
    return hyps, compute_s, audio_s, recognizer.bundle.manifest.get("compute", {})


def compare(lstm: Path, convrnnt: Path, manifest: Path, limit: int | None = None) -> dict:
    """WERs, paired difference, parameters, MACs/s and RTF of both bundles on `manifest`."""
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:limit] if limit else rows
    refs = [r["text"] for r in rows]
    models, errors = {}, {}
    for name, bundle in (("lstm_transducer", lstm), ("convrnnt", convrnnt)):
        hyps, compute_s, audio_s, compute = _transcribe_all(bundle, rows, manifest.parent)
        errors[name], words = word_errors(refs, hyps)
        wer, lo, hi = wer_interval(errors[name], words)
        models[name] = {"bundle": str(bundle), "wer": wer, "ci95": [lo, hi], "rtf": compute_s / max(audio_s, 1e-9),
                        "parameters": compute.get("parameters"), "macs_per_second": compute.get("macs_per_second"),
                        "audio_s": audio_s, "compute_s": compute_s}
    difference = paired_wer_difference(errors["convrnnt"], errors["lstm_transducer"], words)
    return {"utterances": len(rows), "words": int(words.sum()), "models": models,
            "wer_difference_convrnnt_minus_lstm": difference}


def _naive_recompute(cnn: GlobalCnn, history: np.ndarray) -> np.ndarray:
    """The newest frame's output by re-running the whole history from a fresh state."""
    return cnn.forward(history, cnn.initial_state())[-1]


def per_frame_cost(cnn: GlobalCnn, positions_s: tuple[int, ...] = POSITIONS_S, probe_frames: int = 200,
                   naive_probe_frames: int = 3, seed: int = 0) -> dict:
    """Seconds per frame of the streamed kernel (one frame per call, as the engine's 2-frame
    chunks nearly are) at each stream position, and of the naive reference there.

    The stream really runs up to each position (the state is never faked); probes are taken
    right after reaching it, `probe_frames` for the kernel (median), `naive_probe_frames`
    for the naive reference, whose cost grows with the position.
    """
    rng = np.random.default_rng(seed)
    channels = cnn.config.channels
    last = max(positions_s) * ENCODER_FRAMES_PER_S + probe_frames
    frames = rng.normal(size=(last, channels)).astype(np.float32)
    state = cnn.initial_state()
    result = {}
    pos = 0
    for seconds in sorted(positions_s):
        target = seconds * ENCODER_FRAMES_PER_S
        cnn.forward(frames[pos:target], state)
        pos = target
        times = []
        for t in range(pos, pos + probe_frames):
            started = time.perf_counter()
            cnn.forward(frames[t:t + 1], state)
            times.append(time.perf_counter() - started)
        streamed_s = float(np.median(times))
        naive = []
        for t in range(pos, pos + naive_probe_frames):
            started = time.perf_counter()
            _naive_recompute(cnn, frames[:t + 1])
            naive.append(time.perf_counter() - started)
        pos += probe_frames
        result[str(seconds)] = {"position_frames": target, "streamed_s_per_frame": streamed_s,
                                "naive_s_per_frame": float(np.median(naive))}
    costs = [r["streamed_s_per_frame"] for r in result.values()]
    return {"positions": result, "streamed_max_over_min": max(costs) / min(costs),
            "config": repr(cnn.config), "probe_frames": probe_frames}


def _figure(report: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_wer, ax_cost) = plt.subplots(1, 2, figsize=(11, 4))
    if "models" in report:
        names = list(report["models"])
        wers = [report["models"][n]["wer"] for n in names]
        err = np.array([[w - report["models"][n]["ci95"][0], report["models"][n]["ci95"][1] - w]
                        for n, w in zip(names, wers)]).T
        ax_wer.bar(names, wers, yerr=err, capsize=6, color=["#777", "#2a7"])
        d = report["wer_difference_convrnnt_minus_lstm"]
        ax_wer.set_title(f"WER (synthetic); ConvRNN-T - LSTM = {d['difference']:+.3f} "
                         f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]", fontsize=9)
        ax_wer.set_ylabel("word error rate")
    else:
        ax_wer.axis("off")
    cost = report["per_frame_cost"]["positions"]
    labels = [f"{int(s) // 60} min" if int(s) >= 60 else f"{s} s" for s in cost]
    x = np.arange(len(labels))
    ax_cost.bar(x - 0.2, [c["streamed_s_per_frame"] * 1e6 for c in cost.values()], 0.4, label="streamed (C++ state)")
    ax_cost.bar(x + 0.2, [c["naive_s_per_frame"] * 1e6 for c in cost.values()], 0.4, label="naive recompute")
    ax_cost.set_yscale("log")
    ax_cost.set_xticks(x, labels)
    ax_cost.set_ylabel("µs per frame")
    ax_cost.set_title("global CNN cost per frame at stream position", fontsize=9)
    ax_cost.legend(fontsize=8)
    return fig


def run(out: Path, convrnnt: Path, lstm: Path | None = None, manifest: Path | None = None,
        limit: int | None = None, positions_s: tuple[int, ...] = POSITIONS_S) -> dict:
    report: dict = {"schema": SCHEMA, "speech": "synthetic", "machine": machine_info()}
    if lstm is not None and manifest is not None:
        report.update(compare(lstm, convrnnt, manifest, limit))
        report["manifest"] = str(manifest)
    recognizer = Recognizer(convrnnt, endpoint=None)
    report["per_frame_cost"] = per_frame_cost(encoder_runner(recognizer.bundle).global_cnn, positions_s)
    write_report(out, report, _figure(report))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--convrnnt", type=Path, required=True)
    parser.add_argument("--lstm", type=Path, help="baseline bundle (with --manifest: the WER comparison)")
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    report = run(args.json, args.convrnnt, args.lstm, args.manifest, args.limit)
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
