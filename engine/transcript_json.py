"""The JSON shape of a transcript segment, one serializer for every place that writes one.

`framegate transcribe --json` and the transcript `framegate mic --save` writes list their
segments the same way, so one reader handles both.
"""
from __future__ import annotations

from typing import Protocol


class TimedText(Protocol):
    """A stretch of transcript: a `Segment` of the engine, or a line the live view finalized."""

    channel: int
    start_s: float
    end_s: float
    text: str


def segment_record(segment: TimedText) -> dict:
    """channel, start, end (seconds), text; for every bundle type.

    Single-channel bundles list their endpointed utterances on channel 0; two-channel ("sts")
    bundles list their speaker turns, each on the output channel that decoded it, opened at
    <sot> and closed at <eot>."""
    return {"channel": segment.channel, "start": round(segment.start_s, 6), "end": round(segment.end_s, 6),
            "text": segment.text}
