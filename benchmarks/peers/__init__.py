"""The engines the latency benchmark runs, each alone in its own child process.

Each module here has `run(job: dict) -> dict`. The job carries the bundle, the thread
count, and the utterances (16 kHz .npy files, see benchmarks/utterances.py); the result
carries per-utterance `tokens` (pieces, "▁" marking a word start) or `text`, and
`compute_s`. `child.py` runs one of them and adds the process's peak RSS, so the memory
of one engine never mixes with another's. A new engine (a gated or ConvRNN-T bundle in
framegate, another peer) is one more module and one more entry in RUNNERS.
"""
from __future__ import annotations

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
