"""`bench conversations` on tiny random bundles and a few tiny conversations: the report's shape."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from framegate.benchmarks.conversations import bucket_of, by_speaker, energy_segments, fbank_statistics
from framegate.engine.stream import Segment
from framegate.export.conversations import ConversationConfig, write_conversations

SR = 16000


@pytest.fixture(scope="module")
def conversations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench_conv")
    (root / "audio").mkdir()
    rows, rng = [], np.random.default_rng(2)
    for speaker, pitch in (("v1", 140), ("v2", 230)):
        for k in range(3):
            t = np.arange(int((1.0 + 0.2 * k) * SR)) / SR
            audio = np.concatenate([np.zeros(3000), 0.3 * np.sin(2 * np.pi * pitch * t), np.zeros(3000)])
            audio += 0.001 * rng.standard_normal(len(audio))
            sf.write(root / "audio" / f"{speaker}{k}.flac", audio.astype(np.float32), SR, format="FLAC")
            rows.append({"audio": f"audio/{speaker}{k}.flac", "text": f"word {speaker} {k}", "speaker": speaker,
                         "family": speaker, "split": "test"})
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return write_conversations(root / "test.jsonl", root / "conv", seed=1, count_per_split=3,
                               config=ConversationConfig(min_turns=3, max_turns=4))["test"]


def test_report_has_buckets_baselines_delays_and_a_png(tiny_sts, tiny_bundle, conversations, tmp_path):
    from framegate.benchmarks.conversations import run

    out = tmp_path / "conv.json"
    report = run(tiny_sts[1], conversations, out, single=tiny_bundle)
    assert report["schema"] == "framegate.bench.conversations/1" and out.with_suffix(".png").is_file()
    assert sum(b["conversations"] for b in report["buckets"]) == 3
    for b in report["buckets"]:
        assert set(b["baselines"]) == {"single_speaker", "cascade"}
        assert b["cpwer"] >= 0 and 0 <= b["turn_count_accuracy"] <= 1
        assert set(b["eot_delay_ms"]) == {"p50", "p90", "n"} and set(b["sot_delay_ms"]) == {"p50", "p90", "n"}
        # on the same hypothesis streams (channels) ORC may split a speaker over them: never worse
        assert b["orcwer"] <= b["cpwer_channels_as_speakers"] + 1e-9
        assert len(b["baselines"]["cascade"]["sts_minus_baseline"]["ci95"]) == 2
    assert report["rtf"] > 0 and "beats_baselines" in report["done_when"]
    assert json.loads(out.read_text())["buckets"] == report["buckets"]
    assert report["search"]["sts"] == {"method": "greedy", "channels": 2}
    for row in map(json.loads, Path(report["per_conversation"]).read_text().splitlines()):  # turns and segments
        assert len(row["ref_turns"]) == row["turns"] and len(row["hyp_segments"]) == row["segments"]
        assert all(set(seg) == {"channel", "start", "end", "text"} and seg["start"] <= seg["end"]
                   for seg in row["hyp_segments"])
        assert [seg["start"] for seg in row["hyp_segments"]] == sorted(seg["start"] for seg in row["hyp_segments"])


def test_the_sts_bundle_can_run_beam_search_on_its_channels(tiny_sts, tiny_bundle, conversations, tmp_path):
    from framegate.benchmarks.conversations import run

    report = run(tiny_sts[1], conversations, tmp_path / "conv.json", single=tiny_bundle, beam=3, limit=1)
    assert report["search"]["sts"]["method"] == "modified_beam_search" and report["search"]["sts"]["beam"] == 3
    assert report["search"]["single_speaker"] == {"method": "greedy"}


def test_a_single_speaker_bundle_is_refused_as_the_sts_model(tiny_bundle, conversations, tmp_path):
    from framegate.benchmarks.conversations import run
    from framegate.engine.errors import FramegateError

    with pytest.raises(FramegateError, match="two-channel"):
        run(tiny_bundle, conversations, tmp_path / "x.json", single=tiny_bundle)


def test_buckets_and_energy_segmentation():
    assert [bucket_of(r) for r in (0.0, 0.05, 0.1, 0.15, 0.3, 0.9)] == \
        ["0 %", "0-10 %", "0-10 %", "10-20 %", "20-40 %", "> 40 %"]
    signal = np.zeros(4 * SR, np.float32)
    signal[SR:2 * SR] = 0.3 * np.sin(np.arange(SR) / 5)
    signal[int(2.1 * SR):int(2.6 * SR)] = 0.3 * np.sin(np.arange(int(0.5 * SR)) / 3)  # 0.1 s gap: bridged
    signal[int(3.2 * SR):int(3.5 * SR)] = 0.3
    spans = energy_segments(signal + 1e-4 * np.random.default_rng(0).standard_normal(len(signal)).astype(np.float32))
    assert len(spans) == 2 and spans[0][0] == pytest.approx(0.9 * SR, abs=200) and spans[0][1] == pytest.approx(2.7 * SR, abs=200)


def test_segments_on_one_channel_are_split_by_who_speaks():
    """A conversation without overlap puts every turn on channel 0: cpWER needs the speakers back."""
    t = np.arange(SR) / SR
    voices = {"low": 0.3 * np.sin(2 * np.pi * 140 * t), "high": 0.3 * np.sin(2 * np.pi * 230 * t)}
    order = ["low", "high", "low", "high"]
    signal = np.concatenate([voices[v] for v in order]).astype(np.float32)
    signal += 1e-3 * np.random.default_rng(0).standard_normal(len(signal)).astype(np.float32)
    segments = [Segment(text=f"w{k}", tokens=[], timestamps=[], start_s=float(k), end_s=k + 1.0, channel=0)
                for k in range(4)]
    segments.append(Segment(text="", tokens=[], timestamps=[], start_s=3.5, end_s=4.0, channel=1))  # no words
    streams = by_speaker(signal, segments, fbank_statistics)
    assert sorted(streams.values()) == ["w0 w2", "w1 w3"]
    assert by_speaker(signal, segments[:1], fbank_statistics) == {"0": "w0"}
