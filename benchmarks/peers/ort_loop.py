"""The same bundle run by ONNX Runtime alone: the smallest greedy loop that decodes it.

Written from bundle.json without the engine, so it is both the baseline for the engine's
overhead (framegate time / this time) and an independent check of its tokens: fbank of
the whole file (kaldi-native-fbank, the bundle's options), tail padded with the bundle's
pad value to a whole number of windows, one encoder call per window with (h, c) carried,
and the greedy rule (one symbol per frame at most; blank and <unk> emit nothing), the
joiner scoring a window's frames in one call until a frame emits.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import onnxruntime as ort

from framegate.benchmarks.peers import Decode

RATE = 16000
ENGINE = "onnxruntime"


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _fbank(samples: np.ndarray, features: dict) -> np.ndarray:
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = RATE
    opts.frame_opts.frame_length_ms = features["frame_length_ms"]
    opts.frame_opts.frame_shift_ms = features["frame_shift_ms"]
    opts.frame_opts.dither = features["dither"]
    opts.frame_opts.snip_edges = features["snip_edges"]
    opts.mel_opts.num_bins = features["num_bins"]
    opts.mel_opts.low_freq = features["low_freq"]
    opts.mel_opts.high_freq = features["high_freq"]
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(RATE, samples)
    fbank.input_finished()
    frames = [fbank.get_frame(i) for i in range(fbank.num_frames_ready)]
    return np.array(frames, dtype=np.float32).reshape(len(frames), features["num_bins"])


def load(job: dict) -> Decode:
    bundle = Path(job["bundle"])
    manifest = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    enc, dec = manifest["encoder"], manifest["decoder"]
    pieces = [line.rsplit(" ", 1)[0] for line in (bundle / "tokens.txt").read_text(encoding="utf-8").splitlines()
              if line.strip()]
    no_emit = {dec["blank_id"]} | ({pieces.index("<unk>")} if "<unk>" in pieces else set())
    encoder = _session(bundle / "encoder.onnx", job["threads"])
    decoder = _session(bundle / "decoder.onnx", job["threads"])
    joiner = _session(bundle / "joiner.onnx", job["threads"])
    chunk, lookahead = enc["chunk_frames"], enc["lookahead_frames"]
    flush = np.zeros(round(job["flush_pad_s"] * RATE), dtype=np.float32)

    def decode(index: int, utt: dict) -> dict:
        samples = np.concatenate([np.load(utt["npy"]), flush])
        started = time.perf_counter()
        feats = _fbank(samples, manifest["features"])
        windows = max(1, -(-(len(feats) - lookahead) // chunk))
        pad = windows * chunk + lookahead - len(feats)
        feats = np.concatenate([feats, np.full((pad, feats.shape[1]), enc["pad_value"], dtype=np.float32)])
        h = np.zeros((enc["num_layers"], 1, enc["d_model"]), dtype=np.float32)
        c = np.zeros((enc["num_layers"], 1, enc["rnn_hidden_size"]), dtype=np.float32)
        context = np.full((1, dec["context_size"]), -1, dtype=np.int64)
        context[0, -1] = dec["blank_id"]
        decoder_out = decoder.run(None, {"y": context})[0]
        tokens: list[int] = []
        for k in range(windows):
            window = feats[k * chunk:k * chunk + chunk + lookahead][np.newaxis]
            out, h, c = encoder.run(None, {"x": window, "h": h, "c": c})
            frames = out[0]
            while len(frames):
                logits = joiner.run(None, {"encoder_out": frames,
                                           "decoder_out": np.repeat(decoder_out, len(frames), axis=0)})[0]
                best = logits.argmax(axis=1)
                emit = [i for i, t in enumerate(best.tolist()) if t not in no_emit]
                if not emit:
                    break
                tokens.append(int(best[emit[0]]))
                context = np.concatenate([context[:, 1:], [[tokens[-1]]]], axis=1).astype(np.int64)
                decoder_out = decoder.run(None, {"y": context})[0]
                frames = frames[emit[0] + 1:]
        return {"id": utt["id"], "tokens": [pieces[t] for t in tokens],
                "compute_s": time.perf_counter() - started, "audio_s": len(samples) / RATE}

    return decode
