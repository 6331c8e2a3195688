"""Modified beam search over encoder frames, with optional shallow fusion of a token n-gram.

The search keeps `beam` hypotheses; at each encoder frame every hypothesis either stays
(blank, or `<unk>`, which emits nothing as in greedy search) or emits one piece, and the best
`beam` of all those extensions survive, hypotheses that reach the same pieces merged by
adding their probabilities (icefall's and sherpa-onnx's "modified" beam search: at most one
piece per frame, so the decoder runs once per frame for the whole beam). With a language
model, an emitted piece scores its acoustic log-probability plus `lm_weight` times the
LM's and `token_bonus` (which offsets the LM's pull toward fewer pieces). Greedy search is
the case beam = 1 without a language model, decision for decision.

Partial results are the best hypothesis so far, so they may change as later frames arrive;
the final result is the best hypothesis after the last frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from framegate.engine.bundle import Bundle
from framegate.engine.decoding import CachedDecoder, GreedySearch, emitting_tokens
from framegate.engine.errors import BundleError, SearchSettingError
from framegate.engine.token_lm import TokenLm


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]
    token_frames: tuple[int, ...]
    score: float  # acoustic log-probability, plus lm_weight x LM log-probability and bonuses
    decoder_out: np.ndarray  # (1, joiner_dim), read-only, for the last context_size tokens
    lm_context: tuple[int, ...] = ()


@dataclass
class BeamState:
    """Search state of one utterance; reads like greedy's SearchState through the best hypothesis."""

    hyps: list[Hypothesis]
    frames: int = 0
    _best: Hypothesis | None = field(default=None, repr=False)

    @property
    def best(self) -> Hypothesis:
        if self._best is None:
            self._best = max(self.hyps, key=lambda h: h.score)
        return self._best

    @property
    def tokens(self) -> list[int]:
        return list(self.best.tokens)

    @property
    def token_frames(self) -> list[int]:
        return list(self.best.token_frames)

    @property
    def trailing_blank_frames(self) -> int:
        """Encoder frames since the best hypothesis's last token (all frames when it has none)."""
        frames = self.best.token_frames
        return self.frames - (frames[-1] + 1 if frames else 0)

    def advance(self, hyps: list[Hypothesis], frames: int) -> None:
        """The hypotheses after `frames` more encoder frames."""
        self.hyps, self._best = hyps, None
        self.frames += frames


@dataclass(frozen=True)
class BeamSearchConfig:
    beam: int = 4
    lm_weight: float = 0.0
    token_bonus: float = 0.0

    def validate(self) -> None:
        if not isinstance(self.beam, int) or self.beam < 1:
            raise ValueError(f"beam must be an integer >= 1, got {self.beam!r}")
        if not (np.isfinite(self.lm_weight) and self.lm_weight >= 0):
            raise ValueError(f"lm_weight must be a finite number >= 0, got {self.lm_weight!r}")
        if not np.isfinite(self.token_bonus):
            raise ValueError(f"token_bonus must be finite, got {self.token_bonus!r}")


class BeamSearch:
    """Search logic over a bundle's decoder and joiner (and an optional LM); stateless apart
    from caches that are pure functions of their keys, so one instance serves every stream."""

    def __init__(self, bundle: Bundle, config: BeamSearchConfig = BeamSearchConfig(),
                 lm: TokenLm | None = None) -> None:
        config.validate()
        self.config = config
        self._joiner: ort.InferenceSession = bundle.joiner_session
        self._decoder = CachedDecoder(bundle)
        self._vocab = bundle.decoder.vocab_size
        self._emits = np.array(emitting_tokens(bundle))
        self._lm = lm if config.lm_weight > 0 else None

    @property
    def settings(self) -> dict:
        """What reports record about the search."""
        return {"method": "modified_beam_search", "beam": self.config.beam, "lm_weight": self.config.lm_weight,
                "token_bonus": self.config.token_bonus, "lm_order": self._lm.order if self._lm else None}

    def initial_state(self) -> BeamState:
        context = self._decoder.initial_context
        lm_context = self._lm.initial_context() if self._lm is not None else ()
        return BeamState(hyps=[Hypothesis((), (), 0.0, self._decoder(context), lm_context)])

    def _piece_scores(self, hyps: list[Hypothesis], log_probs: np.ndarray) -> np.ndarray:
        """(beams, vocab): what each extension adds to its hypothesis's score."""
        if self._lm is None:
            return log_probs
        lm = self._lm.scores_batch([h.lm_context for h in hyps])[:, :self._vocab]
        fused = log_probs + self.config.lm_weight * lm + self.config.token_bonus
        return np.where(self._emits, fused, log_probs)

    def _extend(self, hyp: Hypothesis, token: int, score: float, frame: int) -> Hypothesis:
        tokens = (*hyp.tokens, token)
        context = (*self._decoder.initial_context, *tokens)[-self._decoder.context_size:]
        lm_context = self._lm.next_context(hyp.lm_context, token) if self._lm is not None else ()
        return Hypothesis(tokens, (*hyp.token_frames, frame), score, self._decoder(context), lm_context)

    def search(self, encoder_out: np.ndarray, state: BeamState) -> None:
        """Extend `state` with the frames of `encoder_out` (T, joiner_dim)."""
        encoder_out = np.ascontiguousarray(encoder_out, dtype=np.float32)
        hyps = state.hyps
        for t, frame in enumerate(encoder_out):
            decoder_out = np.concatenate([h.decoder_out for h in hyps])
            logits = self._joiner.run(None, {"encoder_out": np.repeat(frame[None], len(hyps), axis=0),
                                             "decoder_out": decoder_out})[0].astype(np.float64)
            log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
            totals = np.array([h.score for h in hyps])[:, None] + self._piece_scores(hyps, log_probs)
            flat = totals.ravel()
            keep = min(self.config.beam, flat.size)
            top = np.argpartition(-flat, keep - 1)[:keep]
            merged: dict[tuple[int, ...], Hypothesis] = {}
            for index in top[np.argsort(-flat[top], kind="stable")].tolist():
                b, token = divmod(index, self._vocab)
                hyp, score = hyps[b], float(flat[index])
                new = (self._extend(hyp, token, score, state.frames + t) if self._emits[token]
                       else Hypothesis(hyp.tokens, hyp.token_frames, score, hyp.decoder_out, hyp.lm_context))
                old = merged.get(new.tokens)
                merged[new.tokens] = new if old is None else Hypothesis(
                    old.tokens, old.token_frames, float(np.logaddexp(old.score, score)), old.decoder_out,
                    old.lm_context)
            hyps = list(merged.values())
        state.advance(hyps, len(encoder_out))


def configured_search(bundle: Bundle, beam: int | None = None, lm_weight: float | None = None,
                      token_bonus: float | None = None) -> GreedySearch | BeamSearch:
    """The search bundle.json's optional `search` section asks for ({"beam", "lm_weight",
    "token_bonus", "lm": a compiled LM file listed in `files`}), with the caller's overrides;
    greedy search when the result is a beam of 1 without a language model (same decisions)."""
    section = bundle.manifest.get("search", {})
    if not isinstance(section, dict):
        raise BundleError(f"bundle.json: 'search' must be an object, found {section!r}")
    unknown = set(section) - {"beam", "lm_weight", "token_bonus", "lm"}
    if unknown:
        raise BundleError(f"bundle.json: search: unknown keys {sorted(unknown)}")
    try:
        own = BeamSearchConfig(beam=section.get("beam", 1), lm_weight=float(section.get("lm_weight", 0.0)),
                               token_bonus=float(section.get("token_bonus", 0.0)))
        own.validate()
    except (TypeError, ValueError) as exc:
        raise BundleError(f"bundle.json: search: {exc}") from None
    try:
        config = BeamSearchConfig(beam=own.beam if beam is None else beam,
                                  lm_weight=own.lm_weight if lm_weight is None else float(lm_weight),
                                  token_bonus=own.token_bonus if token_bonus is None else float(token_bonus))
        config.validate()
    except (TypeError, ValueError) as exc:
        raise SearchSettingError(f"search settings: {exc}") from None
    if config.lm_weight > 0 and "lm" not in section:
        raise SearchSettingError(f"lm_weight {config.lm_weight} needs a language model, and bundle "
                                 f"{bundle.path} has none (add one with 'framegate lm build')")
    if config.beam == 1 and config.lm_weight == 0:
        return GreedySearch(bundle)
    lm = None
    if config.lm_weight > 0:
        name = section["lm"]
        if name not in bundle.manifest.get("files", {}):
            raise BundleError(f"bundle.json: search.lm {name!r} is not listed (with its checksum) in 'files'")
        lm = TokenLm.load(bundle.path / name, bundle.tokens)
    return BeamSearch(bundle, config, lm)
