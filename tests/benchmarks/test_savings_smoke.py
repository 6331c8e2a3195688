"""`framegate bench savings` end to end on tiny random bundles and three short utterances."""
from __future__ import annotations

import json

import soundfile as sf

from framegate.engine.cli import main

KEYS = {"name", "lambda", "nonspeech_lambda", "threshold", "wer", "wer_dense", "wer_ci95", "mac_fraction", "time_ratio_vs_dense",
        "time_ratio_vs_ort_dense", "silence_mac_fraction", "noise_mac_fraction", "insertions_per_hour"}


def test_bench_savings_writes_every_key_and_more_threshold_means_less_compute(tiny_gated, speechlike_16k,
                                                                              tmp_path, capsys):
    rows = []
    for i, (start, end) in enumerate([(0.0, 1.5), (1.5, 3.2), (3.2, 5.0)]):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, speechlike_16k[int(start * 16000):int(end * 16000)], 16000)
        rows.append({"audio": path.name, "text": "a b c d" if i else "e f", "family": "x"})
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "savings.json"
    code = main(["bench", "savings", "--model", str(tiny_gated["feature"][1]),
                 "--compare", str(tiny_gated["block"][1]), str(tiny_gated["none"][1]),
                 "--manifest", str(manifest), "--thresholds", "0", "0.5", "1",
                 "--silence-s", "2", "--noise-s", "2", "--rounds", "1", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    assert report["schema"] == "framegate.bench.savings/1" and report["words"] == 10
    points = {p["name"]: p for p in report["points"]}
    assert len(points) == 4 and all(KEYS <= p.keys() for p in points.values())
    every, half, none_on = (points[f"bundle_feature@{t}"] for t in ("0", "0.5", "1"))
    # All parts on at threshold 0 costs the dense MACs plus the arbitrator; nothing on at 1 leaves
    # the front end, arbitrator and output projection; in between, in between.
    assert every["mac_fraction"] > 1.0 > half["mac_fraction"] > none_on["mac_fraction"] > 0
    assert none_on["silence_mac_fraction"] < half["silence_mac_fraction"] <= every["silence_mac_fraction"]
    for p in points.values():
        lo, hi = p["wer_ci95"]
        assert lo <= p["wer"] <= hi and p["time_ratio_vs_dense"] > 0 and p["time_ratio_vs_ort_dense"] > 0
        assert p["insertions_per_hour"] >= 0 and p["wer_dense"] == report["dense_reference"]["wer"]
    assert "bundle_block" in points and points["bundle_block"]["threshold"] == 0.5


def test_points_are_named_for_their_runs_and_a_shared_name_is_refused(tiny_gated, tmp_path, capsys):
    import shutil

    from framegate.benchmarks.savings import _label

    assert _label(tmp_path / "runs" / "gated_feature" / "bundle") == "gated_feature"
    assert _label(tmp_path / "bundle_block") == "bundle_block"
    twins = [shutil.copytree(tiny_gated["block"][1], tmp_path / run / "bundle_block") for run in ("x", "y")]
    manifest = tmp_path / "test.jsonl"
    manifest.write_text(json.dumps({"audio": "unused.wav", "text": "a"}) + "\n")
    code = main(["bench", "savings", "--model", str(tiny_gated["feature"][1]), "--compare", *map(str, twins),
                 "--dense", str(tiny_gated["none"][1]), "--manifest", str(manifest), "--json",
                 str(tmp_path / "s.json")])
    assert code == 2 and "share a name" in capsys.readouterr().err
