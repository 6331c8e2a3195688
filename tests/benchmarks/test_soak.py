"""The long-stream soak, shortened: 90 s of speech with pauses through one stream, tiny bundle.

The hour-long run (and the 2-hour file through the CLI) is `framegate bench soak`; this test
keeps its promises on a short stream that need no clock: bounded memory, no state that grows
with the stream (the cause of drift; the drift itself is wall time, judged by the benchmark),
and every endpointed segment identical to its audio transcribed alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from framegate.benchmarks.soak import cli_long_file, soak
from framegate.engine.cli import main
from framegate.engine.endpoint import EndpointConfig

# Utterances of at most 4 s, so 90 s gives dozens of endpoints whatever the random model emits.
SHORT_UTTERANCES = EndpointConfig(rule1_min_trailing_silence_s=1.0, rule2_min_trailing_silence_s=0.3,
                                  rule3_min_utterance_length_s=4.0)


def test_short_soak_keeps_memory_bounded_and_segments_identical(tiny_bundle: Path):
    report = soak(tiny_bundle, minutes=1.5, seed=3, endpoint=SHORT_UTTERANCES, warmup_fraction=0.25)
    segments = report["segments"]
    assert segments["endpointed"] >= 20
    assert segments["all_identical"], segments["mismatched"]
    assert report["rss_mb"]["growth_after_warmup"] < 5.0, report["rss_mb"]
    held = report["held_samples"]
    assert 0 < held["max_after_warmup"] <= held["one_window"], held


def test_bench_soak_verb_writes_json_and_png(tiny_bundle: Path, tmp_path: Path, capsys):
    out = tmp_path / "soak.json"
    code = main(["bench", "soak", "--model", str(tiny_bundle), "--minutes", "0.5", "--cli-file-minutes", "0.5",
                 "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["schema"] == 1 and out.with_suffix(".png").is_file()
    assert report["cli_long_file"]["returncode"] == 0
    assert report["cli_long_file"]["duration_s"] == 30.0
    assert "RSS" in capsys.readouterr().out


def test_cli_peak_memory_is_the_childs_own_not_its_parents(tiny_bundle: Path, tmp_path: Path):
    """ru_maxrss would report at least the parent's 400 MB here (Linux carries it across fork
    and exec); the child's VmHWM is what the CLI itself used."""
    ballast = np.ones(100_000_000, dtype=np.float32)  # 400 MB resident in this (parent) process
    record = cli_long_file(tiny_bundle, np.zeros(16000, dtype=np.float32), 0.1, tmp_path)
    assert record["returncode"] == 0, record["error"]
    assert 20 < record["peak_rss_mb"] < ballast.nbytes / 2**20 / 2
