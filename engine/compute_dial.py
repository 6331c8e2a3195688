"""Keys that turn a live stream's compute dial: the gate threshold of a gated bundle.

`+` (or `=`, the same key unshifted, or `]`) raises the threshold one step, so fewer
encoder parts run; `-` (or `[`) lowers it. The new threshold goes through
`stream.set_compute_threshold`, so it applies from that stream's next encoder chunk.
A `ComputeDial` is used by the thread that owns the stream (streams are not thread-safe),
never by the thread that reads the keys. A bundle without gates has no dial: the first
dial key says so once, later ones are ignored.
"""
from __future__ import annotations

from framegate.engine.stream import Stream

STEP = 0.05
RAISE_KEYS = "+=]"
LOWER_KEYS = "-["
GATED_ONLY = "compute threshold applies to gated bundles only (this bundle runs every encoder part)"
HINT = "keys: + or ] raises the compute threshold (fewer encoder parts run), - or [ lowers it"


class ComputeDial:
    """Applies dial keys to one stream; the threshold stays within [0, 1]."""

    def __init__(self) -> None:
        self._told_gated_only = False

    def press(self, stream: Stream, key: str) -> str | None:
        """Apply one key to `stream`. Returns a line to show the user once, or None.

        Keys other than the dial's are ignored."""
        if key in RAISE_KEYS:
            delta = STEP
        elif key in LOWER_KEYS:
            delta = -STEP
        else:
            return None
        current = stream.compute_threshold
        if current is None:
            if self._told_gated_only:
                return None
            self._told_gated_only = True
            return GATED_ONLY
        # rounded so repeated steps show 0.65, not 0.6500000000000001
        stream.set_compute_threshold(min(1.0, max(0.0, round(current + delta, 6))))
        return None
