"""The corpus manifest as evaluation tools read it: JSON Lines checked line by line.

Every line is one utterance: `audio` (a path relative to the manifest's directory, or
absolute), `text`, `speaker`, `synthesizer`, `accent`, `gender`, `duration_s`; extra keys
are allowed and kept. A line that is not a JSON object, lacks a required key, has a value
of the wrong type, names an audio file that does not exist, or has a speaker but no text is
a `ManifestError` naming the file and the line number, before any audio is processed.

The corpus also holds noise-only and silence segments: no speaker, no text. They have no
voice to embed or words to miss, so `speech_rows` leaves them out (and counts them).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from framegate.engine.errors import FramegateError

REQUIRED_KEYS: dict[str, type | tuple[type, ...]] = {
    "audio": str, "text": str, "speaker": str, "synthesizer": str, "accent": str, "gender": str,
    "duration_s": (int, float),
}


class ManifestError(FramegateError):
    """A manifest line that cannot be used, with the file and line number."""


@dataclass(frozen=True)
class SpeechRows:
    """The speech utterances of a manifest (each row with `audio` made absolute) and what was left out."""

    rows: list[dict]
    skipped_non_speech: int


def speech_rows(manifest: str | Path) -> SpeechRows:
    """Read and check `manifest`; raise ManifestError at the first bad line."""
    manifest = Path(manifest)
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ManifestError(f"manifest '{manifest}': no such file") from None
    except UnicodeDecodeError:
        raise ManifestError(f"manifest '{manifest}': not UTF-8 text") from None
    rows, skipped = [], 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{manifest}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{where}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ManifestError(f"{where}: a line must be a JSON object, found {type(row).__name__}")
        missing = [key for key in REQUIRED_KEYS if key not in row]
        if missing:
            raise ManifestError(f"{where}: missing required key(s) {', '.join(missing)}")
        for key, kind in REQUIRED_KEYS.items():
            if not isinstance(row[key], kind) or isinstance(row[key], bool):
                raise ManifestError(f"{where}: '{key}' must be a {getattr(kind, '__name__', 'number')}, "
                                    f"found {row[key]!r}")
        if not row["speaker"].strip() and not row["text"].strip():
            skipped += 1  # a noise-only or silence segment
            continue
        if not row["speaker"].strip():
            raise ManifestError(f"{where}: 'speaker' is empty but the line has text")
        if not row["text"].strip():
            raise ManifestError(f"{where}: 'text' is empty for speaker {row['speaker']!r}")
        audio = manifest.parent / row["audio"]
        if not audio.is_file():
            raise ManifestError(f"{where}: audio file '{audio}' does not exist")
        rows.append({**row, "audio": str(audio.resolve())})
    if not rows:
        raise ManifestError(f"manifest '{manifest}': no speech utterances")
    return SpeechRows(rows, skipped)
