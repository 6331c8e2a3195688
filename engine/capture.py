"""The hand-off between an audio source and the decoder: a bounded buffer that never blocks.

A live source (a sound card's callback, or a file played at real-time pace) pushes blocks
at the source's native rate; the decoding worker takes them. The source side must never
wait: PortAudio calls its callback on a real-time thread, and a callback that waits for a
slow decoder makes the device drop audio behind our back. So `push` either queues a block
or, when the backlog would exceed `capacity_s`, drops it and counts it: decoding that
falls behind is always visible (`CaptureStats`), never silent. So is a device that went
away and came back: the time it was away is counted as a gap (`device_lost`, `device_back`).

Every counter has one writer (producer or consumer), so no lock is needed beyond the
queue's own; readers may see a value one block old, which is what a status line needs.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framegate.engine.audio import read_audio_blocks
from framegate.engine.errors import FramegateError

DEFAULT_CAPACITY_S = 5.0  # backlog beyond this is dropped: lag grows no further than this


@dataclass(frozen=True)
class CaptureStats:
    """Accounting of a capture so far; samples are at the source's native rate."""

    sample_rate: int
    captured_samples: int  # delivered by the source, dropped or not
    dropped_samples: int  # refused because the backlog was full
    dropped_blocks: int
    overflows: int  # blocks the device itself reported as overflowed (audio lost before us)
    backlog_samples: int  # queued, not yet taken by the decoder
    gap_samples: int = 0  # while the device was lost, until it was reopened (estimated from the clock)
    reconnects: int = 0  # times the device was lost and reopened
    reconnecting: bool = False  # the device is lost now and being reopened

    @property
    def captured_s(self) -> float:
        return self.captured_samples / self.sample_rate

    @property
    def dropped_s(self) -> float:
        """Audio refused because decoding fell behind."""
        return self.dropped_samples / self.sample_rate

    @property
    def gap_s(self) -> float:
        """Audio missed while the device was lost."""
        return self.gap_samples / self.sample_rate

    @property
    def lost_s(self) -> float:
        """All audio the decoder never saw: dropped, plus gaps while the device was lost."""
        return (self.dropped_samples + self.gap_samples) / self.sample_rate

    @property
    def lag_s(self) -> float:
        """Audio waiting for the decoder: how far the display is behind the microphone."""
        return self.backlog_samples / self.sample_rate


class CaptureBuffer:
    """Bounded single-producer, single-consumer queue of mono float32 blocks.

    The producer calls `push` (never blocks) and, once, `finish` (end of input, with the
    error that ended it if any); a device source also reports `device_lost` and `device_back`
    around a reconnection. The consumer calls `take` until `drained`.
    """

    def __init__(self, sample_rate: int, capacity_s: float = DEFAULT_CAPACITY_S) -> None:
        if not capacity_s > 0:
            raise ValueError(f"capacity_s must be > 0, got {capacity_s!r}")
        self.sample_rate = sample_rate
        self._capacity_samples = max(1, round(capacity_s * sample_rate))
        self._blocks: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        self._ended = threading.Event()
        self._error: FramegateError | None = None
        # producer-written
        self._pushed = 0
        self._dropped = 0
        self._dropped_blocks = 0
        self._overflows = 0
        self._gap = 0
        self._reconnects = 0
        self._reconnecting = False
        # consumer-written
        self._taken = 0

    def push(self, block: np.ndarray, overflowed: bool = False) -> bool:
        """Queue one block (the caller passes a copy it will not touch again); False if dropped.

        `overflowed` records that the device reported lost input before this block."""
        if overflowed:
            self._overflows += 1
        n = len(block)
        accepted = self._pushed - self._dropped + n - self._taken <= self._capacity_samples
        if accepted:
            self._blocks.put(block)
        else:
            self._dropped += n
            self._dropped_blocks += 1
        self._pushed += n
        return accepted

    def device_lost(self) -> None:
        """The device stopped delivering; blocks come again after `device_back`."""
        self._reconnecting = True

    def device_back(self, gap_samples: int) -> None:
        """The device was reopened; `gap_samples` of audio passed while it was lost."""
        self._gap += gap_samples
        self._reconnects += 1
        self._reconnecting = False

    def finish(self, error: FramegateError | None = None) -> None:
        """No more blocks will come; `error` says why if the input failed. Later calls are ignored."""
        if not self._ended.is_set():
            self._error = error
            self._ended.set()

    def take(self, timeout_s: float) -> list[np.ndarray]:
        """Every queued block, waiting up to `timeout_s` for the first one (may return [])."""
        blocks = []
        try:
            blocks.append(self._blocks.get(timeout=timeout_s) if timeout_s > 0 else self._blocks.get_nowait())
            while True:
                blocks.append(self._blocks.get_nowait())
        except queue.Empty:
            pass
        self._taken += sum(len(b) for b in blocks)
        return blocks

    @property
    def drained(self) -> bool:
        """Input ended and every queued block was taken."""
        return self._ended.is_set() and self._blocks.empty()

    @property
    def error(self) -> FramegateError | None:
        """What ended the input, if it failed (device unplugged, unreadable file)."""
        return self._error

    def stats(self) -> CaptureStats:
        return CaptureStats(sample_rate=self.sample_rate, captured_samples=self._pushed,
                            dropped_samples=self._dropped, dropped_blocks=self._dropped_blocks,
                            overflows=self._overflows,
                            backlog_samples=max(0, self._pushed - self._dropped - self._taken),
                            gap_samples=self._gap, reconnects=self._reconnects,
                            reconnecting=self._reconnecting)


class FileSource:
    """A file played into a `CaptureBuffer` at real-time pace, as a microphone would deliver it.

    Runs on its own thread in `block_s` blocks at the file's native rate; the end of the
    file (or `stop`) finishes the buffer, an unreadable block finishes it with the error.
    """

    def __init__(self, path: str | Path, block_s: float = 0.02,
                 capacity_s: float = DEFAULT_CAPACITY_S) -> None:
        self.sample_rate, self._blocks = read_audio_blocks(path, block_s)
        self.buffer = CaptureBuffer(self.sample_rate, capacity_s)
        self.description = f"file '{path}' at {self.sample_rate} Hz (real-time pace)"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, name="framegate-file-source", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _play(self) -> None:
        started = time.perf_counter()
        position = 0
        try:
            for block in self._blocks:
                position += len(block)
                # a block is "captured" once its last sample has been spoken
                if self._stop.wait(max(0.0, started + position / self.sample_rate - time.perf_counter())):
                    break
                self.buffer.push(block)
        except FramegateError as e:
            self.buffer.finish(e)
        finally:
            self._blocks.close()
            self.buffer.finish()

    def stop(self) -> None:
        """Stop playing (idempotent); blocks already pushed stay in the buffer."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.buffer.finish()
