"""Two-channel decoding and turn segments for separator-transducer-segmenter ("sts") bundles.

The encoder gives one row of frames per output channel; `ChannelSearch` runs the
baseline's greedy search on every channel over the same chunk before the next window
(frame-synchronous at chunk granularity: no channel ever runs ahead of the other, and as
the channels share no search state this equals interleaving them frame by frame).

Segments are read off each channel's tokens (`TurnLog`): `<sot>` opens a turn at its
frame's time, `<eot>` closes it at its frame's time, the pieces in between are its words.
The rules for imperfect token streams, so a model's mistakes never crash the engine: a
word while no turn is open opens one at that word; a second `<sot>` in an open turn and an
`<eot>` with no open turn are ignored; a turn that closes without words is dropped; a turn
still open when the input ends closes at the end of the audio. While a turn is open the
result shows it as a partial segment (`is_open`) ending at the last decoded frame.

Endpointing (engine/endpoint.py's rules) sees the trailing silence of the channels as
zero while any turn is open, so only the utterance-length rule cuts inside a turn; a turn
open at a cut carries over into the next utterance (the model state restarts, the
segment continues).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from framegate.engine.bundle import Bundle
from framegate.engine.beam_search import BeamSearch, BeamState, configured_search
from framegate.engine.decoding import GreedySearch, SearchState
from framegate.engine.errors import BundleError
from framegate.engine.stream import WORD_MARKER, Segment, tokens_to_text


@dataclass
class ChannelSearchState:
    """The search state of one utterance: one search state per channel, and the turns the previous
    utterance left open. Whether a turn is open follows from each channel's tokens as they stand
    (a beam search may still revise them): open after any token but `<eot>`."""

    channels: list[SearchState | BeamState]
    carried_open: list[bool]
    eot_id: int

    @property
    def open(self) -> list[bool]:
        return [ch.tokens[-1] != self.eot_id if ch.tokens else carried
                for ch, carried in zip(self.channels, self.carried_open)]

    @property
    def frames(self) -> int:
        return self.channels[0].frames

    @property
    def tokens(self) -> list[int]:
        return [t for ch in self.channels for t in ch.tokens]

    @property
    def trailing_blank_frames(self) -> int:
        """Zero while a turn is open; else frames since the last token of any channel."""
        if any(self.open):
            return 0
        return min(ch.trailing_blank_frames for ch in self.channels)


class ChannelSearch:
    """The same search (greedy, or beam search without a language model) over every channel of
    an STS encoder's output (decoder and joiner tied)."""

    def __init__(self, bundle: Bundle, search: GreedySearch | BeamSearch | None = None) -> None:
        self._search = search if search is not None else configured_search(bundle)
        sts = bundle.manifest["sts"]
        self.channels = int(sts["channels"])
        try:
            self.sot_id = bundle.tokens.index(sts["sot_piece"])
            self.eot_id = bundle.tokens.index(sts["eot_piece"])
        except ValueError:
            raise BundleError(f"tokens.txt has no {sts['sot_piece']!r} / {sts['eot_piece']!r} piece, which "
                              f"bundle.json's sts section names") from None
        self._pieces = bundle.tokens

    @property
    def settings(self) -> dict:
        return {**self._search.settings, "channels": self.channels}

    def initial_state(self) -> ChannelSearchState:
        return ChannelSearchState([self._search.initial_state() for _ in range(self.channels)],
                                  [False] * self.channels, self.eot_id)

    def search(self, encoder_out: np.ndarray, state: ChannelSearchState) -> None:
        """Extend every channel with its frames of `encoder_out` (channels, T, joiner_dim)."""
        if encoder_out.shape[0] != self.channels:
            raise BundleError(f"the encoder gave {encoder_out.shape[0]} channel rows; bundle.json says {self.channels}")
        for c, channel in enumerate(state.channels):
            self._search.search(encoder_out[c], channel)

    def new_turn_log(self) -> "TurnLog":
        """What a stream of this bundle keeps across utterances (engine/stream.py asks for it)."""
        return TurnLog(self._pieces, self.sot_id, self.eot_id, self.channels)


@dataclass
class _OpenTurn:
    start_s: float
    tokens: list[str] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)

    def segment(self, channel: int, end_s: float, is_open: bool) -> Segment:
        return Segment(text=tokens_to_text(self.tokens), tokens=list(self.tokens), timestamps=list(self.timestamps),
                       start_s=self.start_s, end_s=end_s, channel=channel, is_open=is_open)


class TurnLog:
    """Turn segments from channel tokens; carries turns open at an utterance cut into the next."""

    def __init__(self, pieces: list[str], sot_id: int, eot_id: int, channels: int) -> None:
        self._pieces = pieces
        self._sot, self._eot = sot_id, eot_id
        self._channels = channels
        self.reset()

    def reset(self) -> None:
        self._carry: list[_OpenTurn | None] = [None] * self._channels

    def resume(self, state: ChannelSearchState) -> None:
        """A new utterance starts with the turns the last one left open."""
        state.carried_open = [turn is not None for turn in self._carry]

    def _scan(self, state: ChannelSearchState, start_s: float, frame_s: float
              ) -> tuple[list[Segment], list[_OpenTurn | None]]:
        closed: list[Segment] = []
        still_open: list[_OpenTurn | None] = []
        for c, channel in enumerate(state.channels):
            carried = self._carry[c]
            turn = None if carried is None else _OpenTurn(carried.start_s, list(carried.tokens), list(carried.timestamps))
            for token, frame in zip(channel.tokens, channel.token_frames):
                time_s = round(start_s + frame * frame_s, 6)
                if token == self._sot:
                    turn = turn or _OpenTurn(time_s)
                elif token == self._eot:
                    if turn is not None and turn.tokens:
                        closed.append(turn.segment(c, time_s, is_open=False))
                    turn = None
                else:
                    turn = turn or _OpenTurn(time_s)
                    turn.tokens.append(self._pieces[token])
                    turn.timestamps.append(time_s)
            still_open.append(turn)
        return closed, still_open

    def segments(self, state: ChannelSearchState, start_s: float, frame_s: float, end_s: float, final: bool
                 ) -> list[Segment]:
        """The current utterance's segments: closed turns, then open ones (partial unless `final`,
        which closes them at `end_s`, the end of the audio)."""
        closed, still_open = self._scan(state, start_s, frame_s)
        decoded_s = round(start_s + state.frames * frame_s, 6)
        for c, turn in enumerate(still_open):
            if turn is not None and turn.tokens:
                closed.append(turn.segment(c, round(end_s, 6) if final else max(decoded_s, turn.start_s),
                                           is_open=not final))
        return closed

    def close(self, state: ChannelSearchState, start_s: float, frame_s: float) -> list[Segment]:
        """At an utterance cut: the turns closed in it; open ones carry over to the next utterance."""
        closed, self._carry = self._scan(state, start_s, frame_s)
        return closed


def merge_in_time(segments: list[Segment]) -> tuple[str, list[str], list[float]]:
    """All words of all segments in time order (ties: lower channel first): text, pieces, times.

    Words, not pieces, are ordered, so two channels' pieces never interleave inside a word."""
    words = []
    for seg in segments:
        for piece, time_s in zip(seg.tokens, seg.timestamps):
            if not words or words[-1][3] is not seg or piece.startswith(WORD_MARKER):
                words.append([time_s, seg.channel, [], seg, []])
            words[-1][2].append(piece)
            words[-1][4].append(time_s)
    words.sort(key=lambda w: (w[0], w[1]))
    pieces = [p for w in words for p in w[2]]
    times = [t for w in words for t in w[4]]
    return " ".join(tokens_to_text(w[2]) for w in words if tokens_to_text(w[2])), pieces, times


def ordered(segments: list[Segment]) -> list[Segment]:
    return sorted(segments, key=lambda s: (s.start_s, s.channel))


def recognize_turns(bundle: Bundle, samples_16k: np.ndarray, beam: int | None = None) -> list[Segment]:
    """The offline reference for two-channel bundles: one encoder call over the whole padded
    signal (engine/offline.py), the same channel search and turn rules, turns closed at the end."""
    from framegate.engine.offline import encoder_output

    search = ChannelSearch(bundle, configured_search(bundle, beam=beam))
    state = search.initial_state()
    out = encoder_output(bundle, samples_16k)
    if out.ndim == 3:
        search.search(out, state)
    frame_s = bundle.encoder.subsampling * bundle.features.frame_shift_ms / 1000
    end_s = len(samples_16k) / 16000
    return ordered(search.new_turn_log().segments(state, 0.0, frame_s, end_s, final=True))
