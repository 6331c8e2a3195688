"""The recognizer: one loaded bundle, any number of streams, the per-window decode loop.

`decode(stream)` runs every window the stream has ready: one encoder call per window
(state in, state out), the search over its frames (greedy, or the bundle's beam search
with its language model), then the endpoint check. The recognizer holds no per-stream
state, so one instance serves many streams.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from framegate.engine.audio import to_mono_float32
from framegate.engine.bundle import Bundle
from framegate.engine.beam_search import configured_search
from framegate.engine.encoder_runner import encoder_runner
from framegate.engine.endpoint import EndpointConfig, detect_endpoint
from framegate.engine.errors import AudioInputError, BundleError
from framegate.engine.stream import Result, Stream

DEFAULT_BUNDLE = Path(__file__).resolve().parent / "assets" / "default_bundle"


def _channel_search(bundle: Bundle, search):
    """Two-channel turn decoding for separator-transducer-segmenter bundles (engine/turns.py)."""
    from framegate.engine.turns import ChannelSearch

    return ChannelSearch(bundle, search)


class Recognizer:
    """Streaming speech recognition with one bundle.

    bundle_path: a bundle directory; None means the default bundle shipped with the engine.
    num_threads: ONNX Runtime intra-op threads per graph.
    endpoint: when to close an utterance; None never closes one (one utterance per stream).
    compute_threshold: gated bundles only: the default gate threshold in [0, 1] of new streams
        (None: the bundle's default); each stream can change its own with
        `stream.set_compute_threshold`.
    beam, lm_weight, token_bonus: search settings over the bundle's own (bundle.json `search`,
        engine/beam_search.py); beam 1 without a language model is greedy search.
    """

    def __init__(self, bundle_path: str | Path | None = None, num_threads: int = 1,
                 endpoint: EndpointConfig | None = EndpointConfig(),
                 compute_threshold: float | None = None, beam: int | None = None,
                 lm_weight: float | None = None, token_bonus: float | None = None) -> None:
        if endpoint is not None:
            endpoint.validate()
        if bundle_path is None:
            if not DEFAULT_BUNDLE.is_dir():
                raise BundleError(
                    f"no default model bundle is installed ({DEFAULT_BUNDLE} does not exist); pass a bundle "
                    f"directory (--model BUNDLE), or make one from a checkpoint with "
                    f"'framegate export --checkpoint PATH --out BUNDLE'")
            bundle_path = DEFAULT_BUNDLE
        self.bundle = Bundle.load(bundle_path, num_threads=num_threads)
        self.endpoint = endpoint
        search = configured_search(self.bundle, beam, lm_weight, token_bonus)
        self._search = _channel_search(self.bundle, search) if self.bundle.model_type == "sts" else search
        self._encoder = encoder_runner(self.bundle)
        self.compute_threshold = compute_threshold
        self.create_stream()  # refuses a bad compute_threshold now rather than at the first stream

    @property
    def search_settings(self) -> dict:
        """The search in use, as reports record it (two-speaker bundles: on each channel)."""
        return self._search.settings

    def create_stream(self) -> Stream:
        return Stream(self.bundle, self._search, self._encoder, self.compute_threshold)

    def is_ready(self, stream: Stream) -> bool:
        """Whether `decode(stream)` has at least one window to run."""
        return stream.has_window()

    def encode(self, window: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """One encoder call: window (window_frames, bins) -> (frames, joiner_dim), the state after it.

        `state` is the model type's encoder state (engine/encoder_runner.py)."""
        return self._encoder.encode(window, state)

    def encode_windows(self, windows: list[np.ndarray], state: Any) -> tuple[list[np.ndarray], Any]:
        """Consecutive windows of one utterance through the encoder: each window's frames and the
        state after the last. One window is one `encode` call; several (only for a runner whose
        `windows_per_call` allows them) go through the runner's `encode_windows` in one call."""
        if len(windows) == 1:
            encoder_out, state = self.encode(windows[0], state)
            return [encoder_out], state
        return self._encoder.encode_windows(windows, state)

    def decode(self, stream: Stream) -> None:
        """Decode every window `stream` has ready, closing utterances at endpoints.

        Windows that are ready together share an encoder call where the runner allows it
        (engine/encoder_runner.py); the search and the endpoint rule still step window by
        window, and an endpoint drops the rest of the call's windows: the next utterance
        encodes its audio afresh."""
        stream.is_endpoint = False
        windows_per_call = getattr(self._encoder, "windows_per_call", 1)
        while windows := stream.next_windows(windows_per_call):
            utt = stream.utterance
            outputs, encoder_state = self.encode_windows(windows, utt.encoder_state)
            for encoder_out in outputs:
                self._search.search(encoder_out, utt.search)
                stream.commit_chunk(encoder_state)
                if self.endpoint is not None and detect_endpoint(
                        self.endpoint, utterance_s=utt.search.frames * stream.encoder_frame_s,
                        trailing_silence_s=utt.search.trailing_blank_frames * stream.encoder_frame_s,
                        decoded_anything=bool(utt.search.tokens)):
                    stream.close_utterance()
                    break

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> Result:
        """A whole signal through one stream, as a file or microphone would feed it.

        A signal without samples is an AudioInputError: unlike a stream's empty block, an
        empty whole signal is almost always a caller's mistake (a failed read, a wrong slice).
        """
        stream = self.create_stream()
        samples = to_mono_float32(samples, what="transcribe samples")
        if not len(samples):
            raise AudioInputError("transcribe samples: the signal is empty (0 samples); nothing to transcribe")
        stream.accept_waveform(sample_rate, samples)
        stream.input_finished()
        self.decode(stream)
        return stream.result
