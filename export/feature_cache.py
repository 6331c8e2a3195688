"""Precomputed fbank features for a manifest split, stored once and memory-mapped.

Training on two cores cannot afford recomputing features every epoch, so each split's
utterances are decoded and featurized once (in parallel) by the engine's own
`compute_fbank`, then stored as one float16 matrix plus an index.
"""
from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from framegate.engine.features import SAMPLE_RATE, compute_fbank
from framegate.export.worker_pool import clean_context


@dataclass(frozen=True)
class Utterance:
    offset: int
    frames: int
    text: str
    speaker: str
    family: str


def read_manifest(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _featurize(audio_path: str) -> np.ndarray:
    samples, rate = sf.read(audio_path, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{audio_path}: corpus audio must be {SAMPLE_RATE} Hz, got {rate}")
    return compute_fbank(samples.mean(axis=1)).astype(np.float16)


class FeatureCache:
    """Features of one manifest split: `feats[u.offset:u.offset+u.frames]` per utterance."""

    def __init__(self, directory: Path) -> None:
        index = json.loads((directory / "index.json").read_text(encoding="utf-8"))
        self.utterances = [Utterance(**u) for u in index["utterances"]]
        self.feats = np.load(directory / "feats.npy", mmap_mode="r")

    def features(self, i: int) -> np.ndarray:
        u = self.utterances[i]
        return np.asarray(self.feats[u.offset:u.offset + u.frames], dtype=np.float32)

    @staticmethod
    def build(manifest: Path, directory: Path, workers: int = 2) -> "FeatureCache":
        """Featurize `manifest` into `directory` unless an up-to-date cache is already there."""
        if (directory / "index.json").exists():
            return FeatureCache(directory)
        rows = read_manifest(manifest)
        paths = [str((manifest.parent / r["audio"]).resolve()) for r in rows]
        directory.mkdir(parents=True, exist_ok=True)
        chunks, utts, offset = [], [], 0
        with ProcessPoolExecutor(workers, mp_context=clean_context(__name__)) as pool:
            feats_iter = pool.map(_featurize, paths, chunksize=16)
            for row, feats in tqdm(zip(rows, feats_iter), total=len(rows), desc=f"features {manifest.stem}"):
                chunks.append(feats)
                utts.append(dict(offset=offset, frames=len(feats), text=row["text"],
                                 speaker=row["speaker"], family=row.get("family", row["speaker"])))
                offset += len(feats)
        np.save(directory / "feats.npy", np.concatenate(chunks) if chunks else np.zeros((0, 80), np.float16))
        tmp = directory / "index.json.tmp"
        tmp.write_text(json.dumps({"manifest": str(manifest), "utterances": utts}), encoding="utf-8")
        tmp.replace(directory / "index.json")
        return FeatureCache(directory)


def length_buckets(frames: list[int], max_batch_frames: int, rng: np.random.Generator | None) -> list[list[int]]:
    """Batches of similar-length utterances whose padded size stays under `max_batch_frames`.

    With `rng=None` batches come shortest first (the first epoch); otherwise utterances are
    jittered within similar lengths and the batch order is shuffled.
    """
    lengths = np.asarray(frames, dtype=np.float64)
    keys = lengths if rng is None else lengths * rng.uniform(0.9, 1.1, len(lengths))
    order = np.argsort(keys, kind="stable")
    batches, current, longest = [], [], 0
    for i in order:
        longest_if = max(longest, int(frames[i]))
        if current and longest_if * (len(current) + 1) > max_batch_frames:
            batches.append(current)
            current, longest_if = [], int(frames[i])
        current.append(int(i))
        longest = longest_if
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)
    return batches
