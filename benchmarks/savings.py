"""Compute savings of gated Transformer bundles: WER, encoder MACs and encoder time, against dense.

`framegate bench savings --model BUNDLE [--compare BUNDLE...] [--dense BUNDLE] --manifest JSONL --json OUT`

Operating points: every `--thresholds` value on `--model`, and every `--compare` bundle at its
own default threshold (other lambdas, the sliding-window baseline). The dense reference is
`--dense` (the warm-start dense model trained as long as the gated one), or else the compare
bundle without arbitrators with the longest left context. For every point, on the same audio
in one process:
  - WER over the manifest (each utterance streamed in 100 ms blocks, endpointing on) and the
    paired-bootstrap 95 % interval of WER(point) - WER(dense);
  - mac_fraction: encoder MACs executed (front end + the C++ GEMMs, counted as they run) over
    those of the dense reference's same C++ code path with every part on;
  - encoder wall-clock time (front end + blocks, per streaming window, features precomputed)
    over the dense reference in the same C++ code path and over ONNX Runtime running the dense
    reference's encoder (encoder_dense.onnx); each engine runs an utterance `rounds` times back
    to back and keeps its fastest, so every engine is timed with its own weights warm in the
    cache (interleaving engines would time each against the previous one's weights: 25 MB of
    dense weights against a 32 MB L3 made the same C++ path 1.4x ONNX Runtime that way);
  - the same MAC fraction on generated near-digital silence and on background noise without
    speech, and the words emitted there per hour (insertions: nothing should be said).
BLAS GEMM threads are pinned to ONNX Runtime's thread count (1) so times compare like for like.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from framegate.benchmarks.report import machine_info, paired_wer_difference, wer_interval, word_errors, write_report
from framegate.engine.audio import read_audio
from framegate.engine.bundle import Bundle
from framegate.engine.compute_telemetry import ComputeTelemetry
from framegate.engine.errors import FramegateError
from framegate.engine.recognizer import Recognizer
from framegate.kernels.gated_encoder import gemm_threads, set_gemm_threads

SCHEMA = "framegate.bench.savings/1"
BLOCK_S = 0.1
SAMPLE_RATE = 16000
DEFAULT_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)


@dataclass
class Point:
    """One operating point: a gated bundle's recognizer at one threshold."""

    name: str
    bundle_dir: Path
    recognizer: Recognizer
    threshold: float

    @property
    def runner(self):
        return self.recognizer._encoder

    @property
    def gating(self) -> dict:
        return self.recognizer.bundle.manifest["gating"]


def _windows(recognizer: Recognizer, samples: np.ndarray, rate: int) -> list[np.ndarray]:
    """The encoder windows the engine makes of a signal (resampled, fbank, padded tail)."""
    stream = recognizer.create_stream()
    stream.accept_waveform(rate, samples)
    stream.input_finished()
    windows = []
    while (window := stream.next_window()) is not None:
        windows.append(window)
    return windows


def _cpp_encode(point: Point, windows: list[np.ndarray]) -> tuple[float, int]:
    """Seconds and MACs executed for one utterance through the front end and C++ blocks."""
    runner = point.runner
    state = runner.initial_state()
    state.threshold = point.threshold
    state.telemetry = telemetry = ComputeTelemetry(point.recognizer.bundle.encoder.num_layers)
    started = time.perf_counter()
    for window in windows:
        runner.encode(window, state)
    return time.perf_counter() - started, telemetry.macs


def _ort_dense_encode(bundle: Bundle, windows: list[np.ndarray]) -> float:
    """Seconds for one utterance through ONNX Runtime's dense streaming encoder."""
    session = bundle.sessions["encoder_dense.onnx"]
    enc = bundle.manifest["encoder"]
    k = np.zeros((enc["num_layers"], 1, enc["left_context"], enc["d_model"]), dtype=np.float32)
    v = k.copy()
    mask = np.zeros((1, enc["left_context"]), dtype=np.float32)
    started = time.perf_counter()
    for window in windows:
        _, k, v, mask = session.run(None, {"x": window[np.newaxis], "k_cache": k, "v_cache": v, "cache_mask": mask})
    return time.perf_counter() - started


def _transcribe(recognizer: Recognizer, threshold: float, samples: np.ndarray, rate: int) -> str:
    stream = recognizer.create_stream()
    stream.set_compute_threshold(threshold)
    step = max(1, int(BLOCK_S * rate))
    for i in range(0, len(samples), step):
        stream.accept_waveform(rate, samples[i:i + step])
        recognizer.decode(stream)
    stream.input_finished()
    recognizer.decode(stream)
    return stream.result.text


def background_audio(seconds: float, kind: str, seed: int) -> np.ndarray:
    """Near-digital silence (white noise at -70 dBFS) or background noise without speech
    (pink noise at -30 dBFS plus a 50 Hz hum), seeded."""
    from framegate.export.corpus.augment import coloured_noise

    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    if kind == "silence":
        return (coloured_noise(n, "white", rng) * 10 ** (-70 / 20)).astype(np.float32)
    hum = 0.3 * np.sin(2 * np.pi * 50 * np.arange(n) / SAMPLE_RATE)
    return ((coloured_noise(n, "pink", rng) + hum) * 10 ** (-30 / 20)).astype(np.float32)


def _pick_dense(compare: list[Path], dense: Path | None) -> Path:
    if dense is not None:
        return dense
    candidates = []
    for path in compare:
        manifest = json.loads((path / "bundle.json").read_text(encoding="utf-8"))
        if manifest.get("gating", {}).get("arbitrator") == "none":
            candidates.append((manifest["encoder"]["left_context"], str(path)))
    if not candidates:
        raise FramegateError("bench savings needs a dense reference: --dense BUNDLE, or a --compare bundle "
                             "without arbitrators")
    return Path(max(candidates)[1])


def _load(bundle_dir: Path) -> Recognizer:
    recognizer = Recognizer(bundle_dir, num_threads=1)
    if recognizer.bundle.model_type != "gated_transformer":
        raise FramegateError(f"bench savings: {bundle_dir} is a {recognizer.bundle.model_type} bundle; "
                             f"it compares gated_transformer bundles")
    return recognizer


def _label(bundle_dir: Path) -> str:
    """A bundle's name in the report: its folder, or the run's folder for runs/NAME/bundle."""
    return bundle_dir.parent.name if bundle_dir.name == "bundle" and bundle_dir.parent.name else bundle_dir.name


def run(model: Path, manifest: Path, out: Path, compare: list[Path] = (), dense: Path | None = None,
        thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS, limit: int | None = None, silence_s: float = 60.0,
        noise_s: float = 60.0, rounds: int = 2, seed: int = 0) -> dict:
    compare = [Path(p) for p in compare]
    dense_dir = _pick_dense(compare, dense)
    set_gemm_threads(1)
    gated = _load(model)
    points = [Point(f"{_label(model)}@{t:g}", model, gated, float(t)) for t in thresholds]
    for path in compare:
        if path.resolve() == dense_dir.resolve():
            continue
        recognizer = _load(path)
        points.append(Point(_label(path), path, recognizer, recognizer.bundle.manifest["gating"]["default_threshold"]))
    reference = Point(f"{_label(dense_dir)} (dense)", dense_dir, _load(dense_dir), 0.0)
    names = [p.name for p in [*points, reference]]
    if len(set(names)) != len(names):  # each point's transcripts are kept under its name
        raise FramegateError(f"bench savings: two bundles share a name in {names}; give them distinct folders")
    geometry = {(p.recognizer.bundle.encoder.window_frames, p.recognizer.bundle.encoder.chunk_frames)
                for p in [*points, reference]}
    if len(geometry) != 1:
        raise FramegateError(f"bench savings: bundles disagree on (window, chunk) frames {sorted(geometry)}")

    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["text"]][:limit] if limit else [r for r in rows if r["text"]]
    if not rows:
        raise FramegateError(f"{manifest}: no utterances with text")
    refs, hyps = [r["text"] for r in rows], {p.name: [] for p in [*points, reference]}
    cpp_s = np.zeros((len(points) + 1, len(rows)))
    macs = np.zeros((len(points) + 1, len(rows)))
    ort_s = np.zeros(len(rows))
    audio_s = 0.0
    engines = [*points, reference]
    for u, row in enumerate(tqdm(rows, desc="savings", unit="utt")):
        samples, rate = read_audio(manifest.parent / row["audio"])
        audio_s += len(samples) / rate
        windows = _windows(reference.recognizer, samples, rate)
        for i, point in enumerate(engines):
            runs = [_cpp_encode(point, windows) for _ in range(rounds)]
            cpp_s[i, u], macs[i, u] = min(seconds for seconds, _ in runs), runs[0][1]
        ort_s[u] = min(_ort_dense_encode(reference.recognizer.bundle, windows) for _ in range(rounds))
        for point in engines:
            hyps[point.name].append(_transcribe(point.recognizer, point.threshold, samples, rate))

    background = {kind: background_audio(seconds, kind, seed + i)
                  for i, (kind, seconds) in enumerate((("silence", silence_s), ("noise", noise_s)))}
    background_macs: dict[str, np.ndarray] = {}
    background_words = np.zeros(len(engines))
    for kind, samples in background.items():
        windows = _windows(reference.recognizer, samples, SAMPLE_RATE)
        background_macs[kind] = np.array([_cpp_encode(p, windows)[1] for p in engines], dtype=float)
        background_words += [len(_transcribe(p.recognizer, p.threshold, samples, SAMPLE_RATE).split())
                             for p in engines]
    background_hours = (silence_s + noise_s) / 3600

    dense_errors, words = word_errors(refs, hyps[reference.name])
    dense_wer, dense_lo, dense_hi = wer_interval(dense_errors, words, seed=seed)
    report_points = []
    for i, point in enumerate(points):
        errors, _ = word_errors(refs, hyps[point.name])
        diff = paired_wer_difference(errors, dense_errors, words, seed=seed)
        wer = float(errors.sum() / max(words.sum(), 1))
        gating = point.gating
        report_points.append({
            "name": point.name,
            "bundle": str(point.bundle_dir),
            "arbitrator": gating["arbitrator"],
            "left_context": point.recognizer.bundle.manifest["encoder"]["left_context"],
            "lambda": gating["compute_lambda"],
            "nonspeech_lambda": gating.get("nonspeech_compute_lambda", 0.0),  # bundles before it: 0
            "wake_cost_frames": gating["wake_cost_frames"],
            "threshold": point.threshold,
            "wer": wer,
            "wer_dense": dense_wer,
            "wer_ci95": [dense_wer + diff["ci95"][0], dense_wer + diff["ci95"][1]],
            "wer_difference_ci95": diff["ci95"],
            "wer_relative_change": (wer - dense_wer) / dense_wer if dense_wer else None,
            "mac_fraction": float(macs[i].sum() / macs[-1].sum()),
            "time_ratio_vs_dense": float(cpp_s[i].sum() / cpp_s[-1].sum()),
            "time_ratio_vs_ort_dense": float(cpp_s[i].sum() / ort_s.sum()),
            "silence_mac_fraction": float(background_macs["silence"][i] / background_macs["silence"][-1]),
            "noise_mac_fraction": float(background_macs["noise"][i] / background_macs["noise"][-1]),
            "insertions_per_hour": float(background_words[i] / background_hours),
            "encoder_time_s": float(cpp_s[i].sum()),
        })
    report = {
        "schema": SCHEMA,
        "model": str(model),
        "manifest": str(manifest),
        "utterances": len(rows),
        "words": int(words.sum()),
        "audio_s": audio_s,
        "silence_s": silence_s,
        "noise_s": noise_s,
        "rounds": rounds,
        "gemm_threads": gemm_threads(),
        "ort_threads": 1,
        "synthetic_speech": True,
        "dense_reference": {
            "bundle": str(dense_dir), "wer": dense_wer, "wer_ci95": [dense_lo, dense_hi],
            "encoder_time_s": float(cpp_s[-1].sum()), "ort_encoder_time_s": float(ort_s.sum()),
            "macs": float(macs[-1].sum()), "insertions_per_hour": float(background_words[-1] / background_hours),
        },
        "points": report_points,
        "machine": machine_info(),
    }
    write_report(out, report, _figure(report))
    return report


def _figure(report: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    dense = report["dense_reference"]
    left.errorbar([1.0], [100 * dense["wer"]], yerr=[[100 * (dense["wer"] - dense["wer_ci95"][0])],
                                                     [100 * (dense["wer_ci95"][1] - dense["wer"])]],
                  fmt="k*", markersize=12, capsize=3, label="dense reference")
    for p in report["points"]:
        sliding = p["arbitrator"] == "none"
        lo, hi = p["wer_ci95"]
        left.errorbar([p["mac_fraction"]], [100 * p["wer"]],
                      yerr=[[100 * max(p["wer"] - lo, 0)], [100 * max(hi - p["wer"], 0)]],
                      fmt="s" if sliding else "o", color="tab:orange" if sliding else "tab:blue", capsize=3)
        left.annotate(p["name"], (p["mac_fraction"], 100 * p["wer"]), fontsize=7, xytext=(4, 4),
                      textcoords="offset points")
    left.axvline(0.4, color="grey", linestyle=":", linewidth=1)
    left.set_xlabel("encoder MACs executed / dense")
    left.set_ylabel("WER % (95 % CI vs dense, paired)")
    left.set_title("accuracy vs compute (circles: gated, squares: sliding window)")
    names = [p["name"] for p in report["points"]]
    x = np.arange(len(names))
    right.bar(x - 0.2, [p["time_ratio_vs_dense"] for p in report["points"]], 0.4, label="vs dense, same C++ path")
    right.bar(x + 0.2, [p["time_ratio_vs_ort_dense"] for p in report["points"]], 0.4, label="vs ONNX Runtime dense")
    right.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    right.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
    right.set_ylabel("encoder time / dense")
    right.legend(fontsize=8)
    right.set_title(f"encoder wall-clock ({report['words']} words, synthetic)")
    fig.tight_layout()
    return fig
