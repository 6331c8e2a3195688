"""How each model type's streaming encoder runs: one window in, encoder frames and new state out.

The recognizer and the stream know only this face: `initial_state()` for a new utterance,
`encode(window, state)` per window, and `encode_utterance(features)` for the offline
reference (the same graphs once over a whole padded utterance). A new model type adds one
runner class and one entry in `RUNNERS`; nothing else in the engine branches on the type.

State objects belong to one utterance of one stream; an endpoint replaces them with a
fresh `initial_state()`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from framegate.engine.bundle import Bundle
from framegate.engine.errors import BundleError
from framegate.engine.compute_telemetry import ComputeTelemetry
from framegate.kernels.gated_encoder import GatedEncoder, GatedEncoderConfig
from framegate.kernels.global_cnn_state import GlobalCnn, GlobalCnnConfig


class EncoderRunner(Protocol):
    """A runner may also take several windows per call: it then sets `windows_per_call` > 1 and
    has `encode_windows(windows, state) -> (each window's frames, state after the last)`;
    the recognizer passes it up to that many consecutive windows of one utterance."""

    def initial_state(self) -> Any: ...

    def encode(self, window: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """window (window_frames, bins) -> (frames, joiner_dim) and the state after it."""
        ...

    def encode_utterance(self, features: np.ndarray) -> np.ndarray:
        """(frames, bins) padded utterance -> (frames', joiner_dim), from the initial state."""
        ...


@dataclass
class LstmState:
    h: np.ndarray  # (layers, 1, d_model)
    c: np.ndarray  # (layers, 1, rnn_hidden_size)


def _zero_lstm_state(bundle: Bundle) -> LstmState:
    enc = bundle.encoder
    return LstmState(h=np.zeros((enc.num_layers, 1, enc.d_model), dtype=np.float32),
                     c=np.zeros((enc.num_layers, 1, enc.rnn_hidden_size), dtype=np.float32))


LSTM_WINDOWS_PER_CALL = 16  # at most this many windows in one encoder call: bounds its activations


class LstmEncoderRunner:
    """The baseline: encoder.onnx with explicit (h, c).

    Consecutive windows of one utterance may go through one call (`encode_windows`): the
    convolutions have no time padding and the LSTM carries (h, c) frame by frame, so the span
    of k windows (k * chunk_frames + lookahead fbank frames) yields exactly the frames and
    state of k single-window calls (ONNX Runtime computes each output row alike whatever the
    row count; the tests compare them bit for bit). A window's compute is bound by streaming
    the weights from memory (22 MB for the default model); one call for k windows streams the
    input-side weights once instead of k times (measured on the default bundle, one thread:
    2 windows per call cost 0.76x, 8 windows 0.46x the time per window of single calls).
    """

    windows_per_call = LSTM_WINDOWS_PER_CALL

    def __init__(self, bundle: Bundle) -> None:
        self._bundle = bundle
        self._session = bundle.sessions["encoder.onnx"]
        enc = bundle.encoder
        self._lookahead_frames = enc.lookahead_frames
        self._frames_per_window = enc.chunk_frames // enc.subsampling

    def initial_state(self) -> LstmState:
        return _zero_lstm_state(self._bundle)

    def encode(self, window: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        out, h, c = self._session.run(None, {"x": window[np.newaxis], "h": state.h, "c": state.c})
        return out[0], LstmState(h, c)

    def encode_windows(self, windows: list[np.ndarray], state: LstmState) -> tuple[list[np.ndarray], LstmState]:
        """Consecutive windows (each (window_frames, bins), window k+1 starting chunk_frames after
        window k) in one call -> each window's (frames, joiner_dim) and the state after the last."""
        span = np.concatenate([windows[0], *(w[self._lookahead_frames:] for w in windows[1:])])
        out, state = self.encode(span, state)
        n = self._frames_per_window
        return [out[i * n:(i + 1) * n] for i in range(len(windows))], state

    def encode_utterance(self, features: np.ndarray) -> np.ndarray:
        return self.encode(features, self.initial_state())[0]


@dataclass
class ConvRnntState:
    local_cache: np.ndarray  # (local_layers, 1, local_cache_frames, local_channels)
    global_cnn: Any          # framegate.kernels GlobalCnnState, advanced in place by the C++ kernel
    lstm: LstmState


class ConvRnntEncoderRunner:
    """frontend.onnx -> C++ global CNN (its state in C++) -> encoder_rest.onnx.

    The global CNN's weights come from global_cnn.onnx's initializers, read through ONNX
    Runtime by the names bundle.json lists, and are handed to the kernel as arrays.
    """

    def __init__(self, bundle: Bundle) -> None:
        self._bundle = bundle
        self._frontend = bundle.sessions["frontend.onnx"]
        self._rest = bundle.sessions["encoder_rest.onnx"]
        section = bundle.manifest["global_cnn"]
        weights = bundle.sessions["global_cnn.onnx"]
        names = [o.name for o in weights.get_outputs()]
        tensors = dict(zip(names, weights.run(None, {})))
        try:
            config = GlobalCnnConfig(channels=section["channels"], hidden=section["hidden"],
                                     se_hidden=section["se_hidden"], num_blocks=section["num_blocks"],
                                     squeeze=section["squeeze"], ema_decay=section["ema_decay"])
            self._global_cnn = GlobalCnn.from_named(config, {r["name"]: tensors[r["name"]]
                                                             for r in section["tensors"]})
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"global_cnn.onnx / bundle.json global_cnn: {e}") from None
        enc = bundle.manifest["encoder"]
        self._cache_shape = (enc["local_layers"], 1, enc["local_cache_frames"], enc["local_channels"])

    @property
    def global_cnn(self) -> GlobalCnn:
        """The C++ global CNN (shared weights; each stream's state is in its ConvRnntState)."""
        return self._global_cnn

    def initial_state(self) -> ConvRnntState:
        return ConvRnntState(local_cache=np.zeros(self._cache_shape, dtype=np.float32),
                             global_cnn=self._global_cnn.initial_state(), lstm=_zero_lstm_state(self._bundle))

    def encode(self, window: np.ndarray, state: ConvRnntState) -> tuple[np.ndarray, ConvRnntState]:
        local, global_in, cache = self._frontend.run(None, {"x": window[np.newaxis], "local_cache": state.local_cache})
        global_out = self._global_cnn.forward(global_in[0], state.global_cnn)
        out, h, c = self._rest.run(None, {"local": local, "global_out": global_out[np.newaxis],
                                          "h": state.lstm.h, "c": state.lstm.c})
        return out[0], ConvRnntState(cache, state.global_cnn, LstmState(h, c))

    def encode_utterance(self, features: np.ndarray) -> np.ndarray:
        return self.encode(features, self.initial_state())[0]


@dataclass
class GatedState:
    blocks: Any                    # framegate.kernels GatedEncoderState, advanced in place by C++
    threshold: float               # the stream's compute dial, read at every encoder call
    telemetry: ComputeTelemetry | None = None  # the stream's (outlives the utterance), if any


class GatedTransformerRunner:
    """frontend.onnx -> C++ GatedEncoder (arbitrators, gated blocks, key/value rings, output).

    Weights come from gated_weights.onnx's initializers, read through ONNX Runtime by the names
    bundle.json's gating section lists. The threshold travels in the state, so a stream's
    `set_compute_threshold` takes effect at its next encoder call and touches no other stream.
    """

    gated = True

    def __init__(self, bundle: Bundle) -> None:
        self._frontend = bundle.sessions["frontend.onnx"]
        enc, gating = bundle.manifest["encoder"], bundle.manifest["gating"]
        weights = bundle.sessions["gated_weights.onnx"]
        tensors = dict(zip([o.name for o in weights.get_outputs()], weights.run(None, {})))
        try:
            self.config = GatedEncoderConfig(
                d_model=enc["d_model"], num_heads=enc["num_heads"], ff_dim=enc["ff_dim"],
                num_layers=enc["num_layers"], left_context=enc["left_context"], joiner_dim=enc["joiner_dim"],
                max_rows=enc["max_rows"], arbitrator=gating["arbitrator"],
                arbitrator_kernel=gating["arbitrator_kernel"], arbitrator_hidden=gating["arbitrator_hidden"])
            self.encoder = GatedEncoder.from_named(self.config, {r["name"]: tensors[r["name"]]
                                                                 for r in gating["tensors"]})
            self.default_threshold = float(gating["default_threshold"])
            self.frontend_macs_per_frame = int(gating["part_macs_per_frame"]["frontend"])
            self.dense_macs_per_frame = int(gating["mac_denominator_per_frame"])
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"gated_weights.onnx / bundle.json gating: {e}") from None

    def frontend(self, window: np.ndarray) -> np.ndarray:
        """(frames, bins) fbank -> (frames', d_model) front-end frames (ONNX Runtime)."""
        return self._frontend.run(None, {"x": window[np.newaxis]})[0][0]

    def initial_state(self) -> GatedState:
        return GatedState(blocks=self.encoder.initial_state(), threshold=self.default_threshold)

    def encode(self, window: np.ndarray, state: GatedState) -> tuple[np.ndarray, GatedState]:
        frames = self.frontend(window)
        chunk = self.encoder.forward(frames, state.blocks, threshold=state.threshold)
        if state.telemetry is not None:
            n = len(frames)
            state.telemetry.record(n, state.threshold, chunk.attention_rows, chunk.ff_rows,
                                   chunk.macs + n * self.frontend_macs_per_frame, n * self.dense_macs_per_frame)
        return chunk.out, state

    def encode_utterance(self, features: np.ndarray) -> np.ndarray:
        return self.encode(features, self.initial_state())[0]


@dataclass
class StsState:
    mix_h: np.ndarray  # (mix_layers, 1, d_model)
    mix_c: np.ndarray  # (mix_layers, 1, rnn_hidden_size)
    rec_h: np.ndarray  # (rec_layers, channels, d_model)
    rec_c: np.ndarray  # (rec_layers, channels, rnn_hidden_size)


class StsEncoderRunner:
    """The separator-transducer-segmenter: encoder.onnx with explicit mixture and per-channel LSTM
    states; `encode` returns (channels, frames, joiner_dim), one row of frames per output channel."""

    channels = 2

    def __init__(self, bundle: Bundle) -> None:
        self._session = bundle.sessions["encoder.onnx"]
        self._shapes = [tuple(s["shape"]) for s in bundle.manifest["states"]]

    def initial_state(self) -> StsState:
        return StsState(*(np.zeros(shape, dtype=np.float32) for shape in self._shapes))

    def encode(self, window: np.ndarray, state: StsState) -> tuple[np.ndarray, StsState]:
        out, *new = self._session.run(None, {"x": window[np.newaxis], "mix_h": state.mix_h, "mix_c": state.mix_c,
                                              "rec_h": state.rec_h, "rec_c": state.rec_c})
        return out, StsState(*new)

    def encode_utterance(self, features: np.ndarray) -> np.ndarray:
        return self.encode(features, self.initial_state())[0]


RUNNERS: dict[str, type] = {"lstm_transducer": LstmEncoderRunner, "convrnnt": ConvRnntEncoderRunner,
                            "gated_transformer": GatedTransformerRunner, "sts": StsEncoderRunner}


def encoder_runner(bundle: Bundle) -> EncoderRunner:
    """The runner for `bundle`'s model type (Bundle.load has already refused unknown types)."""
    return RUNNERS[bundle.model_type](bundle)
