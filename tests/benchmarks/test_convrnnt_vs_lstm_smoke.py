"""Smoke test of `python -m framegate.benchmarks.convrnnt_vs_lstm` on two tiny utterances."""
from __future__ import annotations

import json

import soundfile as sf

from framegate.benchmarks.convrnnt_vs_lstm import SCHEMA, run


def test_comparison_reports_both_models_the_paired_difference_and_the_per_frame_cost(
        tmp_path, tiny_bundle, convrnnt_model_and_bundle, speechlike_16k):
    rows = []
    for i, text in enumerate(("hello there", "good morning to you")):
        sf.write(tmp_path / f"utt{i}.wav", speechlike_16k[i * 16000:(i + 2) * 16000], 16000)
        rows.append(json.dumps({"audio": f"utt{i}.wav", "text": text}))
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "compare.json"

    report = run(out, convrnnt_model_and_bundle[1], lstm=tiny_bundle, manifest=manifest, positions_s=(1, 2))

    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(json.dumps(report))
    assert out.with_suffix(".png").stat().st_size > 0
    assert report["schema"] == SCHEMA and report["utterances"] == 2 and report["words"] == 6
    for name in ("lstm_transducer", "convrnnt"):
        model = report["models"][name]
        assert model["wer"] >= 0 and model["ci95"][0] <= model["wer"] <= model["ci95"][1]
        assert model["parameters"] > 0 and model["macs_per_second"] > 0 and model["rtf"] > 0
    difference = report["wer_difference_convrnnt_minus_lstm"]
    assert difference["ci95"][0] <= difference["difference"] <= difference["ci95"][1]
    cost = report["per_frame_cost"]["positions"]
    assert set(cost) == {"1", "2"}
    assert all(c["streamed_s_per_frame"] > 0 and c["naive_s_per_frame"] > 0 for c in cost.values())
