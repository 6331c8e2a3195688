"""Per-stream compute telemetry of a gated encoder: which parts ran, per layer, per chunk.

A `ComputeTelemetry` belongs to one stream and lives across its utterances (the encoder state
is rebuilt at every endpoint; the telemetry is not). It keeps running totals for the whole
stream, the last chunk's per-layer fractions, and the last `history_chunks` chunks' records,
so its memory is bounded however long the stream runs.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class ChunkCompute:
    """One encoder call: its frames, the threshold it ran with, per layer the fraction of frames
    whose attention / feed-forward part ran, and MACs executed (front end included) against
    the dense MACs of the same frames."""

    frames: int
    threshold: float
    attention_on: tuple[float, ...]
    ff_on: tuple[float, ...]
    macs: int
    dense_macs: int

    @property
    def parts_on(self) -> float:
        """Fraction of all gated parts (every layer, both kinds) that ran."""
        n = len(self.attention_on) + len(self.ff_on)
        return (sum(self.attention_on) + sum(self.ff_on)) / n if n else 1.0


class ComputeTelemetry:
    def __init__(self, num_layers: int, history_chunks: int = 1000) -> None:
        self.num_layers = num_layers
        self.chunks = 0
        self.frames = 0
        self.attention_frames = [0] * num_layers  # frames whose attention ran, per layer
        self.ff_frames = [0] * num_layers
        self.macs = 0
        self.dense_macs = 0
        self.last: ChunkCompute | None = None
        self.history: deque[ChunkCompute] = deque(maxlen=history_chunks)

    def record(self, frames: int, threshold: float, attention_rows: list[int], ff_rows: list[int], macs: int,
               dense_macs: int) -> ChunkCompute:
        chunk = ChunkCompute(frames=frames, threshold=threshold,
                             attention_on=tuple(r / frames if frames else 0.0 for r in attention_rows),
                             ff_on=tuple(r / frames if frames else 0.0 for r in ff_rows),
                             macs=macs, dense_macs=dense_macs)
        self.chunks += 1
        self.frames += frames
        self.attention_frames = [a + r for a, r in zip(self.attention_frames, attention_rows)]
        self.ff_frames = [a + r for a, r in zip(self.ff_frames, ff_rows)]
        self.macs += macs
        self.dense_macs += dense_macs
        self.last = chunk
        self.history.append(chunk)
        return chunk

    @property
    def parts_on(self) -> float:
        """Fraction of gated parts that ran over the whole stream (1.0 before any chunk)."""
        total = 2 * self.num_layers * self.frames
        return (sum(self.attention_frames) + sum(self.ff_frames)) / total if total else 1.0

    @property
    def mac_fraction(self) -> float:
        """Encoder MACs executed / dense encoder MACs of the same frames, over the whole stream."""
        return self.macs / self.dense_macs if self.dense_macs else 1.0

    def per_layer(self) -> list[dict[str, float]]:
        """Per layer, the fraction of the stream's frames whose attention / feed-forward ran."""
        f = max(self.frames, 1)
        return [{"attention": a / f, "feed_forward": b / f} for a, b in zip(self.attention_frames, self.ff_frames)]


class GatedComputeMeter:
    """The live view's `ComputeMeter` for a gated stream: the fraction of dense encoder MACs the
    last `window_chunks` chunks executed (`read`), and of gated parts they ran (`parts_on`)."""

    label = "enc"

    def __init__(self, telemetry: ComputeTelemetry, window_chunks: int = 25) -> None:
        self._telemetry = telemetry
        self._window = window_chunks

    def _recent(self) -> list[ChunkCompute]:
        return list(self._telemetry.history)[-self._window:]

    def read(self) -> float:
        recent = self._recent()
        dense = sum(c.dense_macs for c in recent)
        return sum(c.macs for c in recent) / dense if dense else 0.0

    def parts_on(self) -> float:
        """Fraction of gated parts (every layer, attention and feed-forward) the recent chunks ran,
        weighted by their frames; 0.0 before any chunk."""
        recent = self._recent()
        frames = sum(c.frames for c in recent)
        return sum(c.parts_on * c.frames for c in recent) / frames if frames else 0.0
