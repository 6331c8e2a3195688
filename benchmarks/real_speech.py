"""Real human speech check: alsa-utils' nine recorded prompts, framegate beside PocketSphinx.

The only recorded human speech on a Debian machine without internet; a sanity check of
the synthetic-to-real gap, not a test set (12.8 s, 17 words). Each engine runs in this
process on the same audio; WER and RTF are reported for both, marked as human speech.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from framegate.benchmarks.report import machine_info, wer_interval, word_errors, write_report
from framegate.benchmarks.wer import transcribe_blocks
from framegate.engine.audio import canonical_16k, read_audio
from framegate.engine.recognizer import Recognizer

SCHEMA = "framegate.bench.real_speech/1"
ALSA_DIR = Path("/usr/share/sounds/alsa")
PROMPTS = {"Front_Center": "front center", "Front_Left": "front left", "Front_Right": "front right",
           "Noise": "noise", "Rear_Center": "rear center", "Rear_Left": "rear left", "Rear_Right": "rear right",
           "Side_Left": "side left", "Side_Right": "side right"}


def _pocketsphinx(samples_16k: np.ndarray) -> str:
    from pocketsphinx import Decoder

    decoder = Decoder(loglevel="FATAL")
    pcm = (np.clip(samples_16k, -1, 1) * 32767).astype(np.int16).tobytes()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr.lower() if hyp else ""


def run(model: Path | None, out: Path, alsa_dir: Path = ALSA_DIR) -> dict:
    files = sorted(p for p in alsa_dir.glob("*.wav") if p.stem in PROMPTS)
    if not files:
        from framegate.engine.errors import FramegateError

        raise FramegateError(f"no alsa-utils prompts in {alsa_dir}: install Debian's alsa-utils")
    recognizer = Recognizer(model, num_threads=1)
    refs, rows = [], []
    hyps: dict[str, list[str]] = {"framegate": [], "pocketsphinx": []}
    seconds = {"framegate": 0.0, "pocketsphinx": 0.0}
    audio_s = 0.0
    for path in files:
        samples, rate = read_audio(path)
        audio_s += len(samples) / rate
        text, spent = transcribe_blocks(recognizer, samples, rate)
        hyps["framegate"].append(text)
        seconds["framegate"] += spent
        started = time.perf_counter()
        hyps["pocketsphinx"].append(_pocketsphinx(canonical_16k(samples, rate)))
        seconds["pocketsphinx"] += time.perf_counter() - started
        refs.append(PROMPTS[path.stem])
        rows.append({"file": path.name, "ref": refs[-1], "framegate": hyps["framegate"][-1],
                     "pocketsphinx": hyps["pocketsphinx"][-1]})
    engines = {}
    for name, h in hyps.items():
        errors, words = word_errors(refs, h)
        wer, lo, hi = wer_interval(errors, words)
        engines[name] = {"wer": wer, "ci95": [lo, hi], "rtf": seconds[name] / audio_s}
    report = {"schema": SCHEMA, "speech": "human (alsa-utils recorded prompts)", "model": str(recognizer.bundle.path),
              "words": sum(len(r.split()) for r in refs), "audio_s": audio_s, "engines": engines,
              "utterances": rows, "machine": machine_info()}
    write_report(out, report, _figure(engines))
    return report


def _figure(engines: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.5))
    names = list(engines)
    ax1.bar(names, [100 * engines[n]["wer"] for n in names], color=["#4c72b0", "#dd8452"])
    ax1.set_ylabel("WER % (human speech, 17 words)")
    ax2.bar(names, [engines[n]["rtf"] for n in names], color=["#4c72b0", "#dd8452"])
    ax2.set_ylabel("real-time factor (1 thread)")
    fig.suptitle("alsa-utils recorded prompts")
    return fig
