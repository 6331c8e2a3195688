"""The engines the latency benchmark runs, each alone in its own child process.

Each module here has `load(job: dict) -> Decode`: it loads its model once and returns the
function that decodes one utterance (its index and record in `job["utterances"]`, 16 kHz
.npy files, see benchmarks/utterances.py) into a record with `tokens` (pieces, "▁"
marking a word start) or `text`, and `compute_s`. `child.py` runs one of them, over every
utterance or one utterance at a time on request (so the parent can take the engines in
turn, utterance by utterance), and adds the process's peak RSS, so the memory of one
engine never mixes with another's. A new engine (a gated or ConvRNN-T bundle in
framegate, another peer) is one more module and one more entry in RUNNERS.
"""
from __future__ import annotations

from typing import Callable

RUNNERS = {
    "framegate": "framegate.benchmarks.peers.engine",
    "framegate-search": "framegate.benchmarks.peers.engine",  # the bundle's own search (beam + LM)
    "onnxruntime": "framegate.benchmarks.peers.ort_loop",
    "pytorch": "framegate.benchmarks.peers.torch_eager",
    "pocketsphinx": "framegate.benchmarks.peers.sphinx",
    "sherpa-onnx": "framegate.benchmarks.peers.sherpa",
}

PEERS = tuple(name for name in RUNNERS if not name.startswith("framegate"))  # what --peers chooses from

WORD_MARKER = "\u2581"

Decode = Callable[[int, dict], dict]  # (index in job["utterances"], utterance) -> record
