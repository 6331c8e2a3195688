"""The latency benchmark's pieces: speech bounds, token agreement, the analytic MAC count."""
from __future__ import annotations

import numpy as np
import pytest

from framegate.benchmarks.interleaved import ratio_interval, schedule
from framegate.benchmarks.latency import edit_distance, percentiles, token_agreement, with_paced_passes
from framegate.benchmarks.physical_limit import model_macs
from framegate.benchmarks.utterances import speech_bounds


def test_speech_bounds_trim_silence_and_steady_noise():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    signal = np.concatenate([np.zeros(8000), tone, np.zeros(16000)]).astype(np.float32)
    signal += 0.001 * rng.standard_normal(len(signal)).astype(np.float32)
    start, end = speech_bounds(signal)
    assert abs(start - 0.5) <= 0.011 and abs(end - 1.5) <= 0.011


def test_speech_bounds_of_digital_silence_are_the_whole_signal():
    assert speech_bounds(np.zeros(3200, dtype=np.float32)) == (0.0, 0.2)


def test_token_agreement_tells_an_early_end_from_a_difference():
    a = [["▁a", "b", "c"], ["▁x", "y"]]
    assert token_agreement(a, [["▁a", "b"], ["▁x", "y"]], ["u1", "u2"]) == {
        "identical": 0.5, "one_is_prefix": 1.0, "token_agreement": 1 - 1 / 5, "differing": ["u1"]}
    assert token_agreement(a, [["▁a", "z", "c"], ["▁x", "y"]], ["u1", "u2"])["one_is_prefix"] == 0.5
    assert edit_distance(["a", "b"], ["b", "a", "b"]) == 1


def test_percentiles_are_none_without_values():
    assert percentiles([], (50, 95)) == {"p50": None, "p95": None}


def test_mac_count_from_the_graph_matches_the_formula_from_the_config(tiny_bundle):
    # tiny model: conv channels 4, d_model 16, hidden 24, 1 layer, joiner 16, vocab 30, window 11, 80 bins
    t1, f1 = (11 - 3) // 2 + 1, (80 - 3) // 2 + 1
    t2, f2 = (t1 - 3) // 2 + 1, (f1 - 3) // 2 + 1
    conv = 4 * 9 * t1 * f1 + 4 * 4 * 9 * t2 * f2
    matmul = t2 * (4 * f2 * 16 + 16 * 4 * 24 + 16 * 16)  # subsampling out, LSTM input gates, output layer
    recurrent = t2 * (16 * 4 * 24 + 24 * 16)  # recurrent gates and projection per step
    joiner = t2 * 16 * 30
    macs = model_macs(tiny_bundle)
    assert macs["per_window"] == {"conv": conv, "matmul": matmul, "recurrent": recurrent, "joiner": joiner}
    assert macs["macs_per_audio_s"] == (conv + matmul + recurrent + joiner) * 1000 / 80


def test_mac_count_of_onnx_lstm_ops_matches_the_formula(plain_lstm_model_and_bundle):
    # the tiny model without projection (hidden = d_model = 16): its LSTM is one ONNX LSTM op
    _, bundle = plain_lstm_model_and_bundle
    t1, f1 = (11 - 3) // 2 + 1, (80 - 3) // 2 + 1
    t2, f2 = (t1 - 3) // 2 + 1, (f1 - 3) // 2 + 1
    macs = model_macs(bundle)["per_window"]
    assert macs["matmul"] == t2 * (4 * f2 * 16 + 16 * 16)  # subsampling out, output layer
    assert macs["recurrent"] == t2 * (4 * 16 * 16 + 4 * 16 * 16)  # W and R of the LSTM op, per step


def test_mac_count_of_int8_lstm_ops_is_the_fp32_count_plus_the_range_columns(tiny_bundle_int8):
    fp32 = model_macs(tiny_bundle_int8.parent / "fp32")["per_window"]
    int8 = model_macs(tiny_bundle_int8)["per_window"]
    frames = (((11 - 3) // 2 + 1) - 3) // 2 + 1
    assert fp32["recurrent"] == frames * 2 * (4 * 16 * 16 + 4 * 16 * 16)  # two layers, W and R
    assert int8["recurrent"] == fp32["recurrent"] + frames * 2 * 4 * 16 * 2  # two range columns of W a layer
    assert {k: v for k, v in int8.items() if k != "recurrent"} == {k: v for k, v in fp32.items() if k != "recurrent"}


def test_paced_passes_merge_into_the_throughput_records_with_the_larger_memory():
    throughput = {"peak_rss_mb": 100.0, "final_rss_mb": 90.0,
                  "utterances": [{"id": "a", "compute_s": 1.5}, {"id": "b", "compute_s": 1.0}]}
    paced = {"peak_rss_mb": 120.0, "final_rss_mb": 80.0,
             "utterances": [{"id": "a", "virtual": {"x": 1}}, {"id": "b", "virtual": {"x": 2}}]}
    merged = with_paced_passes(throughput, paced)
    assert [u["compute_s"] for u in merged["utterances"]] == [1.5, 1.0]
    assert [u["virtual"] for u in merged["utterances"]] == [{"x": 1}, {"x": 2}]
    assert (merged["peak_rss_mb"], merged["final_rss_mb"]) == (120.0, 90.0)
    assert with_paced_passes(throughput, None) is throughput


def test_schedule_runs_every_engine_once_per_utterance_back_to_back_and_rotates_the_first():
    keys = ["framegate", "onnxruntime", "sherpa-onnx"]
    order = list(schedule(keys, utterances=4, rounds=2))
    assert len(order) == 2 * 4 * 3
    for start in range(0, len(order), 3):  # each (round, utterance): the three engines back to back
        group = order[start:start + 3]
        assert len({(r, i) for r, i, _ in group}) == 1 and sorted(k for _, _, k in group) == sorted(keys)
    firsts = [order[start][2] for start in range(0, len(order), 3)]
    assert {k: firsts.count(k) for k in keys} == {"framegate": 3, "onnxruntime": 3, "sherpa-onnx": 2}


def test_ratio_interval_brackets_the_ratio_of_sums_and_is_a_point_for_a_constant_ratio():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.5, 2.0, size=50)
    a = b * rng.uniform(0.8, 1.4, size=50)
    lo, hi = ratio_interval(list(a), list(b))
    assert lo < a.sum() / b.sum() < hi and hi - lo < 0.2
    assert ratio_interval(list(2 * b), list(b)) == pytest.approx([2.0, 2.0])


class _ScriptedStream:
    """A stream whose result after each decode call follows a script (what a beam search may show)."""

    def __init__(self, script: list[list[str]]) -> None:
        self.script, self.calls, self.is_endpoint = script, 0, False

    def accept_waveform(self, rate: int, block: np.ndarray) -> None:
        self.calls += 1

    @property
    def result(self):
        from types import SimpleNamespace

        return SimpleNamespace(tokens=list(self.script[min(self.calls, len(self.script)) - 1]))


class _ScriptedRecognizer:
    def __init__(self, script: list[list[str]]) -> None:
        self.stream, self.windows = _ScriptedStream(script), 0

    def create_stream(self) -> _ScriptedStream:
        return self.stream

    def decode(self, stream: _ScriptedStream) -> None:
        self.windows += 1


def test_the_last_word_counts_from_when_the_result_holds_it_for_good_and_settling_apart():
    from framegate.benchmarks.realtime import RATE, run_paced

    block = RATE // 10
    # The best hypothesis shows the last word, changes it, shows it again (fifth block: it counts
    # from there, not from the third), then revises an earlier word (the sixth: settled).
    script = [[], ["▁a"], ["▁a", "▁b"], ["▁a", "▁c"], ["▁d", "▁b"],
              ["▁a", "▁b"], ["▁a", "▁b"]]
    run = run_paced(_ScriptedRecognizer(script), np.zeros(block * len(script), dtype=np.float32), block,
                    real_time=False)
    assert run.tokens == ["▁a", "▁b"]
    assert run.last_word_arrival_s == pytest.approx(0.5) and run.last_token_arrival_s == pytest.approx(0.6)
    assert run.first_token_s is not None and run.first_token_s < run.last_word_s < run.last_token_s
    # A piece that completes the word is part of it: "sle" is not yet "sleep".
    grows = [[], ["▁a"], ["▁a", "▁sle"], ["▁a", "▁sle", "ep"], ["▁a", "▁sle", "ep"]]
    run = run_paced(_ScriptedRecognizer(grows), np.zeros(block * len(grows), dtype=np.float32), block,
                    real_time=False)
    assert run.last_word_arrival_s == run.last_token_arrival_s == pytest.approx(0.4)
