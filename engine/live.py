"""A live session: a source fills a `CaptureBuffer`, a worker thread decodes, a view shows it.

Three threads, each with one job. The source's thread (PortAudio's callback, or the file
player) only pushes blocks. The decoding worker owns the stream: it takes every queued
block, feeds it at the source's native rate (the stream resamples to 16 kHz), decodes,
and draws partials and finalized utterances. The main thread only waits, so Ctrl-C
lands there and never interrupts a decode half-way: it stops the source, the worker
decodes what was captured, finishes the stream (the last partial becomes a final
line) and the session returns normally.

A source that fails mid-stream (a device unplugged, a file that stops decoding) ends
the buffer with its error: the worker still finalizes what it has, then `run` raises
the error, so the user sees the transcript and one line saying what happened.

Keys (optional, `keys`): the main thread's wait doubles as the key reader; it hands what
was typed to the worker, which owns the stream and applies dial keys (`ComputeDial`)
between decodes, so a new compute threshold applies from the stream's next chunk.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from framegate.engine.capture import CaptureBuffer, CaptureStats
from framegate.engine.compute_dial import HINT, ComputeDial
from framegate.engine.compute_telemetry import ComputeTelemetry, GatedComputeMeter
from framegate.engine.live_view import ComputeMeter, CpuLoadMeter, DialReading, FinalLine, format_status
from framegate.engine.recognizer import Recognizer
from framegate.engine.recording import SessionRecorder
from framegate.engine.stream import Result, Stream, tokens_to_text

REFRESH_S = 0.1  # the status line is redrawn at least this often while audio flows


class LiveSource(Protocol):
    """Anything that fills a `CaptureBuffer` in real time: a `DeviceSource` or a `FileSource`."""

    sample_rate: int
    buffer: CaptureBuffer
    description: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


class View(Protocol):
    """Where a session shows itself: `LiveView` on a terminal, `WebView` (engine/web_demo.py) in a browser."""

    def show_status(self, status: str, partial: str) -> None: ...

    def show_final(self, line: FinalLine) -> None: ...

    def show_notice(self, text: str) -> None: ...

    def close(self, summary: str) -> None: ...


class KeySource(Protocol):
    """Key presses, e.g. `TerminalKeys`: `read` returns what was typed, waiting up to `timeout_s`."""

    def read(self, timeout_s: float) -> str: ...


@dataclass(frozen=True)
class LiveTranscript:
    """What a session produced: finalized utterances and the capture's accounting."""

    lines: list[FinalLine]
    stats: CaptureStats
    interrupted: bool  # ended by Ctrl-C rather than by the end of the input
    compute: ComputeTelemetry | None  # a gated stream's: parts run and threshold, per chunk

    @property
    def text(self) -> str:
        return " ".join(line.text for line in self.lines)


def partial_text(result: Result) -> str:
    """The text of the utterance still open (after the closed segments); '' once final."""
    if result.is_final:
        return ""
    closed = sum(len(s.tokens) for s in result.segments)
    return tokens_to_text(result.tokens[closed:])


class LiveSession:
    """One run of the live pipeline; `run` blocks until the input ends or Ctrl-C."""

    def __init__(self, recognizer: Recognizer, source: LiveSource, view: View, meter: ComputeMeter | None,
                 recorder: SessionRecorder | None = None, keys: KeySource | None = None) -> None:
        """meter None: a gated bundle's stream reports the fraction of encoder MACs it runs
        (GatedComputeMeter); other bundles show the process's CPU load. keys None: no key reading."""
        self._recognizer = recognizer
        self._source = source
        self._view = view
        self._meter = meter
        self._recorder = recorder
        self._keys = keys
        self._pressed: queue.SimpleQueue[str] = queue.SimpleQueue()  # main thread -> worker
        self._lines: list[FinalLine] = []
        self._compute: ComputeTelemetry | None = None
        self._failure: BaseException | None = None
        # Waited on instead of Thread.join: in Python 3.11 a Ctrl-C landing inside join()
        # can mark a still-running thread as stopped (bpo-45274's fix releases its lock).
        self._done = threading.Event()

    def run(self) -> LiveTranscript:
        """Capture and decode until the input ends (or Ctrl-C); raise the source's error if it failed."""
        worker = threading.Thread(target=self._decode_until_drained, name="framegate-decoder", daemon=True)
        worker.start()
        interrupted = False
        try:
            self._source.start()
            while not self._done.is_set():
                if self._keys is None:
                    self._done.wait(0.1)
                elif pressed := self._keys.read(0.1):
                    self._pressed.put(pressed)
        except KeyboardInterrupt:
            interrupted = True
        finally:  # also when the source fails to start: the worker finishes the (empty) transcript
            self._source.stop()
            self._wait_through_interrupts()
        if self._failure is not None:
            raise self._failure
        if self._source.buffer.error is not None:
            raise self._source.buffer.error
        return LiveTranscript(lines=list(self._lines), stats=self._source.buffer.stats(), interrupted=interrupted,
                              compute=self._compute)

    def _decode_until_drained(self) -> None:
        try:
            stream = self._recognizer.create_stream()
            self._compute = stream.compute_telemetry
            gated_meter = GatedComputeMeter(self._compute) if self._compute is not None else None
            meter = self._meter or gated_meter or CpuLoadMeter()
            dial = ComputeDial()
            if self._keys is not None and gated_meter is not None:
                self._view.show_notice(HINT)
            buffer = self._source.buffer
            partial, shown, shown_at = "", ("", ""), 0.0
            while not buffer.drained:
                self._apply_keys(dial, stream)
                blocks = buffer.take(timeout_s=REFRESH_S)
                for block in blocks:
                    stream.accept_waveform(self._source.sample_rate, block)
                    if self._recorder is not None:
                        self._recorder.write(block)
                if blocks:
                    self._recognizer.decode(stream)
                    result = stream.result
                    self._show_new_finals(result)
                    partial = partial_text(result)
                reading = None if gated_meter is None else DialReading(gated_meter.parts_on(),
                                                                          stream.compute_threshold)
                status = format_status(meter.label, meter.read(), buffer.stats(), reading)
                if (status, partial) != shown or time.perf_counter() - shown_at >= REFRESH_S:
                    self._view.show_status(status, partial)
                    shown, shown_at = (status, partial), time.perf_counter()
            stream.input_finished()
            self._recognizer.decode(stream)
            self._show_new_finals(stream.result)
            stats = buffer.stats()
            summary = (f"captured {stats.captured_s:.1f} s from {self._source.description}; "
                       f"dropped {stats.dropped_s:.2f} s ({stats.dropped_blocks} blocks) because decoding "
                       f"fell behind; device overflows {stats.overflows}")
            if stats.reconnects:
                summary += f"; device reconnected {stats.reconnects}x, {stats.gap_s:.2f} s missed while away"
            if self._recorder is not None:
                saved = self._recorder.finish(self._lines, stats)
                summary += f"; saved {self._recorder.wav_path} and {saved}"
            self._view.close(summary)
        except BaseException as e:  # re-raised on the main thread by run()
            self._failure = e
        finally:
            self._done.set()

    def _apply_keys(self, dial: ComputeDial, stream: Stream) -> None:
        """Keys typed since the last look, applied on the worker (the stream's one user)."""
        while True:
            try:
                pressed = self._pressed.get_nowait()
            except queue.Empty:
                return
            for key in pressed:
                if (notice := dial.press(stream, key)) is not None:
                    self._view.show_notice(notice)

    def _show_new_finals(self, result: Result) -> None:
        for segment in result.segments[len(self._lines):]:
            line = FinalLine(text=segment.text, start_s=segment.start_s, end_s=segment.end_s,
                             channel=segment.channel)
            self._lines.append(line)
            self._view.show_final(line)

    def _wait_through_interrupts(self) -> None:
        """Wait for the worker to finalize; further Ctrl-C presses do not abandon the transcript."""
        while not self._done.is_set():
            try:
                self._done.wait(0.1)
            except KeyboardInterrupt:
                continue
