"""The gated Transformer encoder's blocks, streamed: the typed face of the C++ GatedEncoder.

``export/models/gated_transformer.py`` trains the network; the front end runs in ONNX Runtime
and hands its frames (n, d_model) to ``GatedEncoder.forward``, which runs the arbitrators, only
the on parts of every block (full-skip rule, see cpp/gated_block.h), and the output projection.
One ``GatedEncoder`` holds the weights and serves any number of streams; each stream owns a
``GatedEncoderState`` (per block a ring of the last on frames' keys and values, the feature
arbitrator's history), fixed in size however long the stream runs. Any split of an utterance
into calls gives the output of one call.

Weights are named ``gated.{key}`` (``tensor_name``) with the row-major shapes
``tensor_shapes`` gives; the export writes them under these names as ONNX initializers and
records names and layouts in bundle.json.

This module is on the device path: numpy and the native module only.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from framegate.kernels import _native

ARBITRATORS = ("none", "feature", "block")
MODES = ("gated", "dense", "forced")
BLOCK_KEYS = ("norm_att_weight", "norm_att_bias", "qkv_weight", "qkv_bias", "att_out_weight", "att_out_bias",
              "norm_ff_weight", "norm_ff_bias", "ff1_weight", "ff1_bias", "ff2_weight", "ff2_bias")
TENSOR_PREFIX = "gated."


@dataclass(frozen=True)
class GatedEncoderConfig:
    """Sizes of the gated encoder's blocks, mirroring the C++ ``GatedEncoderConfig``.

    left_context: encoder frames a query looks back; max_rows: frames per internal tile.
    """

    d_model: int
    num_heads: int
    ff_dim: int
    num_layers: int
    left_context: int
    joiner_dim: int
    max_rows: int = 16
    arbitrator: str = "none"
    arbitrator_kernel: int = 1
    arbitrator_hidden: int = 1

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        for name in ("d_model", "num_heads", "ff_dim", "num_layers", "joiner_dim", "max_rows",
                     "arbitrator_kernel", "arbitrator_hidden", "left_context"):
            value = getattr(self, name)
            low = 0 if name == "left_context" else 1
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"GatedEncoderConfig.{name} must be an int >= {low}, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"GatedEncoderConfig.d_model {self.d_model} is not a multiple of num_heads "
                             f"{self.num_heads}")
        if self.arbitrator not in ARBITRATORS:
            raise ValueError(f"GatedEncoderConfig.arbitrator must be one of {ARBITRATORS}, got {self.arbitrator!r}")

    @property
    def num_gates(self) -> int:
        return 2 * self.num_layers

    def to_native(self) -> _native.GatedEncoderConfig:
        self.validate()
        return _native.GatedEncoderConfig(
            int(self.d_model), int(self.num_heads), int(self.ff_dim), int(self.num_layers), int(self.left_context),
            int(self.joiner_dim), int(self.max_rows), getattr(_native.ArbitratorKind, self.arbitrator),
            int(self.arbitrator_kernel), int(self.arbitrator_hidden))


def tensor_shapes(config: GatedEncoderConfig) -> dict[str, tuple[int, ...]]:
    """Every weight's key (without ``TENSOR_PREFIX``) and row-major shape, in a stable order."""
    d, f, h = config.d_model, config.ff_dim, config.arbitrator_hidden
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(config.num_layers):
        per_block = {"norm_att_weight": (d,), "norm_att_bias": (d,), "qkv_weight": (3 * d, d), "qkv_bias": (3 * d,),
                     "att_out_weight": (d, d), "att_out_bias": (d,), "norm_ff_weight": (d,), "norm_ff_bias": (d,),
                     "ff1_weight": (f, d), "ff1_bias": (f,), "ff2_weight": (d, f), "ff2_bias": (d,)}
        shapes.update({f"block{layer}.{k}": per_block[k] for k in BLOCK_KEYS})
        if config.arbitrator == "block":
            shapes.update({f"block{layer}.arbitrator.hidden_weight": (h, d), f"block{layer}.arbitrator.hidden_bias": (h,),
                           f"block{layer}.arbitrator.out_weight": (2, h), f"block{layer}.arbitrator.out_bias": (2,)})
    if config.arbitrator == "feature":
        g = config.num_gates
        shapes.update({"feature_arbitrator.conv_weight": (h, config.arbitrator_kernel, d),
                       "feature_arbitrator.conv_bias": (h,), "feature_arbitrator.out_weight": (g, h),
                       "feature_arbitrator.out_bias": (g,)})
    shapes.update({"norm_out_weight": (d,), "norm_out_bias": (d,), "out_weight": (config.joiner_dim, d),
                   "out_bias": (config.joiner_dim,)})
    return shapes


def tensor_name(key: str) -> str:
    """The stable name of one weight (ONNX initializer and bundle.json)."""
    return TENSOR_PREFIX + key


@dataclass(frozen=True)
class GatedChunk:
    """One forward call's results: encoder frames, the arbitrators' probabilities and the
    decisions (n, 2L; columns [layer0 attention, layer0 feed-forward, ...]), and what ran."""

    out: np.ndarray             # (n, joiner_dim) float32
    probs: np.ndarray           # (n, 2L) float32; 1.0 where no arbitrator ran
    gates: np.ndarray           # (n, 2L) uint8
    attention_rows: list[int]   # per layer: GEMM rows of attention (= frames with attention on)
    ff_rows: list[int]          # per layer: GEMM rows of feed-forward
    macs: int                   # arbitrator + block + output GEMM MACs done by this call


class GatedEncoder:
    """The gated encoder's weights; streams carry their own ``GatedEncoderState``.

    tensors: every key of ``tensor_shapes(config)`` mapped to a float32 array of that shape;
    ValueError names a wrong, missing or unexpected tensor.
    """

    def __init__(self, config: GatedEncoderConfig, tensors: Mapping[str, np.ndarray]) -> None:
        if not isinstance(config, GatedEncoderConfig):
            raise TypeError(f"config must be a GatedEncoderConfig, got {type(config).__name__}")
        self._config = config
        self._native = _native.GatedEncoder(config.to_native(), dict(tensors))

    @classmethod
    def from_named(cls, config: GatedEncoderConfig, tensors: Mapping[str, np.ndarray]) -> GatedEncoder:
        """Build from tensors keyed by ``tensor_name`` (as read from a bundle)."""
        missing = [tensor_name(k) for k in tensor_shapes(config) if tensor_name(k) not in tensors]
        if missing:
            raise ValueError(f"gated encoder weights missing: {', '.join(missing)}")
        return cls(config, {k: tensors[tensor_name(k)] for k in tensor_shapes(config)})

    @property
    def config(self) -> GatedEncoderConfig:
        return self._config

    def initial_state(self) -> _native.GatedEncoderState:
        return self._native.initial_state()

    def forward(self, frames: np.ndarray, state: _native.GatedEncoderState, threshold: float = 0.5,
                mode: str = "gated", gates: np.ndarray | None = None) -> GatedChunk:
        """float32 front-end frames (n, d_model) continuing ``state`` (advanced in place).

        mode "gated": a part runs when its probability > threshold (in [0, 1]); "dense": every
        part runs and no arbitrator; "forced": ``gates`` (n, 2L) decide. ValueError for a bad
        dtype, shape, threshold or mode, a non-finite frame (state then unchanged), or a state
        of another encoder.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        check_threshold(threshold)
        if isinstance(frames, np.ndarray) and frames.dtype == np.float32:
            frames = np.ascontiguousarray(frames)
        if isinstance(gates, np.ndarray) and gates.dtype == np.uint8:
            gates = np.ascontiguousarray(gates)
        out, probs, decided, t = self._native.forward(frames, state, getattr(_native.GateMode, mode),
                                                      float(threshold), gates)
        return GatedChunk(out=out, probs=probs, gates=decided, attention_rows=list(t["attention_rows"]),
                          ff_rows=list(t["ff_rows"]),
                          macs=int(t["arbitrator_macs"] + t["block_macs"] + t["output_macs"]))

    def reset(self, state: _native.GatedEncoderState) -> None:
        """Return ``state`` to the start of an utterance."""
        self._native.reset(state)


def check_threshold(threshold: float) -> float:
    """``threshold`` if it is a real number in [0, 1]; ValueError naming it otherwise."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) \
            or not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"compute threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def set_gemm_threads(threads: int) -> None:
    """Threads the BLAS behind the C++ GEMMs may use, process-wide (scipy-openblas32 builds; a
    no-op where the BLAS is the system's). Benchmarks pin it to ONNX Runtime's thread count."""
    _native.set_gemm_threads(int(threads))


def gemm_threads() -> int:
    """The BLAS's GEMM threads (0 when this build does not control them)."""
    return int(_native.gemm_threads())
