"""sherpa-onnx running the bundle's own graphs (laid out by `framegate export --format sherpa-onnx`).

Fed exactly as framegate's throughput pass feeds the engine: the utterance plus the shared
flush pad in 100 ms blocks, decoding whatever is ready after each block. sherpa-onnx
decodes only whole windows (it does not pad the last one), which is why every engine gets
the flush pad of digital silence. Its tokens come back with the word marker turned into
a space; it is turned back so they compare piece for piece with framegate's.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from framegate.benchmarks.peers import WORD_MARKER, Decode

RATE = 16000
ENGINE = "sherpa-onnx"


def load(job: dict) -> Decode:
    import sherpa_onnx

    model = Path(job["sherpa_dir"])
    features = json.loads((Path(job["bundle"]) / "bundle.json").read_text(encoding="utf-8"))["features"]
    recognizer = sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(model / "tokens.txt"), encoder=str(model / "encoder.onnx"), decoder=str(model / "decoder.onnx"),
        joiner=str(model / "joiner.onnx"), num_threads=job["threads"], sample_rate=RATE, feature_dim=features["num_bins"],
        low_freq=features["low_freq"], high_freq=features["high_freq"], dither=features["dither"],
        snip_edges=features["snip_edges"],
        decoding_method="greedy_search", enable_endpoint_detection=False)
    flush = np.zeros(round(job["flush_pad_s"] * RATE), dtype=np.float32)
    step = round(job["throughput_block_s"] * RATE)

    def decode(index: int, utt: dict) -> dict:
        samples = np.concatenate([np.load(utt["npy"]), flush])
        started = time.perf_counter()
        stream = recognizer.create_stream()
        for i in range(0, len(samples), step):
            stream.accept_waveform(RATE, samples[i:i + step])
            while recognizer.is_ready(stream):
                recognizer.decode_stream(stream)
        stream.input_finished()
        while recognizer.is_ready(stream):
            recognizer.decode_stream(stream)
        tokens = [t.replace(" ", WORD_MARKER) for t in recognizer.get_result_all(stream).tokens]
        return {"id": utt["id"], "tokens": tokens, "compute_s": time.perf_counter() - started,
                "audio_s": len(samples) / RATE}

    return decode
