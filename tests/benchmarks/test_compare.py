"""`bench compare`: two runs paired per utterance, differences B - A with bootstrap intervals."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from framegate.benchmarks.compare import run
from framegate.engine.errors import FramegateError


def _write(tmp: Path, name: str, schema: str, records: list[dict]) -> Path:
    per_utt = tmp / f"{name}_utterances.jsonl"
    per_utt.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = tmp / f"{name}.json"
    report.write_text(json.dumps({"schema": schema, "model": name, "per_utterance": str(per_utt)}))
    return report


def _wer_records(errors: list[int], words: list[int]) -> list[dict]:
    return [{"audio": f"u{i}.flac", "family": "fam" + str(i % 2), "ref": f"ref {i}", "hyp": "", "errors": e,
             "words": w} for i, (e, w) in enumerate(zip(errors, words))]


def _latency_records(last_word_s: list[float], beam_last_word_s: list[float | None]) -> list[dict]:
    return [{"id": f"u{i}", "reference": f"ref {i}", "speech_end_s": 1.0,
             "virtual": {"last_word_s": 1.0 + g, "endpoint_s": 1.8 + g},
             "bundle_search": {"text": "", "virtual": {"last_word_s": None if b is None else 1.0 + b,
                                                       "endpoint_s": 1.8}}}
            for i, (g, b) in enumerate(zip(last_word_s, beam_last_word_s))]


def test_wer_difference_is_b_minus_a_on_the_paired_words(tmp_path):
    a = _write(tmp_path, "a", "framegate.bench.wer/1", _wer_records([3, 2, 0, 1], [10, 10, 5, 5]))
    # B covers three of A's utterances, in another order: only those pair
    b_records = _wer_records([1, 2, 0, 9], [10, 10, 5, 5])[:3][::-1]
    b = _write(tmp_path, "b", "framegate.bench.wer/1", b_records)
    report = run(a, b, tmp_path / "cmp.json", rounds=200)
    assert report["utterances"] == 3 and report["words"] == 25
    assert report["difference"]["difference"] == pytest.approx((3 - 5) / 25)
    lo, hi = report["difference"]["ci95"]
    assert lo <= report["difference"]["difference"] <= hi
    assert report["utterances_better_same_worse"] == [1, 2, 0]
    assert report["per_family"]["fam0"] == {"words": 15, "a": pytest.approx(3 / 15), "b": pytest.approx(1 / 15)}
    assert (tmp_path / "cmp.png").stat().st_size > 0


def test_latency_pairs_each_search_and_skips_utterances_without_a_last_word(tmp_path):
    greedy_a = list(np.linspace(0.0, 0.2, 20))
    greedy_b = [x - 0.04 for x in greedy_a]  # every utterance 40 ms earlier
    beam_a = [0.1] * 19 + [None]
    a = _write(tmp_path, "a", "framegate.bench.latency/1", _latency_records(greedy_a, beam_a))
    b = _write(tmp_path, "b", "framegate.bench.latency/1", _latency_records(greedy_b, [0.1] * 20))
    report = run(a, b, tmp_path / "cmp.json", rounds=200)
    greedy = report["greedy"]["last_word_ms"]
    assert greedy["utterances"] == 20 and greedy["earlier_same_later"] == [20, 0, 0]
    assert greedy["mean_difference"]["difference"] == pytest.approx(-40.0)
    assert greedy["mean_difference"]["ci95"] == pytest.approx([-40.0, -40.0])
    assert greedy["p95_difference"]["difference"] == pytest.approx(-40.0)
    assert greedy["a"]["p95"] == pytest.approx(1000 * np.percentile(greedy_a, 95))
    assert report["greedy"]["endpoint_ms"]["mean_difference"]["difference"] == pytest.approx(-40.0)
    beam = report["bundle_search"]["last_word_ms"]
    assert beam["utterances"] == 19 and beam["earlier_same_later"] == [0, 19, 0]


def test_reports_that_cannot_pair_are_refused(tmp_path):
    wer = _write(tmp_path, "w", "framegate.bench.wer/1", _wer_records([1], [2]))
    lat = _write(tmp_path, "l", "framegate.bench.latency/1", _latency_records([0.1], [0.1]))
    with pytest.raises(FramegateError, match="cannot pair"):
        run(wer, lat, tmp_path / "x.json")
    other = _write(tmp_path, "o", "framegate.bench.wer/1",
                   [{**r, "audio": "elsewhere.flac"} for r in _wer_records([1], [2])])
    with pytest.raises(FramegateError, match="share no utterance"):
        run(wer, other, tmp_path / "x.json")
    relabelled = _write(tmp_path, "r", "framegate.bench.wer/1",
                        [{**r, "ref": "another text"} for r in _wer_records([1], [2])])
    with pytest.raises(FramegateError, match="different references"):
        run(wer, relabelled, tmp_path / "x.json")
    savings = tmp_path / "s.json"
    savings.write_text(json.dumps({"schema": "framegate.bench.savings/1"}))
    with pytest.raises(FramegateError, match="not a 'bench wer' or 'bench latency'"):
        run(savings, wer, tmp_path / "x.json")
    with pytest.raises(FramegateError, match="cannot read benchmark report"):
        run(tmp_path / "missing.json", wer, tmp_path / "x.json")


def test_cli_prints_the_difference_and_exits_cleanly(tmp_path):
    a = _write(tmp_path, "a", "framegate.bench.wer/1", _wer_records([2, 2], [10, 10]))
    b = _write(tmp_path, "b", "framegate.bench.wer/1", _wer_records([1, 2], [10, 10]))
    out = subprocess.run([sys.executable, "-m", "framegate.engine.cli", "bench", "compare", str(a), str(b),
                          "--json", str(tmp_path / "c.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "B - A -5.00 points" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "framegate.engine.cli", "bench", "compare", str(a),
                          str(tmp_path / "nope.json"), "--json", str(tmp_path / "c.json")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "cannot read benchmark report" in bad.stderr and "Traceback" not in bad.stderr


def test_a_report_whose_per_utterance_file_was_overwritten_is_refused(tmp_path):
    a = _write(tmp_path, "a", "framegate.bench.wer/1", _wer_records([3, 2], [10, 10]))
    report = json.loads(a.read_text())
    (tmp_path / "a.json").write_text(json.dumps({**report, "wer": 0.25, "utterances": 2}))
    b = _write(tmp_path, "b", "framegate.bench.wer/1", _wer_records([1, 2], [10, 10]))
    assert run(a, b, tmp_path / "ok.json", rounds=50)["wer"]["a"] == pytest.approx(0.25)  # its own records
    (tmp_path / "a.json").write_text(json.dumps({**report, "wer": 0.40, "utterances": 2}))
    with pytest.raises(FramegateError, match="another run's utterances"):
        run(a, b, tmp_path / "x.json")
    (tmp_path / "a.json").write_text(json.dumps({**report, "wer": 0.25, "utterances": 3}))
    with pytest.raises(FramegateError, match="another run's utterances"):
        run(a, b, tmp_path / "x.json")

