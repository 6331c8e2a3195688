"""Long-stream soak: does a stream that runs for an hour leak, drift or change its answers?

One stream gets `minutes` of speech with pauses (test utterances from a manifest joined by
silences, or a synthetic speech-like signal) in random block sizes (10 ms to 1 s), decoding
after every block and taking closed segments as they close (`Stream.take_segments`), as a
device that runs for days would. Measured:

- RSS growth after warm-up (MB): the process's resident memory at the end of the first
  `warmup_fraction` of the stream against its maximum afterwards.
- Drift: compute per second of audio (accept + decode wall time / audio time) over the first
  and the last 10 % of the stream after warm-up (medians of per-block values, robust to other
  load on the machine); the ratio end/start (1.0 = no drift). A wall-clock figure, judged
  here and not in unit tests; its cause, state that grows with the stream, is measured
  without a clock: the 16 kHz samples the stream still holds after each decode (`held_samples`),
  which must stay within one encoder window whatever the stream's length.
- Segment equality: each endpointed segment, as it closes, replayed alone through a fresh
  stream: its audio from the segment's start, plus the few lookahead frames the engine had read
  past the cut (the encoder's lookahead and one fbank frame), decoded with a recognizer of the
  same bundle (kept for the replays, so the soak itself keeps nothing per segment). Its first
  segment must have the same tokens. Also reported, informational: the text of the segment's
  audio [start, end) transcribed alone with input_finished (tail padded, so the last chunk
  can legitimately differ).
- Optionally a long file (default 2 hours in the CLI verb) through `framegate transcribe` in
  a subprocess: its exit status and peak RSS.

    framegate bench soak --model BUNDLE --minutes 60 --json runs/soak.json
"""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from framegate.benchmarks.process_memory import resident_mb
from framegate.engine.audio import TARGET_RATE, canonical_16k, read_audio
from framegate.engine.endpoint import EndpointConfig
from framegate.engine.recognizer import Recognizer

SCHEMA = 1
MAX_BLOCK_S = 1.0
MIN_BLOCK_S = 0.01
RSS_EVERY_S = 5.0  # audio seconds between RSS samples


def synthetic_utterance(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Speech-like sound: gliding harmonics under a syllable envelope plus noise bursts."""
    n = int(seconds * TARGET_RATE)
    t = np.arange(n) / TARGET_RATE
    pitch = rng.uniform(90, 220) + 40 * np.sin(2 * np.pi * rng.uniform(0.3, 1.2) * t)
    phase = 2 * np.pi * np.cumsum(pitch) / TARGET_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(1.0, 2.5) * t), 0, None) ** 0.5
    bursts = rng.standard_normal(n) * (np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t) > 0.8)
    return (0.25 * voiced * envelope + 0.05 * bursts).astype(np.float32)


def speech_with_pauses(minutes: float, seed: int, manifest: Path | None = None) -> np.ndarray:
    """`minutes` of 16 kHz audio: utterances (manifest entries in turn, or synthetic) separated by
    0.2-1.5 s pauses of faint noise."""
    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * TARGET_RATE)
    utterances: Iterator[np.ndarray]
    if manifest is not None:
        entries = [json.loads(line) for line in Path(manifest).read_text().splitlines() if line.strip()]
        root = Path(manifest).parent

        def from_manifest() -> Iterator[np.ndarray]:
            while True:
                for entry in entries:
                    samples, rate = read_audio(root / entry["audio"])
                    yield canonical_16k(samples, rate)
        utterances = from_manifest()
    else:
        utterances = (synthetic_utterance(rng.uniform(1.0, 4.0), rng) for _ in itertools.count())
    out = np.empty(total, np.float32)
    pos = 0
    while pos < total:
        pause = (0.002 * rng.standard_normal(int(rng.uniform(0.2, 1.5) * TARGET_RATE))).astype(np.float32)
        for piece in (next(utterances), pause):
            take = min(len(piece), total - pos)
            out[pos:pos + take] = piece[:take]
            pos += take
    return out


def replay_margin_samples(recognizer: Recognizer) -> int:
    """Samples past a cut that the engine read before closing: the encoder's lookahead frames
    plus one fbank frame's length and hop (less than a chunk, so no further chunk completes)."""
    feats = recognizer.bundle.features
    hop = round(TARGET_RATE * feats.frame_shift_ms / 1000)
    frame = round(TARGET_RATE * feats.frame_length_ms / 1000)
    return recognizer.bundle.encoder.lookahead_frames * hop + frame + hop


def replay_segment(recognizer: Recognizer, audio: np.ndarray, start_s: float, end_s: float) -> list[str]:
    """Tokens of the first segment a fresh stream closes over the segment's audio alone."""
    start, end = round(start_s * TARGET_RATE), round(end_s * TARGET_RATE)
    stream = recognizer.create_stream()
    stop = end + replay_margin_samples(recognizer)
    stream.accept_waveform(TARGET_RATE, audio[start:stop])
    if stop >= len(audio):  # the soak stream's input ended there too: its tail was padded
        stream.input_finished()
    recognizer.decode(stream)
    closed = stream.take_segments()
    return closed[0].tokens if closed else stream.result.tokens


def cli_long_file(bundle: Path | None, audio: np.ndarray, minutes: float, workdir: Path) -> dict:
    """Write `minutes` of `audio` (tiled) as 16-bit WAV and run `framegate transcribe --json` on it."""
    import soundfile as sf

    path = workdir / "long.wav"
    total = int(minutes * 60 * TARGET_RATE)
    with sf.SoundFile(path, "w", TARGET_RATE, 1, subtype="PCM_16") as f:
        for start in range(0, total, len(audio)):
            f.write(audio[: total - start])
    memory_json = workdir / "cli_memory.json"
    cmd = [sys.executable, "-m", "framegate.benchmarks.measured_cli", str(memory_json), "transcribe", str(path),
           "--json"]
    if bundle is not None:
        cmd += ["--model", str(bundle)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    record = json.loads(proc.stdout) if proc.returncode == 0 else {}
    memory = json.loads(memory_json.read_text(encoding="utf-8")) if memory_json.exists() else {}
    return {"minutes": minutes, "returncode": proc.returncode, "seconds": round(elapsed, 3),
            "peak_rss_mb": round(memory["peak_rss_mb"], 1) if memory else None,
            "duration_s": record.get("duration_s"), "segments": len(record.get("segments", [])),
            "error": proc.stderr.strip().splitlines()[-1] if proc.returncode else ""}


def soak(bundle: Path | None, minutes: float, *, seed: int = 0, manifest: Path | None = None,
         endpoint: EndpointConfig = EndpointConfig(), warmup_fraction: float = 0.1,
         cli_file_minutes: float = 0.0) -> dict:
    """Run the soak and return the report (see the module docstring for what each number means)."""
    recognizer = Recognizer(bundle, endpoint=endpoint)
    replay = Recognizer(bundle, endpoint=endpoint)
    alone = Recognizer(bundle, endpoint=None)
    audio = speech_with_pauses(minutes, seed, manifest)
    rng = np.random.default_rng(seed + 1)
    stream = recognizer.create_stream()
    # The harness must not grow with the stream, or its own records read as the engine's leak:
    # per-block figures go into arrays sized up front, and each segment is checked as it closes
    # and then dropped (keeping every segment and a tuple per block cost about 6 MB an hour).
    max_blocks = len(audio) // round(TARGET_RATE * MIN_BLOCK_S) + 2
    block_start_s, block_end_s = np.zeros(max_blocks), np.zeros(max_blocks)
    block_rtf, held = np.zeros(max_blocks), np.zeros(max_blocks, dtype=np.int64)
    rss = np.zeros((int(len(audio) / TARGET_RATE / RSS_EVERY_S) + 3, 2))  # (audio s, MB)
    checks = {"endpointed": 0, "identical": 0, "standalone": 0}
    mismatched: list[dict] = []

    def check(segments: list) -> None:
        for segment in segments:
            checks["endpointed"] += 1
            if replay_segment(replay, audio, segment.start_s, segment.end_s) == segment.tokens:
                checks["identical"] += 1
            elif len(mismatched) < 20:
                mismatched.append({"start": segment.start_s, "end": segment.end_s})
            span = audio[round(segment.start_s * TARGET_RATE):round(segment.end_s * TARGET_RATE)]
            checks["standalone"] += alone.transcribe(span, TARGET_RATE).text == segment.text

    pos, blocks, samples = 0, 0, 0
    while pos < len(audio):
        size = int(TARGET_RATE * np.exp(rng.uniform(np.log(MIN_BLOCK_S), np.log(MAX_BLOCK_S))))
        block = audio[pos:pos + size]
        started = time.perf_counter()
        stream.accept_waveform(TARGET_RATE, block)
        recognizer.decode(stream)
        closed = stream.take_segments()
        block_rtf[blocks] = (time.perf_counter() - started) * TARGET_RATE / len(block)
        block_start_s[blocks] = pos / TARGET_RATE
        pos += len(block)
        block_end_s[blocks] = pos / TARGET_RATE
        held[blocks] = len(stream.utterance.samples)
        blocks += 1
        check(closed)
        if pos / TARGET_RATE >= samples * RSS_EVERY_S:
            rss[samples] = (pos / TARGET_RATE, resident_mb())
            samples += 1
    stream.input_finished()
    recognizer.decode(stream)
    check(stream.take_segments())
    rss[samples] = (pos / TARGET_RATE, resident_mb())
    rss = rss[:samples + 1]

    duration_s = len(audio) / TARGET_RATE
    warm_s = warmup_fraction * duration_s
    warm_rss = float(rss[rss[:, 0] <= warm_s, 1][-1])
    after = rss[rss[:, 0] > warm_s, 1]
    starts, rtfs = block_start_s[:blocks], block_rtf[:blocks]
    span = duration_s - warm_s
    start_rtf = float(np.median(rtfs[(starts > warm_s) & (starts < warm_s + 0.1 * span)]))
    end_rtf = float(np.median(rtfs[(starts > warm_s) & (starts >= duration_s - 0.1 * span)]))
    feats, enc = recognizer.bundle.features, recognizer.bundle.encoder
    chunk_s = enc.chunk_frames * feats.frame_shift_ms / 1000
    window_samples = round(TARGET_RATE * ((enc.window_frames - 1) * feats.frame_shift_ms + feats.frame_length_ms)
                           / 1000)
    report = {
        "schema": SCHEMA,
        "bundle": str(recognizer.bundle.path),
        "audio": {"minutes": minutes, "source": str(manifest) if manifest else "synthetic", "seed": seed},
        "endpoint": str(endpoint),
        "blocks": blocks,
        "rss_mb": {"warmup_end": round(warm_rss, 2), "max_after_warmup": round(float(after.max()), 2),
                   "growth_after_warmup": round(float(after.max()) - warm_rss, 2),
                   "series": [[round(float(s), 1), round(float(mb), 2)] for s, mb in rss]},
        "drift": {"rtf_start": round(start_rtf, 5), "rtf_end": round(end_rtf, 5),
                  "per_chunk_ms_start": round(1000 * start_rtf * chunk_s, 3),
                  "per_chunk_ms_end": round(1000 * end_rtf * chunk_s, 3),
                  "ratio_end_over_start": round(end_rtf / start_rtf, 4)},
        "held_samples": {"max_after_warmup": int(held[:blocks][block_end_s[:blocks] > warm_s].max()),
                         "one_window": window_samples},
        "segments": {"endpointed": checks["endpointed"], "identical_when_replayed_alone": checks["identical"],
                     "all_identical": checks["identical"] == checks["endpointed"],
                     "standalone_finished_text_equal": checks["standalone"], "mismatched": mismatched},
    }
    if cli_file_minutes > 0:
        with tempfile.TemporaryDirectory(prefix="framegate-soak-") as tmp:
            report["cli_long_file"] = cli_long_file(bundle, audio, cli_file_minutes, Path(tmp))
    return report


def figure(report: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    series = np.array(report["rss_mb"]["series"])
    ax.plot(series[:, 0] / 60, series[:, 1], label="RSS (MB)")
    ax.axvline(report["audio"]["minutes"] * 0.1, color="grey", ls=":", label="end of warm-up")
    d, seg = report["drift"], report["segments"]
    ax.set_xlabel("stream time (min)")
    ax.set_ylabel("RSS (MB)")
    ax.set_title(f"soak: +{report['rss_mb']['growth_after_warmup']:.2f} MB after warm-up, drift x"
                 f"{d['ratio_end_over_start']:.3f}, segments {seg['identical_when_replayed_alone']}/"
                 f"{seg['endpointed']} identical", fontsize=9)
    ax.legend()
    return fig


def run(bundle: Path | None, minutes: float, json_path: Path, *, seed: int = 0, manifest: Path | None = None,
        cli_file_minutes: float = 120.0) -> dict:
    """`framegate bench soak`: the soak with default endpointing, report JSON + PNG."""
    from framegate.benchmarks.report import machine_info, write_report

    report = soak(bundle, minutes, seed=seed, manifest=manifest, cli_file_minutes=cli_file_minutes)
    report["machine"] = machine_info()
    write_report(json_path, report, figure(report))
    return report
