"""`framegate mic --save FILE`: the audio the live session transcribed, and its transcript.

The wav holds exactly the blocks the decoder received, at the source's native rate, as
32-bit float (no requantization), so `framegate transcribe FILE` reproduces the saved
transcript. Audio dropped because decoding fell behind, or missed while a lost device was
reconnecting, is not in the wav; the JSON says how much there was. The transcript goes
beside the wav, same name with `.json`; its segments have the shape `transcribe --json`
gives them (engine/transcript_json.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from framegate.engine.capture import CaptureStats
from framegate.engine.errors import FramegateError
from framegate.engine.live_view import FinalLine
from framegate.engine.transcript_json import segment_record

SCHEMA = 2  # 2: segments in the shape of transcribe --json (with channel); device gap and reconnects


def transcript_path(wav_path: Path) -> Path:
    return wav_path.with_suffix(".json")


class SessionRecorder:
    """Writes the wav block by block (memory stays bounded) and the JSON at `finish`."""

    def __init__(self, wav_path: str | Path, sample_rate: int) -> None:
        self.wav_path = Path(wav_path)
        if self.wav_path.suffix.lower() != ".wav":
            raise FramegateError(f"--save '{wav_path}': the path must end in .wav "
                                 "(the transcript is written beside it as .json)")
        try:
            self._file = sf.SoundFile(self.wav_path, "w", samplerate=sample_rate, channels=1,
                                      format="WAV", subtype="FLOAT")
        except (sf.SoundFileError, RuntimeError) as e:
            detail = getattr(e, "error_string", None) or str(e)
            raise FramegateError(f"--save '{wav_path}': cannot be written ({detail})") from None

    def write(self, block: np.ndarray) -> None:
        self._file.write(block)

    def finish(self, lines: list[FinalLine], stats: CaptureStats) -> Path:
        """Close the wav and write the transcript; returns the JSON's path."""
        self._file.close()
        record = {
            "schema": SCHEMA,
            "audio": self.wav_path.name,
            "sample_rate": stats.sample_rate,
            "captured_s": round(stats.captured_s, 6),
            "dropped_s": round(stats.dropped_s, 6),
            "device_gap_s": round(stats.gap_s, 6),
            "device_reconnects": stats.reconnects,
            "device_overflows": stats.overflows,
            "text": " ".join(line.text for line in lines),
            "segments": [segment_record(line) for line in lines],
        }
        path = transcript_path(self.wav_path)
        path.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return path
