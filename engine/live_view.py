"""What the live demo shows: finalized lines with their times, one status line updated in place.

The status line carries the compute meter, how far decoding lags the audio, how much audio
was dropped, and the partial hypothesis of the utterance being spoken. It is redrawn in
place (carriage return + erase line) and cut to the terminal's width so it never wraps;
a finalized utterance is printed above it as a permanent line. When the output is not a
terminal (a pipe, a file) only finalized lines and the closing summary are written.

The meter shows a `ComputeMeter`'s reading: what fraction of its compute budget the
engine is using now. For the LSTM bundles that is the process's CPU load (`CpuLoadMeter`);
a gated bundle's stream reports the fraction of dense encoder MACs it runs, and beside it
the dial (`DialReading`): the fraction of gated encoder parts running and the threshold
the keys turn. Notices (a key hint, a key that does nothing here) are permanent lines.
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
    channel: int = 0


@dataclass(frozen=True)
class DialReading:
    """A gated stream's compute dial as shown: the fraction of its gated encoder parts that ran
    recently, and the threshold its next chunk runs with."""

    parts_on: float
    threshold: float


def format_final(line: FinalLine) -> str:
    return f"[{line.start_s:7.2f} - {line.end_s:7.2f}] {line.text}"


def format_status(meter_label: str, meter_fraction: float, stats: CaptureStats,
                  dial: DialReading | None = None) -> str:
    """Meter (and dial), lag, audio the decoder never saw; a lost device says it is reconnecting."""
    meter = f"{meter_label} {100 * meter_fraction:3.0f}%"
    if dial is not None:
        meter += f" parts {100 * dial.parts_on:3.0f}% thr {dial.threshold:.2f}"
    status = f"{meter} | lag {stats.lag_s:4.1f} s | dropped {stats.lost_s:.2f} s"
    return status + " | device lost, reconnecting..." if stats.reconnecting else status


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

    def _write_line(self, text: str) -> None:
        """A permanent line, replacing the in-place line if one is shown."""
        self._out.write(f"{_ERASE_LINE if self._status_shown else ''}{text}\n")
        self._out.flush()
        self._status_shown = False

    def show_final(self, line: FinalLine) -> None:
        """A finalized utterance with its times."""
        self._write_line(format_final(line))

    def show_notice(self, text: str) -> None:
        """A message for the user: a key hint, a key that does nothing with this bundle."""
        self._write_line(text)

    def close(self, summary: str) -> None:
        """The closing summary, in place of the in-place line."""
        self._write_line(summary)
