"""PyTorch eager on the checkpoint the bundle was exported from, streamed like the engine.

The model's own modules (nn.LSTM with projection, not the export rewrite) run window by
window over the same fbank, padded as the engine pads, (h, c) carried across windows,
with the same greedy rule. Tokens differ from the bundle's only through float rounding
between two runtimes; the agreement check reports how often that changes a decision.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from framegate.benchmarks.peers import Decode
from framegate.engine.features import FbankConfig, compute_fbank
from framegate.export.bundle_writer import silence_log_mel
from framegate.export.onnx_export import load_model

RATE = 16000
ENGINE = "pytorch"


def load(job: dict) -> Decode:
    torch.set_num_threads(job["threads"])
    warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
    # Stream in the bundle's windows, which export may have chosen apart from the checkpoint's.
    bundle_encoder = json.loads((Path(job["bundle"]) / "bundle.json").read_text(encoding="utf-8"))["encoder"]
    model = load_model(Path(job["checkpoint"]), chunk_frames=bundle_encoder["chunk_frames"])
    cfg = model.cfg
    pieces = [line.rsplit(" ", 1)[0] for line in (Path(job["bundle"]) / "tokens.txt").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    no_emit = {0} | ({pieces.index("<unk>")} if "<unk>" in pieces else set())
    features = FbankConfig()
    pad_value = silence_log_mel(features)
    chunk, lookahead = cfg.chunk_frames, cfg.window_frames - cfg.chunk_frames
    flush = np.zeros(round(job["flush_pad_s"] * RATE), dtype=np.float32)

    @torch.inference_mode()
    def decode(index: int, utt: dict) -> dict:
        samples = np.concatenate([np.load(utt["npy"]), flush])
        started = time.perf_counter()
        feats = compute_fbank(samples, features)
        windows = max(1, -(-(len(feats) - lookahead) // chunk))
        pad = np.full((windows * chunk + lookahead - len(feats), cfg.num_bins), pad_value, dtype=np.float32)
        x = torch.from_numpy(np.concatenate([feats, pad]))
        state = model.encoder.initial_state(1)
        context = torch.full((1, cfg.context_size), -1, dtype=torch.long)
        context[0, -1] = 0
        decoder_out = model.decoder(context.unsqueeze(1))[:, 0]
        tokens: list[int] = []
        for k in range(windows):
            out, state = model.encoder(x[k * chunk:k * chunk + chunk + lookahead].unsqueeze(0), state)
            for frame in out[0]:
                best = int(model.joiner(frame.unsqueeze(0), decoder_out).argmax(dim=1))
                if best in no_emit:
                    continue
                tokens.append(best)
                context = torch.cat([context[:, 1:], torch.tensor([[best]])], dim=1)
                decoder_out = model.decoder(context.unsqueeze(1))[:, 0]
        return {"id": utt["id"], "tokens": [pieces[t] for t in tokens],
                "compute_s": time.perf_counter() - started, "audio_s": len(samples) / RATE}

    return decode
