"""ConvRNN-T's global CNN, streamed: the typed face of the C++ GlobalCnn.

The network (``export/models/convrnnt.py`` trains it) maps frames of ``channels`` floats to
frames of the same width through ``num_blocks`` residual blocks, causally. One ``GlobalCnn``
holds the weights and serves any number of streams; each stream owns a ``GlobalCnnState``
(per block the last 2 * dilation depthwise inputs, a float64 running sum or EMA value, the
frame count), fixed in size however long the stream runs. ``forward(frames, state)`` continues
the stream and updates ``state`` in place; any split of an utterance into calls gives the
output of one call over the whole utterance. ``reset(state)`` starts the next utterance.

Weights are named ``global_cnn.block{b}.{key}`` with the row-major shapes ``tensor_shapes``
gives; the export writes them under these names as ONNX initializers and records them in
bundle.json, and the engine hands them over as arrays.

This module is on the device path: numpy and the native module only.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from framegate.kernels import _native

SQUEEZE_MODES = ("cumulative", "ema")
TENSOR_KEYS = ("norm_weight", "norm_bias", "pw1_weight", "pw1_bias", "dw_weight", "dw_bias", "pw2_weight", "pw2_bias",
               "se1_weight", "se1_bias", "se2_weight", "se2_bias")
MAX_BLOCKS = 16


@dataclass(frozen=True)
class GlobalCnnConfig:
    """Sizes and squeeze of a global CNN, mirroring the C++ ``GlobalCnnConfig``.

    squeeze: "cumulative" (mean over the utterance so far) or "ema" (decay ``ema_decay``
    per frame, starting from the first frame's value).
    """

    channels: int
    hidden: int
    se_hidden: int
    num_blocks: int
    squeeze: str = "cumulative"
    ema_decay: float = 0.99

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field (same rules as the C++ Validate)."""
        for name in ("channels", "hidden", "se_hidden", "num_blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"GlobalCnnConfig.{name} must be an int >= 1, got {value!r}")
        if self.num_blocks > MAX_BLOCKS:
            raise ValueError(f"GlobalCnnConfig.num_blocks must be <= {MAX_BLOCKS}, got {self.num_blocks}")
        if self.squeeze not in SQUEEZE_MODES:
            raise ValueError(f"GlobalCnnConfig.squeeze must be one of {SQUEEZE_MODES}, got {self.squeeze!r}")
        if not isinstance(self.ema_decay, (int, float)) or not math.isfinite(self.ema_decay) \
                or not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"GlobalCnnConfig.ema_decay must be in (0, 1), got {self.ema_decay!r}")

    def dilation(self, block: int) -> int:
        return 2 ** block

    def to_native(self) -> _native.GlobalCnnConfig:
        self.validate()
        return _native.GlobalCnnConfig(int(self.channels), int(self.hidden), int(self.se_hidden),
                                       int(self.num_blocks), getattr(_native.SqueezeMode, self.squeeze),
                                       float(self.ema_decay))


def tensor_name(block: int, key: str) -> str:
    """The stable name of one weight (ONNX initializer and bundle.json)."""
    return f"global_cnn.block{block}.{key}"


def tensor_shapes(config: GlobalCnnConfig) -> dict[str, tuple[int, ...]]:
    """Row-major shape of each weight of one block, by key."""
    c, h, s = config.channels, config.hidden, config.se_hidden
    return {"norm_weight": (c,), "norm_bias": (c,), "pw1_weight": (h, c), "pw1_bias": (h,), "dw_weight": (h, 3), "dw_bias": (h,),
            "pw2_weight": (c, h), "pw2_bias": (c,), "se1_weight": (s, c), "se1_bias": (s,),
            "se2_weight": (c, s), "se2_bias": (c,)}


class GlobalCnn:
    """The global CNN's weights; streams carry their own ``GlobalCnnState``.

    blocks: per block a mapping from each of ``TENSOR_KEYS`` to a float32 array of the
    shape ``tensor_shapes(config)`` gives. Raises ValueError naming a wrong or missing tensor.
    """

    def __init__(self, config: GlobalCnnConfig, blocks: Sequence[Mapping[str, np.ndarray]]) -> None:
        if not isinstance(config, GlobalCnnConfig):
            raise TypeError(f"config must be a GlobalCnnConfig, got {type(config).__name__}")
        self._config = config
        self._native = _native.GlobalCnn(config.to_native(), [dict(b) for b in blocks])

    @classmethod
    def from_named(cls, config: GlobalCnnConfig, tensors: Mapping[str, np.ndarray]) -> GlobalCnn:
        """Build from tensors keyed by ``tensor_name`` (as read from a bundle)."""
        blocks = []
        for b in range(config.num_blocks):
            missing = [tensor_name(b, k) for k in TENSOR_KEYS if tensor_name(b, k) not in tensors]
            if missing:
                raise ValueError(f"global CNN weights missing: {', '.join(missing)}")
            blocks.append({k: tensors[tensor_name(b, k)] for k in TENSOR_KEYS})
        return cls(config, blocks)

    @property
    def config(self) -> GlobalCnnConfig:
        return self._config

    def initial_state(self) -> _native.GlobalCnnState:
        """A new stream's state (the start of an utterance)."""
        return self._native.initial_state()

    def forward(self, frames: np.ndarray, state: _native.GlobalCnnState) -> np.ndarray:
        """float32 frames (n, channels) -> (n, channels); ``state`` advances by n frames.

        ValueError for another dtype or shape, a non-finite value (state then unchanged), or a
        state of another network; non-contiguous float32 input is copied, not refused.
        """
        if isinstance(frames, np.ndarray) and frames.dtype == np.float32:
            frames = np.ascontiguousarray(frames)
        return self._native.forward(frames, state)

    def reset(self, state: _native.GlobalCnnState) -> None:
        """Return ``state`` to the start of an utterance (endpoints call this)."""
        self._native.reset(state)
