"""One audio source's state: audio in, encoder windows out, tokens and segments accumulated.

A `Stream` owns no model: the `Recognizer` runs the graphs and writes the results back
into the stream's `utterance` state. Everything that belongs to one utterance (fbank,
feature window, encoder state (LSTM h/c, global-CNN state), decoder context, tokens) lives in `UtteranceState` and is
rebuilt when the endpointer closes the utterance. The fbank restarts at the cut sample,
so the next utterance is transcribed exactly as if its audio had started a new stream;
the stream keeps only the 16 kHz samples not yet behind a decoded chunk for that.

The resampler is the one exception: it runs on the caller's rate before the 16 kHz cut
point exists, so it carries on across utterances (restarting it would drop or repeat
audio around the cut).

Memory is bounded however long the stream runs: samples are trimmed after every
decoded chunk, fbank frames are released once taken, and the window ring is fixed.
What grows is only what the caller has fed but not yet decoded, plus the transcript of
closed segments; a caller that runs for days takes those with `take_segments` as they
close, and then nothing grows with the stream's length.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from framegate.engine.audio import TARGET_RATE, StreamingResampler, to_mono_float32
from framegate.engine.bundle import Bundle
from framegate.engine.beam_search import BeamSearch, BeamState
from framegate.engine.decoding import GreedySearch, SearchState
from framegate.engine.encoder_runner import EncoderRunner
from framegate.engine.compute_telemetry import ComputeTelemetry
from framegate.engine.errors import AudioInputError, ComputeSettingError
from framegate.engine.features import StreamingFbank
from framegate.kernels import FeatureWindow, FeatureWindowConfig
from framegate.kernels.gated_encoder import check_threshold

WORD_MARKER = "\u2581"  # sentencepiece's "▁": a piece that starts a word


def tokens_to_text(pieces: list[str]) -> str:
    """Join sentencepiece pieces into words."""
    return "".join(pieces).replace(WORD_MARKER, " ").strip()


@dataclass
class Segment:
    """A closed utterance; times in seconds from the start of the stream.

    For a two-channel ("sts") bundle a segment is one speaker turn instead: `channel` is the
    model's output channel, start/end the `<sot>`/`<eot>` emission times, and `is_open` marks
    a turn still in progress (engine/turns.py). Single-channel bundles use channel 0."""

    text: str
    tokens: list[str]
    timestamps: list[float]
    start_s: float
    end_s: float
    channel: int = 0
    is_open: bool = False


@dataclass
class Result:
    """Everything decoded so far, less the segments already taken with `take_segments`.
    `segments` are the closed utterances; once `is_final`, the last utterance is included
    too, so the segments then cover the whole text."""

    text: str
    tokens: list[str]
    timestamps: list[float]
    segments: list[Segment]
    is_final: bool


@dataclass
class UtteranceState:
    """The state of the current utterance; a new one replaces it at every endpoint.

    `samples` holds the 16 kHz samples from utterance-relative index `samples_offset` on:
    those not yet behind a decoded chunk, needed to restart the fbank at a cut.
    """

    start_sample: int  # 16 kHz index in the stream where the utterance starts
    fbank: StreamingFbank
    window: FeatureWindow
    encoder_state: Any  # the model type's (engine/encoder_runner.py): LSTM h/c, global-CNN state, ...
    search: SearchState | BeamState
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    samples_offset: int = 0
    windows: deque[np.ndarray] = field(default_factory=deque)  # assembled, waiting for the encoder
    chunks_decoded: int = 0


class Stream:
    """Feed audio with `accept_waveform`, let a `Recognizer` decode, read `result`.

    Create streams with `Recognizer.create_stream()`. Not thread-safe: one stream, one
    caller at a time; different streams of one recognizer may run in different threads.
    """

    def __init__(self, bundle: Bundle, search: GreedySearch | BeamSearch, encoder: EncoderRunner,
                 compute_threshold: float | None = None) -> None:
        self._encoder = encoder
        self._gated = getattr(encoder, "gated", False)
        self._compute_threshold: float | None = None
        self._telemetry: ComputeTelemetry | None = None
        if self._gated:
            self._compute_threshold = _checked_threshold(
                encoder.default_threshold if compute_threshold is None else compute_threshold)
            self._telemetry = ComputeTelemetry(bundle.encoder.num_layers)
        elif compute_threshold is not None:
            raise ComputeSettingError(f"compute_threshold applies to gated bundles; this bundle's model type is "
                                      f"{bundle.model_type}")
        self._bundle = bundle
        self._search = search
        enc = bundle.encoder
        self._hop_samples = round(TARGET_RATE * bundle.features.frame_shift_ms / 1000)
        self._encoder_frame_s = enc.subsampling * bundle.features.frame_shift_ms / 1000
        self._window_config = FeatureWindowConfig(window_frames=enc.window_frames, chunk_frames=enc.chunk_frames,
                                                  num_bins=bundle.features.num_bins, pad_value=enc.pad_value)
        # two-channel bundles: turn segments from <sot>/<eot> (engine/turns.py); None otherwise
        self._turns = search.new_turn_log() if hasattr(search, "new_turn_log") else None
        self.reset()

    def reset(self) -> None:
        """Forget everything, including the sample rate: the stream is as if new (the compute
        threshold stays; the compute telemetry starts again)."""
        if self._telemetry is not None:
            self._telemetry = ComputeTelemetry(self._telemetry.num_layers)
        self._input_rate: int | None = None
        self._resampler: StreamingResampler | None = None
        self._input_finished = False
        self._samples_16k = 0
        self._segments: list[Segment] = []
        if self._turns is not None:
            self._turns.reset()
        self.is_endpoint = False  # set by Recognizer.decode: did its last call close an utterance?
        self.utterance = self._new_utterance(start_sample=0)

    def _new_utterance(self, start_sample: int) -> UtteranceState:
        encoder_state = self._encoder.initial_state()
        if self._gated:
            encoder_state.threshold = self._compute_threshold
            encoder_state.telemetry = self._telemetry
        utterance = UtteranceState(
            start_sample=start_sample,
            fbank=StreamingFbank(self._bundle.features),
            window=FeatureWindow(self._window_config),
            encoder_state=encoder_state,
            search=self._search.initial_state(),
        )
        if self._turns is not None:
            self._turns.resume(utterance.search)
        return utterance

    # -- compute dial (gated bundles) --------------------------------------------------------
    def set_compute_threshold(self, threshold: float) -> None:
        """Set this stream's gate threshold in [0, 1] (higher runs fewer encoder parts).

        It applies from the next encoder chunk this stream runs; chunks already encoded and
        other streams of the same recognizer are untouched. ComputeSettingError for a value
        outside [0, 1] or a bundle without gates."""
        if not self._gated:
            raise ComputeSettingError(f"set_compute_threshold needs a gated bundle; this bundle's model type is "
                                      f"{self._bundle.model_type}")
        self._compute_threshold = _checked_threshold(threshold)
        self.utterance.encoder_state.threshold = self._compute_threshold

    @property
    def compute_threshold(self) -> float | None:
        """The gate threshold the next chunk runs with (None for a bundle without gates)."""
        return self._compute_threshold

    @property
    def compute_telemetry(self) -> ComputeTelemetry | None:
        """Which encoder parts ran, per layer and per chunk, over this stream's life (gated bundles)."""
        return self._telemetry

    # -- audio in ------------------------------------------------------------------------
    def accept_waveform(self, sample_rate: int, samples: np.ndarray) -> None:
        """Append samples at `sample_rate` (any dtype; (frames,) or (frames, channels)).

        The rate is fixed by the first call; a different rate later is an AudioInputError.
        """
        if self._input_finished:
            raise AudioInputError("accept_waveform after input_finished(); call reset() to start again")
        if self._input_rate is None:
            self._resampler = StreamingResampler(sample_rate)
            self._input_rate = sample_rate
        elif sample_rate != self._input_rate:
            raise AudioInputError(f"sample rate changed mid-stream from {self._input_rate} Hz to {sample_rate} Hz; "
                                  f"use a new stream (or reset()) for audio at another rate")
        mono = to_mono_float32(samples, what="accept_waveform samples")
        self._push_16k(self._resampler.process(mono))

    def input_finished(self) -> None:
        """No more audio: the tail is flushed and padded so every sample gets decoded."""
        if self._input_finished:
            return
        if self._resampler is not None:
            self._push_16k(self._resampler.flush())
        self._input_finished = True
        self.utterance.fbank.input_finished()

    def _push_16k(self, samples_16k: np.ndarray) -> None:
        if not len(samples_16k):
            return
        utt = self.utterance
        utt.samples = np.concatenate([utt.samples, samples_16k])
        utt.fbank.accept(samples_16k)
        self._samples_16k += len(samples_16k)

    # -- the recognizer's side -------------------------------------------------------------
    def has_window(self) -> bool:
        """Whether an encoder window is ready (assembling windows from new fbank frames)."""
        utt = self.utterance
        if not utt.windows:
            frames = utt.fbank.take()
            if len(frames):
                utt.windows.extend(utt.window.accept(frames))
            if self._input_finished and not utt.window.finished:
                utt.windows.extend(utt.window.finish())
        return bool(utt.windows)

    def next_window(self) -> np.ndarray | None:
        """The next encoder window (window_frames, num_bins) of this utterance, or None."""
        return self.utterance.windows.popleft() if self.has_window() else None

    def next_windows(self, limit: int) -> list[np.ndarray]:
        """Up to `limit` consecutive encoder windows of this utterance (none when none is ready)."""
        if not self.has_window():
            return []
        windows = self.utterance.windows
        return [windows.popleft() for _ in range(min(limit, len(windows)))]

    def commit_chunk(self, encoder_state: Any) -> None:
        """Record that one window went through the encoder and the search: keep the encoder
        state and drop the samples now behind the decoded chunks. When several windows went
        through one encoder call, each of them commits the state after the last one: the next
        encoder call reads it only once all of them are committed (or an endpoint has replaced
        the utterance)."""
        utt = self.utterance
        utt.encoder_state = encoder_state
        utt.chunks_decoded += 1
        drop = self._cut_sample() - utt.samples_offset
        if drop > 0:
            utt.samples = utt.samples[drop:].copy()
            utt.samples_offset += drop

    def _cut_sample(self) -> int:
        """Utterance-relative 16 kHz index where the undecoded audio begins."""
        return self.utterance.chunks_decoded * self._window_config.chunk_frames * self._hop_samples

    def close_utterance(self) -> None:
        """End the current utterance at the last decoded chunk and start the next one there."""
        utt = self.utterance
        if self._turns is not None:
            self._segments += self._turns.close(utt.search, utt.start_sample / TARGET_RATE, self._encoder_frame_s)
        else:
            segment = self._segment(utt, end_sample=utt.start_sample + self._cut_sample())
            if segment.tokens:
                self._segments.append(segment)
        cut = min(self._cut_sample(), utt.samples_offset + len(utt.samples))
        remaining = utt.samples[cut - utt.samples_offset:]
        self.utterance = nxt = self._new_utterance(start_sample=utt.start_sample + cut)
        if len(remaining):  # already counted in _samples_16k: refed, not pushed
            nxt.samples = remaining.copy()
            nxt.fbank.accept(remaining)
        if self._input_finished:
            nxt.fbank.input_finished()
        self.is_endpoint = True

    # -- results ---------------------------------------------------------------------------
    def take_segments(self) -> list[Segment]:
        """Hand over the closed segments and forget them: `result` no longer contains them.

        A stream that runs for days would otherwise keep its whole transcript; a long-running
        caller takes segments as they close (after a `decode` that set `is_endpoint`) and the
        stream then holds only the current utterance. Callers that never take keep everything.
        """
        taken, self._segments = self._segments, []
        return taken

    @property
    def encoder_frame_s(self) -> float:
        """Seconds per encoder frame (subsampling x fbank hop)."""
        return self._encoder_frame_s

    @property
    def is_final(self) -> bool:
        """Input finished and every window decoded."""
        utt = self.utterance
        return self._input_finished and utt.window.finished and not utt.windows

    def _segment(self, utt: UtteranceState, end_sample: int) -> Segment:
        pieces = [self._bundle.tokens[t] for t in utt.search.tokens]
        start_s = utt.start_sample / TARGET_RATE
        times = [round(start_s + frame * self._encoder_frame_s, 6) for frame in utt.search.token_frames]
        return Segment(text=tokens_to_text(pieces), tokens=pieces, timestamps=times, start_s=start_s,
                       end_s=end_sample / TARGET_RATE)

    @property
    def result(self) -> Result:
        if self._turns is not None:
            return self._turn_result()
        current = self._segment(self.utterance, end_sample=self._samples_16k)
        final = self.is_final
        segments = self._segments + ([current] if final and current.tokens else [])
        parts = self._segments + [current]
        return Result(
            text=" ".join(s.text for s in parts if s.text),
            tokens=[t for s in parts for t in s.tokens],
            timestamps=[t for s in parts for t in s.timestamps],
            segments=list(segments),
            is_final=final,
        )


    def _turn_result(self) -> Result:
        """Two-channel bundles: every turn so far (open ones partial), words of all turns in time order."""
        from framegate.engine.turns import merge_in_time, ordered

        utt, final = self.utterance, self.is_final
        current = self._turns.segments(utt.search, utt.start_sample / TARGET_RATE, self._encoder_frame_s,
                                       self._samples_16k / TARGET_RATE, final=final)
        segments = ordered(self._segments + current)
        text, tokens, timestamps = merge_in_time(segments)
        return Result(text=text, tokens=tokens, timestamps=timestamps, segments=segments, is_final=final)


def _checked_threshold(threshold: float) -> float:
    try:
        return check_threshold(threshold)
    except ValueError as e:
        raise ComputeSettingError(str(e)) from None
