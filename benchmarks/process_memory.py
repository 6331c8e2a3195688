"""This process's own resident memory, from /proc/self/status.

VmHWM is the high-water mark of the program's own memory. A parent's ru_maxrss for its
children would not do: Linux carries the parent's resident size at fork into a child's
ru_maxrss across exec, so a large benchmark process makes every child look large.
"""
from __future__ import annotations

from pathlib import Path


def _status_mb() -> dict[str, float]:
    """VmHWM (peak resident) and VmRSS (resident now) of this process, in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def resident_mb() -> float:
    """Resident memory of this process now, MB."""
    return _status_mb()["VmRSS"]


def memory_mb() -> dict[str, float]:
    """{"peak_rss_mb": VmHWM, "final_rss_mb": VmRSS} of this process, in MB."""
    fields = _status_mb()
    return {"peak_rss_mb": fields["VmHWM"], "final_rss_mb": fields["VmRSS"]}
