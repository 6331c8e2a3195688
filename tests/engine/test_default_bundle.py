"""The shipped default bundle and example recording: installed with the package, valid, usable.

How well the default model transcribes is measured by `framegate bench wer` and written in the
bundle's MODEL_CARD.md, not asserted here.
"""
from __future__ import annotations

import json
from pathlib import Path

from framegate.engine.bundle import Bundle
from framegate.engine.cli import main
from framegate.engine.recognizer import DEFAULT_BUNDLE

EXAMPLE = DEFAULT_BUNDLE.parent / "example.wav"


def test_default_bundle_passes_every_load_check_and_has_a_model_card() -> None:
    bundle = Bundle.load(DEFAULT_BUNDLE)
    assert bundle.model_type == "lstm_transducer"
    assert (DEFAULT_BUNDLE / "MODEL_CARD.md").read_text(encoding="utf-8").startswith("# Model card")
    size_mb = sum(p.stat().st_size for p in DEFAULT_BUNDLE.iterdir()) / 1e6
    assert size_mb <= 30, f"the default bundle is {size_mb:.1f} MB; the limit is 30 MB"


def test_transcribing_the_example_with_the_default_bundle_prints_one_json_line(capsys) -> None:
    assert main(["transcribe", str(EXAMPLE), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert set(record) >= {"file", "text", "tokens", "timestamps", "duration_s", "rtf"}
    assert abs(record["duration_s"] - 3.98) < 0.01 and record["rtf"] > 0
    assert len(record["tokens"]) == len(record["timestamps"])
    assert Path(record["file"]).name == "example.wav"
