"""Greedy transducer search over encoder frames, carried across chunks of one utterance.

The rule is sherpa-onnx's (and export/greedy.py's): at most one symbol per encoder frame;
blank and `<unk>` emit nothing; the stateless decoder starts from the context
[-1, ..., -1, blank] and runs again only after an emission, so its output is cached in
the search state. The joiner scores a run of frames in one call while the decoder output
stays the same (it is row-wise, so this equals calling it frame by frame).

The stateless decoder's output depends on its context alone (the last `context_size`
tokens), and a vocabulary's common contexts recur all the time, so `GreedySearch` keeps the
outputs of the most recently used contexts (`DECODER_CACHE_CONTEXTS`, shared by every
stream of a recognizer): a cached context costs a dictionary lookup instead of an ONNX
Runtime call, and returns the very array that call returned.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from framegate.engine.bundle import Bundle

JOINER_BATCH_FRAMES = 16  # rows per joiner call: bounds the work redone after an emission
DECODER_CACHE_CONTEXTS = 2048  # decoder outputs kept: about 3 MB at joiner_dim 320


@dataclass
class SearchState:
    """Search state of one utterance; `frames` counts encoder frames searched so far."""

    context: np.ndarray  # (1, context_size) int64, the decoder's input
    decoder_out: np.ndarray  # (1, joiner_dim) float32, decoder output for `context` (read-only, may be shared)
    tokens: list[int] = field(default_factory=list)
    token_frames: list[int] = field(default_factory=list)  # encoder frame of each token
    frames: int = 0

    @property
    def trailing_blank_frames(self) -> int:
        """Encoder frames since the last emitted token (all frames when none was emitted)."""
        return self.frames - (self.token_frames[-1] + 1 if self.token_frames else 0)


def emitting_tokens(bundle: Bundle) -> list[bool]:
    """By token id: whether emitting it adds a token (blank and `<unk>` emit nothing)."""
    no_emit = {bundle.decoder.blank_id} | ({bundle.unk_id} if bundle.unk_id is not None else set())
    return [token not in no_emit for token in range(bundle.decoder.vocab_size)]


class CachedDecoder:
    """The stateless decoder's output for a context (a tuple of the last `context_size`
    tokens), the most recently used contexts cached; safe to share by threads."""

    def __init__(self, bundle: Bundle) -> None:
        self._session: ort.InferenceSession = bundle.decoder_session
        self.context_size = bundle.decoder.context_size
        self.initial_context = (-1,) * (self.context_size - 1) + (bundle.decoder.blank_id,)
        self._cached = functools.lru_cache(maxsize=DECODER_CACHE_CONTEXTS)(self._run)

    def __call__(self, context: tuple[int, ...]) -> np.ndarray:
        """(1, joiner_dim), read-only: shared by every stream that reaches this context."""
        return self._cached(context)

    def _run(self, context: tuple[int, ...]) -> np.ndarray:
        out = self._session.run(None, {"y": np.array([context], dtype=np.int64)})[0]
        out.flags.writeable = False
        return out


class GreedySearch:
    """Search logic over a bundle's decoder and joiner sessions; its only state is the
    decoder-output cache, which is a pure function of the context (safe to share by threads)."""

    def __init__(self, bundle: Bundle) -> None:
        self._joiner: ort.InferenceSession = bundle.joiner_session
        self._emits = emitting_tokens(bundle)
        self._decoder = CachedDecoder(bundle)

    @property
    def settings(self) -> dict:
        """What reports record about the search."""
        return {"method": "greedy"}

    def initial_state(self) -> SearchState:
        context = self._decoder.initial_context
        return SearchState(context=np.array([context], dtype=np.int64), decoder_out=self._decoder(context))

    def search(self, encoder_out: np.ndarray, state: SearchState) -> None:
        """Extend `state` with the frames of `encoder_out` (T, joiner_dim)."""
        encoder_out = np.ascontiguousarray(encoder_out, dtype=np.float32)
        start = 0
        while start < len(encoder_out):
            frames = encoder_out[start:start + JOINER_BATCH_FRAMES]
            decoder_out = np.repeat(state.decoder_out, len(frames), axis=0)
            best = self._joiner.run(None, {"encoder_out": frames, "decoder_out": decoder_out})[0].argmax(axis=1)
            offset = next((i for i, token in enumerate(best.tolist()) if self._emits[token]), None)
            if offset is None:
                start += len(frames)
                continue
            token = int(best[offset])
            state.tokens.append(token)
            state.token_frames.append(state.frames + start + offset)
            context = (*state.context[0, 1:].tolist(), token)
            state.context = np.array([context], dtype=np.int64)
            state.decoder_out = self._decoder(context)
            start += offset + 1
        state.frames += len(encoder_out)
