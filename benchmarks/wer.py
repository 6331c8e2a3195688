"""Word error rate of a bundle on a corpus split, per held-out voice family, with the RTF.

`framegate bench wer --manifest data/corpus/test.jsonl --json OUT`: every utterance goes
through a real stream in 100 ms blocks (as a live source delivers them), on the
ONNX Runtime thread count given (1 by default: the model card's real-time factor).
Everything here is synthetic speech and the report says so.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from framegate.benchmarks.report import machine_info, wer_interval, word_errors, write_report
from framegate.engine.audio import read_audio
from framegate.engine.recognizer import Recognizer

SCHEMA = "framegate.bench.wer/1"
BLOCK_S = 0.1


def transcribe_blocks(recognizer: Recognizer, samples: np.ndarray, sample_rate: int) -> tuple[str, float]:
    """Text and compute seconds for one utterance fed block by block."""
    started = time.perf_counter()
    stream = recognizer.create_stream()
    step = max(1, int(BLOCK_S * sample_rate))
    for i in range(0, len(samples), step):
        stream.accept_waveform(sample_rate, samples[i:i + step])
        recognizer.decode(stream)
    stream.input_finished()
    recognizer.decode(stream)
    return stream.result.text, time.perf_counter() - started


def run(model: Path | None, manifest: Path, out: Path, threads: int = 1, limit: int | None = None,
        beam: int | None = None, lm_weight: float | None = None) -> dict:
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:limit] if limit else rows
    recognizer = Recognizer(model, num_threads=threads, beam=beam, lm_weight=lm_weight)
    per_utt, compute_s, audio_s = [], 0.0, 0.0
    for row in tqdm(rows, desc="transcribing", unit="utt"):
        samples, rate = read_audio(manifest.parent / row["audio"])
        text, seconds = transcribe_blocks(recognizer, samples, rate)
        compute_s += seconds
        audio_s += len(samples) / rate
        per_utt.append({"audio": row["audio"], "family": row.get("family") or "(silence/noise)",
                        "synthesizer": row.get("synthesizer", ""), "ref": row["text"], "hyp": text})
    errors, words = word_errors([u["ref"] for u in per_utt], [u["hyp"] for u in per_utt])
    for u, e, w in zip(per_utt, errors, words):
        u["errors"], u["words"] = int(e), int(w)
    wer, lo, hi = wer_interval(errors, words)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(per_utt):
        groups[u["family"]].append(i)
    families = {}
    for family, idx in sorted(groups.items()):
        f_wer, f_lo, f_hi = wer_interval(errors[idx], words[idx])
        families[family] = {"wer": f_wer, "ci95": [f_lo, f_hi], "words": int(words[idx].sum()),
                            "utterances": len(idx), "synthesizers": sorted({per_utt[i]["synthesizer"] for i in idx})}
    per_utt_path = out.with_name(out.stem + "_utterances.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    per_utt_path.write_text("".join(json.dumps(u, ensure_ascii=False) + "\n" for u in per_utt), encoding="utf-8")
    report = {"schema": SCHEMA, "speech": "synthetic", "model": str(recognizer.bundle.path),
              "manifest": str(manifest), "utterances": len(per_utt), "words": int(words.sum()),
              "wer": wer, "ci95": [lo, hi], "per_family": families, "rtf": compute_s / max(audio_s, 1e-9),
              "onnx_threads": threads, "search": recognizer.search_settings, "audio_s": audio_s, "compute_s": compute_s,
              "per_utterance": str(per_utt_path), "machine": machine_info()}
    write_report(out, report, _figure(families, wer))
    return report


def _figure(families: dict, overall: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in families if families[n]["words"]]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names) + 2), 4))
    values = [100 * families[n]["wer"] for n in names]
    err = np.array([[100 * (families[n]["wer"] - families[n]["ci95"][0]) for n in names],
                    [100 * (families[n]["ci95"][1] - families[n]["wer"]) for n in names]])
    ax.bar(names, values, yerr=err, capsize=4, color="#4c72b0")
    ax.axhline(100 * overall, color="#c44e52", linestyle="--", label=f"all: {100 * overall:.1f} %")
    ax.set_ylabel("WER % (synthetic speech, 95 % CI)")
    ax.set_title("Word error rate per held-out voice family")
    ax.legend()
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    return fig
