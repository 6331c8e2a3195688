"""Encoder input windows from streaming fbank frames: the typed face of the C++ FeatureWindow.

Frames (float32, shape (n, num_bins), 10 ms each) arrive in blocks of any size. Window k is
the ``window_frames`` consecutive frames starting at frame ``k * chunk_frames``; it is returned
by the ``accept`` call that brings its last frame, so consecutive windows share
``window_frames - chunk_frames`` frames of lookahead. ``finish`` pads the stream with
``pad_value`` frames to the smallest length ``L = k * chunk_frames + (window_frames -
chunk_frames) >= frames received`` (``k >= 1``; nothing for an empty stream) and returns the
remaining windows, so every frame reaches the encoder. Memory is a ring of ``window_frames``
frames fixed at construction, however long the stream or large a block.

This module is on the device path: it imports numpy and the native module, never numba.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

try:
    from framegate.kernels import _native
except ImportError as error:  # pragma: no cover - depends on the build
    raise ImportError(
        "framegate.kernels._native is not built; for development run cpp/build_inplace.sh"
    ) from error

_INT_MAX = 2**31 - 1
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class FeatureWindowConfig:
    """Window geometry, mirroring the C++ ``FeatureWindowConfig``.

    window_frames: frames per window (chunk plus lookahead), >= chunk_frames.
    chunk_frames: frames between consecutive window starts, >= 1.
    num_bins: floats per frame (80 for framegate's fbank).
    pad_value: value of the frames ``finish`` appends (a float32, finite).
    """

    window_frames: int
    chunk_frames: int
    num_bins: int = 80
    pad_value: float = 0.0

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field (same rules as the C++ Validate)."""
        for name in ("window_frames", "chunk_frames", "num_bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"FeatureWindowConfig.{name} must be an int, got {value!r}")
        if self.chunk_frames < 1:
            raise ValueError(
                f"FeatureWindowConfig.chunk_frames must be >= 1, got {self.chunk_frames}"
            )
        if self.window_frames < self.chunk_frames:
            raise ValueError(
                f"FeatureWindowConfig.window_frames must be >= chunk_frames "
                f"({self.chunk_frames}), got {self.window_frames}"
            )
        if self.num_bins < 1:
            raise ValueError(f"FeatureWindowConfig.num_bins must be >= 1, got {self.num_bins}")
        if int(self.window_frames) * int(self.num_bins) > _INT_MAX:
            raise ValueError(
                f"FeatureWindowConfig.window_frames * num_bins must fit in int, got "
                f"{self.window_frames} * {self.num_bins}"
            )
        if (
            isinstance(self.pad_value, bool)
            or not isinstance(self.pad_value, (int, float, np.floating, np.integer))
            or not math.isfinite(self.pad_value)
            or abs(self.pad_value) > _FLOAT32_MAX
        ):
            raise ValueError(
                f"FeatureWindowConfig.pad_value must be finite in float32, got {self.pad_value!r}"
            )

    def to_native(self) -> _native.FeatureWindowConfig:
        """The validated config as the C++ struct."""
        self.validate()
        return _native.FeatureWindowConfig(
            window_frames=int(self.window_frames),
            chunk_frames=int(self.chunk_frames),
            num_bins=int(self.num_bins),
            pad_value=float(self.pad_value),
        )


class FeatureWindow:
    """Assembles encoder windows from one stream of frames; one utterance at a time.

    State (the ring, counters) belongs to the current utterance; ``reset`` starts the next.
    Calls release the GIL; one object may be shared by threads (calls are serialized), but
    interleaving frames of one stream from several threads is the caller's problem.
    """

    def __init__(self, config: FeatureWindowConfig) -> None:
        if not isinstance(config, FeatureWindowConfig):
            raise TypeError(f"config must be a FeatureWindowConfig, got {type(config).__name__}")
        self._config = config
        self._native = _native.FeatureWindow(config.to_native())

    @property
    def config(self) -> FeatureWindowConfig:
        return self._config

    @property
    def window_shape(self) -> tuple[int, int]:
        """(window_frames, num_bins): the shape of one emitted window."""
        return (self._config.window_frames, self._config.num_bins)

    @property
    def capacity_frames(self) -> int:
        """Frames the ring holds; fixed for the object's life."""
        return self._native.capacity_frames

    @property
    def frames_received(self) -> int:
        """Real frames accepted in this utterance (padding not counted)."""
        return self._native.frames_received

    @property
    def windows_emitted(self) -> int:
        """Windows returned in this utterance, padded ones included."""
        return self._native.windows_emitted

    @property
    def finished(self) -> bool:
        return self._native.finished

    def accept(self, frames: np.ndarray) -> np.ndarray:
        """Take frames of shape (n, num_bins), float32, n >= 0.

        Returns the windows this block completed, float32 of shape
        (k, window_frames, num_bins), k >= 0. Raises ValueError for another dtype or shape
        (no silent casts) and RuntimeError after ``finish`` until ``reset``.
        """
        num_bins = self._config.num_bins
        if (
            not isinstance(frames, np.ndarray)
            or frames.dtype != np.float32
            or frames.ndim != 2
            or frames.shape[1] != num_bins
        ):
            got = (
                f"a {frames.dtype} array of shape {frames.shape}"
                if isinstance(frames, np.ndarray)
                else type(frames).__name__
            )
            raise ValueError(f"frames must be a float32 array of shape (n, {num_bins}); got {got}")
        return self._native.accept(np.ascontiguousarray(frames))

    def finish(self) -> np.ndarray:
        """End the utterance: pad with pad_value and return the remaining windows.

        Shape (k, window_frames, num_bins); k is 0 for an empty stream, for a stream whose
        frames are all covered already, and on a second call.
        """
        return self._native.finish()

    def reset(self) -> None:
        """Forget the current utterance; the next ``accept`` starts a new one."""
        self._native.reset()

    def __repr__(self) -> str:
        return (
            f"FeatureWindow({self._config!r}, frames_received={self.frames_received}, "
            f"windows_emitted={self.windows_emitted})"
        )
