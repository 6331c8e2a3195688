"""The benchmark's audio: test-split rows and wav files, decoded once into 16 kHz arrays.

Every engine (framegate and each peer) reads the same float32 16 kHz samples from one
.npy file per utterance, so they all see identical audio and none of them is timed on
file decoding or resampling. One file per utterance keeps each child's resident memory
at one utterance, so the engine's peak RSS is the engine's, not the test set's.

Speech bounds (for latency) come from the signal itself: 10 ms frame energies against a
threshold that sits above both the file's noise floor and 40 dB below its loudest frame,
so leading and trailing silence or steady noise is trimmed.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from framegate.engine.audio import canonical_16k, read_audio
from framegate.engine.errors import FramegateError

RATE = 16000
FRAME_S = 0.01
BELOW_PEAK_DB = 40.0
ABOVE_FLOOR_DB = 10.0


@dataclass(frozen=True)
class Utterance:
    """One benchmark input; `reference` is None for a wav-list file without a transcript."""

    id: str
    source: str
    npy: str
    duration_s: float
    speech_start_s: float
    speech_end_s: float
    reference: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def speech_bounds(samples_16k: np.ndarray) -> tuple[float, float]:
    """(start, end) in seconds of the span whose 10 ms frames rise above the speech threshold.

    A signal with no frame above it (digital silence) gives (0, duration).
    """
    hop = int(RATE * FRAME_S)
    frames = len(samples_16k) // hop
    duration = len(samples_16k) / RATE
    if frames == 0:
        return 0.0, duration
    power = (samples_16k[:frames * hop].astype(np.float64).reshape(frames, hop) ** 2).mean(axis=1)
    db = 10 * np.log10(power + 1e-12)
    threshold = max(db.max() - BELOW_PEAK_DB, np.percentile(db, 10) + ABOVE_FLOOR_DB)
    loud = np.flatnonzero(db > threshold)
    if not len(loud):
        return 0.0, duration
    return loud[0] * FRAME_S, min((loud[-1] + 1) * FRAME_S, duration)


def read_inputs(manifest: Path | None, wav_list: Path | None, limit: int | None) -> list[tuple[str, Path, str | None]]:
    """(id, audio path, reference text or None) for the manifest rows, then the wav list's files."""
    items: list[tuple[str, Path, str | None]] = []
    if manifest is not None:
        for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                items.append((row["audio"], manifest.parent / row["audio"], row["text"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise FramegateError(f"{manifest}: line {number} is not a JSON object with 'audio' and 'text'") from None
    if wav_list is not None:
        for line in wav_list.read_text(encoding="utf-8").splitlines():
            if line.strip():
                path = Path(line.strip())
                items.append((str(path), path if path.is_absolute() else wav_list.parent / path, None))
    if not items:
        raise FramegateError("no audio to benchmark: give --manifest JSONL and/or --wav-list FILE with entries")
    return items[:limit] if limit else items


def prepare(items: list[tuple[str, Path, str | None]], work_dir: Path) -> list[Utterance]:
    """Decode, resample to 16 kHz mono and save each input as work_dir/NNNNN.npy."""
    work_dir.mkdir(parents=True, exist_ok=True)
    utterances = []
    for index, (uid, path, reference) in enumerate(items):
        samples, rate = read_audio(path)
        samples_16k = np.ascontiguousarray(canonical_16k(samples, rate), dtype=np.float32)
        npy = work_dir / f"{index:05d}.npy"
        np.save(npy, samples_16k)
        start, end = speech_bounds(samples_16k)
        utterances.append(Utterance(id=uid, source=str(path), npy=str(npy), duration_s=len(samples_16k) / RATE,
                                    speech_start_s=start, speech_end_s=end, reference=reference))
    return utterances
