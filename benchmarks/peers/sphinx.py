"""PocketSphinx with the English model its PyPI package ships: WER and RTF on the same audio.

A different model family (HMM-GMM with a trigram language model), so only its WER and
speed compare; it emits words, not our tokens. It runs single-threaded by design.
"""
from __future__ import annotations

import time

import numpy as np

from framegate.benchmarks.peers import Decode

RATE = 16000
ENGINE = "pocketsphinx"
FIXED_THREADS = 1


def load(job: dict) -> Decode:
    from pocketsphinx import Decoder

    decoder = Decoder(loglevel="FATAL")
    flush = np.zeros(round(job["flush_pad_s"] * RATE), dtype=np.float32)

    def decode(index: int, utt: dict) -> dict:
        samples = np.concatenate([np.load(utt["npy"]), flush])
        started = time.perf_counter()
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return {"id": utt["id"], "text": hyp.hypstr.lower() if hyp else "",
                "compute_s": time.perf_counter() - started, "audio_s": len(samples) / RATE}

    return decode
