"""The rows a corpus build has rendered so far, so a stopped build resumes where it stopped.

A 24-hour build takes most of an hour on two cores. Every utterance is rendered from its own
seeded generator (build.py), so rendering only the missing ones after a stop gives the same
corpus as one uninterrupted run. The journal's first line holds the build's settings: a
resumed build with other settings would mix two corpora, so it is refused. The journal is
rewritten whole into a new file that then replaces the old one, so a stop during the rewrite
keeps the old journal, and a header line cut short can only be the very first write's, before
any row was journaled.
"""
from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from framegate.export.corpus import CorpusError

JOURNAL_NAME = ".rendered.jsonl"


@contextmanager
def exclusive(out_dir: Path) -> Iterator[None]:
    """Hold `out_dir` for one build: two builds into one folder would render the same files at once
    and each rewrite the other's journal. The lock is the kernel's, so a killed build releases it."""
    fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CorpusError(f"another corpus build is writing into {out_dir}: wait for it or stop it") from None
        yield
    finally:
        os.close(fd)


def read_journal(out_dir: Path, settings: dict) -> dict[str, dict]:
    """Rows already rendered into `out_dir` by a build with `settings`, by audio path; rows whose
    audio file is missing and a last line cut short by the stop are left out (rendered again)."""
    path = out_dir / JOURNAL_NAME
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        header = json.loads(lines[0])
    except (IndexError, json.JSONDecodeError):  # the first write, cut short: nothing journaled yet
        return {}
    if header.get("settings") != settings:
        raise CorpusError(f"{out_dir} holds a stopped build with other settings ({header.get('settings')}, "
                          f"now {settings}): build again with those, or remove {path} to start over")
    done = {}
    for line in lines[1:]:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # the line the stop cut short
            continue
        if isinstance(row, dict) and isinstance(row.get("audio"), str) and (out_dir / row["audio"]).is_file():
            done[row["audio"]] = row
    return done


def open_journal(out_dir: Path, settings: dict, done: dict[str, dict]) -> TextIO:
    """The journal rewritten with `done` (only complete lines), open for appending new rows."""
    path = out_dir / JOURNAL_NAME
    fresh = path.with_name(JOURNAL_NAME + ".new")
    journal = open(fresh, "w", encoding="utf-8")
    append(journal, {"settings": settings})
    for row in done.values():
        append(journal, row)
    os.fsync(journal.fileno())
    os.replace(fresh, path)  # the open handle now writes to the journal itself
    return journal


def append(journal: TextIO, row: dict) -> None:
    journal.write(json.dumps(row, ensure_ascii=False) + "\n")
    journal.flush()
