"""Greedy transducer search over encoder frames, carried across chunks of one utterance.

The rule is sherpa-onnx's (and export/greedy.py's): at most one symbol per encoder frame;
blank and `<unk>` emit nothing; the stateless decoder starts from the context
[-1, ..., -1, blank] and runs again only after an emission, so its output is cached in
the search state. The joiner scores a run of frames in one call while the decoder output
stays the same (it is row-wise, so this equals calling it frame by frame).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from framegate.engine.bundle import Bundle

JOINER_BATCH_FRAMES = 16  # rows per joiner call: bounds the work redone after an emission


@dataclass
class SearchState:
    """Search state of one utterance; `frames` counts encoder frames searched so far."""

    context: np.ndarray  # (1, context_size) int64, the decoder's input
    decoder_out: np.ndarray  # (1, joiner_dim) float32, cached decoder output for `context`
    tokens: list[int] = field(default_factory=list)
    token_frames: list[int] = field(default_factory=list)  # encoder frame of each token
    frames: int = 0

    @property
    def trailing_blank_frames(self) -> int:
        """Encoder frames since the last emitted token (all frames when none was emitted)."""
        return self.frames - (self.token_frames[-1] + 1 if self.token_frames else 0)


class GreedySearch:
    """Stateless search logic over a bundle's decoder and joiner sessions."""

    def __init__(self, bundle: Bundle) -> None:
        self._decoder: ort.InferenceSession = bundle.decoder_session
        self._joiner: ort.InferenceSession = bundle.joiner_session
        self._context_size = bundle.decoder.context_size
        self._no_emit = {bundle.decoder.blank_id} | ({bundle.unk_id} if bundle.unk_id is not None else set())
        self._blank_id = bundle.decoder.blank_id

    def initial_state(self) -> SearchState:
        context = np.full((1, self._context_size), -1, dtype=np.int64)
        context[0, -1] = self._blank_id
        return SearchState(context=context, decoder_out=self._run_decoder(context))

    def _run_decoder(self, context: np.ndarray) -> np.ndarray:
        return self._decoder.run(None, {"y": context})[0]

    def search(self, encoder_out: np.ndarray, state: SearchState) -> None:
        """Extend `state` with the frames of `encoder_out` (T, joiner_dim)."""
        encoder_out = np.ascontiguousarray(encoder_out, dtype=np.float32)
        start = 0
        while start < len(encoder_out):
            frames = encoder_out[start:start + JOINER_BATCH_FRAMES]
            decoder_out = np.broadcast_to(state.decoder_out, frames.shape)
            logits = self._joiner.run(None, {"encoder_out": frames, "decoder_out": np.ascontiguousarray(decoder_out)})[0]
            best = logits.argmax(axis=1)
            emitting = [i for i, token in enumerate(best.tolist()) if token not in self._no_emit]
            if not emitting:
                start += len(frames)
                continue
            offset = emitting[0]
            token = int(best[offset])
            state.tokens.append(token)
            state.token_frames.append(state.frames + start + offset)
            state.context = np.concatenate([state.context[:, 1:], [[token]]], axis=1).astype(np.int64)
            state.decoder_out = self._run_decoder(state.context)
            start += offset + 1
        state.frames += len(encoder_out)
