"""Smoke test of `framegate bench latency`: every engine once, on one tiny input.

Benchmarks never run in the unit tests otherwise; this checks that each child runs, the
report has the issue's keys with sane values, and the engines that run the same weights
emit the same tokens.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from framegate.benchmarks.latency import LatencyOptions, run

ISSUE_KEYS = {"schema", "rtf", "chunk_ms", "last_word_ms", "endpoint_ms", "algorithmic_ms", "first_partial_ms",
              "peak_rss_mb", "bundle_mb", "peers"}


@pytest.fixture(scope="module")
def latency_report(tiny_bundle, tiny_checkpoint, speechlike_16k, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("bench_latency")
    sf.write(work / "one.wav", speechlike_16k[:16000 * 3], 16000, subtype="FLOAT")
    (work / "test.jsonl").write_text(json.dumps({"audio": "one.wav", "text": "a tiny input"}) + "\n")
    options = LatencyOptions(threads=(1,), block_ms=20.0, tail_s=1.0, real_time_utts=1, rounds=1, sgemm_size=256)
    return run(tiny_bundle, work / "latency.json", manifest=work / "test.jsonl", checkpoint=tiny_checkpoint,
               options=options)


def test_report_has_the_issue_keys_and_a_png(latency_report, tmp_path_factory):
    assert ISSUE_KEYS <= latency_report.keys()
    assert latency_report["schema"] == "framegate.bench.latency/1"
    out = Path(latency_report["per_utterance"]).with_name("latency.json")
    assert json.loads(out.read_text())["rtf"] == latency_report["rtf"]
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_speed_and_chunk_figures_are_sane(latency_report):
    assert latency_report["rtf"] > 0
    chunk = latency_report["chunk_ms"]
    assert 0 < chunk["p50"] <= chunk["p95"] <= chunk["p99"]
    assert latency_report["chunk_ratio"]["p99"] == pytest.approx(chunk["p99"] / latency_report["chunk_audio_ms"])
    assert latency_report["algorithmic_ms"] == 110.0  # tiny model: chunk 8 + lookahead 3 frames of 10 ms
    assert 0 < latency_report["bundle_mb"] < 5
    assert 20 < latency_report["peak_rss_mb"] < 1000


def test_latencies_are_ordered_and_the_virtual_clock_matches_wall_clock(latency_report):
    for key in ("last_word_ms", "first_partial_ms"):
        assert latency_report[key]["p50"] is not None and latency_report[key]["p50"] <= latency_report[key]["p95"]
    # no result can appear before the chunk holding it has arrived
    assert latency_report["first_partial_ms"]["p50"] > 0
    greedy = latency_report["threads"]["1"]  # the last word shows no later than the result settles
    assert greedy["last_word_ms"]["p50"] <= greedy["settled_ms"]["p50"]
    check = latency_report["threads"]["1"]["pace_check"]
    assert check["utterances"] == 1
    assert abs(check["real_minus_virtual_ms"]["first_partial_ms"][0]) < 60


def test_engines_on_the_same_weights_emit_the_same_tokens(latency_report):
    peers = latency_report["peers"]
    assert set(peers) == {"onnxruntime", "sherpa-onnx", "pocketsphinx", "pytorch"}
    for name in peers:
        assert peers[name]["rtf"] > 0 and peers[name]["wer"] is not None
    assert peers["onnxruntime"]["tokens_vs_framegate"]["identical"] == 1.0
    assert peers["pytorch"]["tokens_vs_framegate"]["identical"] == 1.0
    # sherpa-onnx does not pad the last partial window: tokens may end early, never differ before
    assert peers["sherpa-onnx"]["tokens_vs_framegate"]["one_is_prefix"] == 1.0
    assert latency_report["engine_overhead"] == pytest.approx(latency_report["rtf"] / peers["onnxruntime"]["rtf"])
    lo, hi = latency_report["engine_overhead_ci95"]  # one utterance: the interval is the ratio itself
    assert lo == pytest.approx(latency_report["engine_overhead"]) == pytest.approx(hi)
    assert latency_report["vs_sherpa_onnx_ci95"] == peers["sherpa-onnx"]["framegate_time_ratio_ci95"]


def test_engine_process_loads_no_torch(latency_report):
    assert "torch" not in latency_report["threads"]["1"]["modules_loaded"]


def test_physical_limit_compares_the_model_with_the_sgemm_peak(latency_report):
    limit = latency_report["physical_limit"]
    assert limit["sgemm"]["blas"][0]["num_threads"] == 1
    assert limit["sgemm"]["macs_per_s"] > 1e8
    assert limit["achieved_macs_per_s"] == pytest.approx(limit["model_macs"]["macs_per_audio_s"] / latency_report["rtf"])
    assert 0 < limit["fraction_of_sgemm_peak"] < 1


@pytest.fixture(scope="module")
def one_input(speechlike_16k, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("bench_latency_other")
    sf.write(work / "one.wav", speechlike_16k[:16000 * 2], 16000, subtype="FLOAT")
    (work / "test.jsonl").write_text(json.dumps({"audio": "one.wav", "text": "a tiny input"}) + "\n")
    return work / "test.jsonl"


FAST = LatencyOptions(threads=(1,), block_ms=20.0, tail_s=1.0, real_time_utts=0, rounds=1, sgemm_size=256)


def test_convrnnt_bundle_runs_with_the_peers_that_take_it(convrnnt_model_and_bundle, one_input, tmp_path):
    _, bundle = convrnnt_model_and_bundle
    report = run(bundle, tmp_path / "latency.json", manifest=one_input, options=FAST)
    assert set(report["peers"]) == {"pocketsphinx"}
    assert set(report["peers_skipped"]) == {"onnxruntime", "sherpa-onnx"}
    assert report["engine_overhead"] is None and report["vs_sherpa_onnx"] is None
    macs = report["physical_limit"]["model_macs"]
    assert macs["macs_per_audio_s"] == json.loads((bundle / "bundle.json").read_text())["compute"]["macs_per_second"]
    assert report["rtf"] > 0 and (tmp_path / "latency.png").stat().st_size > 10_000


def test_gated_bundle_reports_the_macs_its_gates_executed(tiny_gated, one_input, tmp_path):
    _, bundle = tiny_gated["feature"]
    report = run(bundle, tmp_path / "latency.json", manifest=one_input, options=FAST)
    macs = report["physical_limit"]["model_macs"]
    assert 0 < macs["executed_fraction"] <= 1
    assert macs["macs_per_audio_s"] <= macs["dense_macs_per_audio_s"] * 1.05  # flush pad frames count as audio
    limit = report["physical_limit"]
    assert limit["achieved_macs_per_s"] == pytest.approx(macs["macs_per_audio_s"] / report["rtf"])


def test_pytorch_peer_is_refused_for_a_model_it_cannot_stream(convrnnt_model_and_bundle, tiny_checkpoint, one_input,
                                                                tmp_path):
    from framegate.engine.errors import FramegateError

    _, bundle = convrnnt_model_and_bundle
    with pytest.raises(FramegateError, match="PyTorch peer streams LSTM transducers only"):
        run(bundle, tmp_path / "latency.json", manifest=one_input, checkpoint=tiny_checkpoint, options=FAST)


def test_cli_summary_says_n_a_for_figures_a_bundle_type_has_no_peer_for(monkeypatch, tmp_path, capsys):
    """A ConvRNN-T or gated bundle has no raw-ONNX-Runtime or sherpa-onnx peer: the line still prints."""
    import framegate.benchmarks.latency as latency
    from framegate.engine.cli import main

    report = {"rtf": 0.02, "chunk_ms": {"p99": 2.5}, "last_word_ms": {"p95": 151.4}, "peak_rss_mb": 120.0,
              "engine_overhead": None, "vs_sherpa_onnx": None}
    monkeypatch.setattr(latency, "run", lambda *args, **kwargs: report)
    manifest = tmp_path / "test.jsonl"
    assert main(["bench", "latency", "--manifest", str(manifest), "--json", str(tmp_path / "l.json")]) == 0
    line = capsys.readouterr().out
    assert "last word p95 151 ms" in line and "raw ONNX Runtime n/a, vs sherpa-onnx n/a" in line
    report.update(engine_overhead=0.82, vs_sherpa_onnx=0.86)
    assert main(["bench", "latency", "--manifest", str(manifest), "--json", str(tmp_path / "l.json")]) == 0
    assert "raw ONNX Runtime x0.82, vs sherpa-onnx x0.86" in capsys.readouterr().out


def test_a_bundle_with_its_own_search_is_measured_beside_greedy(tiny_bundle, one_input, tmp_path):
    import shutil

    from framegate.engine.bundle import Bundle
    from framegate.export.token_lm import attach, estimate

    shutil.copytree(tiny_bundle, tmp_path / "with_lm")
    bundle = Bundle.load(tmp_path / "with_lm")
    tokens = bundle.tokens[2:]  # after <blk>, <unk>
    attach(bundle, estimate([tokens[i:i + 3] for i in range(len(tokens) - 2)], tokens, 2),
           {"beam": 3, "lm_weight": 0.3, "token_bonus": 1.0}, {"purpose": "tests"})
    report = run(bundle.path, tmp_path / "latency.json", manifest=one_input, options=FAST)
    searched = report["bundle_search"]
    assert searched["settings"]["beam"] == 3 and searched["rtf"] > 0 and searched["rtf_over_greedy"] > 0
    assert searched["latency_counts"]["last_word_ms"] == 1 and searched["peak_rss_mb"] > 0
    assert searched["last_word_ms"]["p50"] <= searched["settled_ms"]["p50"]  # the word can show before the rest settles
    assert "difference" in searched["wer_minus_greedy"]
    row = json.loads(Path(report["per_utterance"]).read_text().splitlines()[0])  # pairable across bundles
    assert row["bundle_search"]["virtual"]["last_word_s"] is not None and isinstance(row["bundle_search"]["text"], str)
    assert report["peers"]["onnxruntime"]["tokens_vs_framegate"]["token_agreement"] == 1.0  # greedy headline


def test_peers_option_runs_only_the_peers_asked_for(tiny_bundle, one_input, tmp_path):
    """`--peers none` is framegate alone (two bundles' latencies paired without the peers' minutes);
    the left-out peers are named with why, and the figures that need them read None."""
    from dataclasses import replace

    alone = run(tiny_bundle, tmp_path / "alone.json", manifest=one_input, options=replace(FAST, peers=()))
    assert alone["peers"] == {} and alone["engine_overhead"] is None and alone["vs_sherpa_onnx"] is None
    assert set(alone["peers_skipped"]) == {"onnxruntime", "sherpa-onnx", "pocketsphinx", "pytorch"}
    assert alone["rtf"] > 0 and alone["last_word_ms"]["p50"] is not None
    raw = run(tiny_bundle, tmp_path / "raw.json", manifest=one_input, options=replace(FAST, peers=("onnxruntime",)))
    assert set(raw["peers"]) == {"onnxruntime"} and raw["engine_overhead"] > 0
    assert raw["peers_skipped"]["pocketsphinx"] == "left out (--peers)"


def test_peers_option_refuses_unknown_peers_and_pytorch_without_its_checkpoint(tiny_bundle, one_input, tmp_path):
    from dataclasses import replace

    from framegate.engine.errors import FramegateError

    with pytest.raises(ValueError, match="unknown \\['whisper'\\]"):
        replace(FAST, peers=("whisper",)).validate()
    with pytest.raises(FramegateError, match="pass --checkpoint"):
        run(tiny_bundle, tmp_path / "l.json", manifest=one_input, options=replace(FAST, peers=("pytorch",)))


def test_cli_peers_none_means_no_peers(monkeypatch, tmp_path):
    import framegate.benchmarks.latency as latency
    from framegate.engine.cli import main

    seen = {}
    report = {"rtf": 0.02, "chunk_ms": {"p99": 2.5}, "last_word_ms": {"p95": 150.0}, "peak_rss_mb": 120.0,
              "engine_overhead": None, "vs_sherpa_onnx": None}
    monkeypatch.setattr(latency, "run", lambda *args, options, **kwargs: seen.update(peers=options.peers) or report)
    args = ["bench", "latency", "--manifest", str(tmp_path / "t.jsonl"), "--json", str(tmp_path / "l.json")]
    assert main(args + ["--peers", "none"]) == 0 and seen["peers"] == ()
    assert main(args + ["--peers", "onnxruntime", "sherpa-onnx"]) == 0 and seen["peers"] == ("onnxruntime", "sherpa-onnx")
    assert main(args) == 0 and seen["peers"] is None
