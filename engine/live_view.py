"""What the live demo shows: finalized lines with their times, one status line updated in place.

The status line carries the compute meter, how far decoding lags the audio, how much audio
was dropped, and the partial hypothesis of the utterance being spoken. It is redrawn in
place (carriage return + erase line) and cut to the terminal's width so it never wraps;
a finalized utterance is printed above it as a permanent line. When the output is not a
terminal (a pipe, a file) only finalized lines and the closing summary are written.

The meter shows a `ComputeMeter`'s reading: what fraction of its compute budget the
engine is using now. For the LSTM bundles that is the process's CPU load (`CpuLoadMeter`);
a gated bundle's stream can report the fraction of encoder parts running by providing
another `ComputeMeter`, and the view draws it the same way under its own label.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from typing import Protocol, TextIO

from framegate.engine.capture import CaptureStats

_ERASE_LINE = "\r\x1b[2K"


class ComputeMeter(Protocol):
    """A live compute reading: `label` names what is measured, `read()` returns the fraction
    in use now (1.0 = one full core for CPU load, all parts running for a gated encoder)."""

    label: str

    def read(self) -> float: ...


class CpuLoadMeter:
    """CPU time of this process (every thread) per wall-clock second since the last read.

    Reads closer together than `min_interval_s` return the previous value, so a meter
    redrawn often does not flicker between 0 and spikes."""

    label = "cpu"

    def __init__(self, min_interval_s: float = 0.25) -> None:
        self._min_interval_s = min_interval_s
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        self._last = 0.0

    def read(self) -> float:
        wall, cpu = time.perf_counter(), time.process_time()
        if wall - self._wall >= self._min_interval_s:
            self._last = (cpu - self._cpu) / (wall - self._wall)
            self._wall, self._cpu = wall, cpu
        return self._last


@dataclass(frozen=True)
class FinalLine:
    """A closed utterance as shown: its text and its span in seconds from the start."""

    text: str
    start_s: float
    end_s: float


def format_final(line: FinalLine) -> str:
    return f"[{line.start_s:7.2f} - {line.end_s:7.2f}] {line.text}"


def format_status(meter_label: str, meter_fraction: float, stats: CaptureStats) -> str:
    return (f"{meter_label} {100 * meter_fraction:3.0f}% | lag {stats.lag_s:4.1f} s | "
            f"dropped {stats.dropped_s:.2f} s")


class LiveView:
    """Renders the live session on `out` (a terminal: partial in place; otherwise finals only)."""

    def __init__(self, out: TextIO, interactive: bool | None = None) -> None:
        self._out = out
        self._interactive = out.isatty() if interactive is None else interactive
        self._status_shown = False

    def _width(self) -> int:
        return shutil.get_terminal_size((100, 24)).columns

    def show_status(self, status: str, partial: str) -> None:
        """Redraw the in-place line: status, then as much of the partial's end as fits."""
        if not self._interactive:
            return
        head = f"[{status}] > "
        room = max(0, self._width() - 4 - len(head))  # spare columns: the terminal echoes "^C" here
        if len(partial) > room:  # keep the newest words
            partial = "..." + partial[len(partial) - room + 3:] if room > 3 else ""
        self._out.write(f"{_ERASE_LINE}{head}{partial}")
        self._out.flush()
        self._status_shown = True

    def show_final(self, line: FinalLine) -> None:
        """Print a finalized utterance as a permanent line (replacing the in-place line)."""
        self._out.write(f"{_ERASE_LINE if self._status_shown else ''}{format_final(line)}\n")
        self._out.flush()
        self._status_shown = False

    def close(self, summary: str) -> None:
        """Replace the in-place line with the closing summary."""
        self._out.write(f"{_ERASE_LINE if self._status_shown else ''}{summary}\n")
        self._out.flush()
        self._status_shown = False
