"""Cohort discovery: the report recomputes from its per-utterance file, the metadata split finder
and the shuffled control on constructed cases, and bad manifests are refused naming the line."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf

from framegate.benchmarks.fairness_cohorts import discover, metadata_partition, shuffled_control, weighted_silhouette
from framegate.export.corpus.manifest import ManifestError, speech_rows

WORDS = "the cat sat on a warm mat and looked at the quiet garden".split()


@pytest.fixture(scope="module")
def voices_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic 'voices' (pitch and brightness differ), three 1.2 s utterances each, and a noise segment."""
    root = tmp_path_factory.mktemp("voices")
    (root / "audio").mkdir()
    rng = np.random.default_rng(5)
    t = np.arange(int(1.2 * 16000)) / 16000
    rows = []
    for v in range(6):
        f0, tilt = 90 + 35 * v, 0.4 + 0.25 * v
        for u in range(3):
            glide = f0 * (1 + 0.1 * np.sin(2 * np.pi * (0.5 + u) * t))
            phase = 2 * np.pi * np.cumsum(glide) / 16000
            audio = sum(np.sin(k * phase) * tilt ** k for k in range(1, 9)) * 0.2
            name = f"audio/v{v}_{u}.wav"
            sf.write(root / name, (audio + 0.01 * rng.standard_normal(len(t))).astype(np.float32), 16000)
            rows.append({"audio": name, "text": " ".join(WORDS[u + v:u + v + 4]), "speaker": f"voice{v}",
                         "synthesizer": "espeak-ng" if v < 3 else "mbrola", "accent": ["us", "gb", "scottish"][v % 3],
                         "gender": "female" if v % 2 else "male", "duration_s": 1.2, "family": f"f{v}"})
    sf.write(root / "audio/noise.wav", (0.01 * rng.standard_normal(8000)).astype(np.float32), 16000)
    rows.append({"audio": "audio/noise.wav", "text": "", "speaker": "", "synthesizer": "", "accent": "",
                 "gender": "", "duration_s": 0.5})
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "test.jsonl"


def test_report_recomputes_from_its_per_utterance_results(voices_manifest, tiny_bundle, tiny_embedder, tmp_path):
    from framegate.benchmarks.fairness_cohorts import run

    report = run(tiny_bundle, tiny_embedder, voices_manifest, tmp_path / "cohorts.json", max_k=4, repeats=5)
    on_disk = json.loads((tmp_path / "cohorts.json").read_text())
    assert on_disk["schema"] == report["schema"] and (tmp_path / "cohorts.png").stat().st_size > 0
    for key in ("schema", "cohorts", "wer_gap", "bottom_share", "metadata_partition", "shuffled_control",
                "per_utterance"):
        assert key in on_disk
    assert set(on_disk["cohorts"][0]) == {"id", "wer", "speakers", "n_speakers", "n_utterances"}
    assert {"attribute", "wer_gap", "bottom_share"} <= set(on_disk["metadata_partition"])
    assert {"wer_gap", "bottom_share"} <= set(on_disk["shuffled_control"])

    utts = [json.loads(line) for line in Path(on_disk["per_utterance"]).read_text().splitlines()]
    assert len(utts) == 18 and on_disk["skipped_non_speech"] == 1
    for u in utts:  # each utterance's errors are the edit distance of its own ref and hyp
        out = jiwer.process_words(u["ref"], u["hyp"]) if u["hyp"].strip() else None
        expected = (out.substitutions + out.deletions + out.insertions) if out else len(u["ref"].split())
        assert (u["errors"], u["words"]) == (expected, len(u["ref"].split()))
    overall = sum(u["errors"] for u in utts) / sum(u["words"] for u in utts)
    assert on_disk["wer"] == pytest.approx(overall)
    by_cohort = defaultdict(list)
    for u in utts:
        by_cohort[u["cohort"]].append(u)
    recomputed = [{"id": c, "wer": sum(u["errors"] for u in us) / sum(u["words"] for u in us),
                   "speakers": sorted({u["speaker"] for u in us}), "n_speakers": len({u["speaker"] for u in us}),
                   "n_utterances": len(us)} for c, us in sorted(by_cohort.items())]
    assert [c["id"] for c in on_disk["cohorts"]] == [c["id"] for c in recomputed]
    for mine, theirs in zip(recomputed, on_disk["cohorts"]):
        assert mine == {**theirs, "wer": pytest.approx(theirs["wer"])}
    assert [c["wer"] for c in recomputed] == sorted((c["wer"] for c in recomputed), reverse=True)
    assert on_disk["wer_gap"] == pytest.approx(recomputed[0]["wer"] / overall - 1)
    assert on_disk["bottom_share"] == pytest.approx(recomputed[0]["n_speakers"] / 6)
    md = on_disk["metadata_partition"]
    inside = [u for u in utts if u[md["attribute"]] in md["values"]]
    assert md["wer_gap"] == pytest.approx(sum(u["errors"] for u in inside) / sum(u["words"] for u in inside) / overall - 1)
    assert md["bottom_share"] == pytest.approx(len({u["speaker"] for u in inside}) / 6)
    speakers = [json.loads(line) for line in Path(on_disk["speakers_file"]).read_text().splitlines()]
    assert {s["speaker"]: s["cohort"] for s in speakers} == {u["speaker"]: u["cohort"] for u in utts}


def _constructed() -> list[dict]:
    """Ten voices, one 10-word utterance each; voices 0-1 (accent a) and 0-4 (female) err most."""
    errors = [6, 6, 5, 5, 5, 0, 0, 0, 0, 0]
    return [{"speaker": f"s{i}", "accent": "a" if i < 2 else "b", "gender": "female" if i < 5 else "male",
             "synthesizer": "same", "errors": e, "words": 10} for i, e in enumerate(errors)]


def test_metadata_split_finds_the_best_split_at_the_matched_share():
    per_utt = _constructed()
    narrow = metadata_partition(per_utt, target_share=0.2)
    assert (narrow["attribute"], narrow["values"], narrow["matched"]) == ("accent", ["a"], True)
    assert narrow["wer_gap"] == pytest.approx(0.6 / 0.27 - 1)
    assert narrow["bottom_share"] == pytest.approx(0.2)
    wide = metadata_partition(per_utt, target_share=0.5)
    assert (wide["attribute"], wide["values"], wide["matched"]) == ("gender", ["female"], True)
    assert wide["wer_difference"] == pytest.approx(0.54)


def test_metadata_split_without_a_matching_share_says_so():
    result = metadata_partition(_constructed(), target_share=0.35)
    assert result["matched"] is False
    assert result["attribute"] == "gender"  # as near as accent's 0.2, with the larger difference


def test_clusters_that_follow_the_errors_beat_the_shuffled_control():
    per_utt = _constructed()
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    group = [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    emb = centres[group] + 0.01 * rng.standard_normal((10, 3))
    cohorts = discover([u["speaker"] for u in per_utt], emb / np.linalg.norm(emb, axis=1, keepdims=True),
                       np.ones(10), None, 4, 0)
    assert cohorts.k == 3 and len(set(cohorts.labels[:2])) == 1
    control = shuffled_control(per_utt, cohorts, target_share=0.2, repeats=30, seed=0)
    assert control["matched_repeats"] > 0
    assert control["wer_gap"] < 0.6 / 0.27 - 1  # chance rarely isolates exactly the two worst voices


def test_weighted_silhouette_is_the_silhouette_of_the_repeated_points():
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(1)
    emb = rng.standard_normal((12, 4))
    weights = rng.integers(1, 5, 12).astype(float)
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 0, 1])
    labels[7] = 3  # a single speaker alone in a cohort
    repeated = np.repeat(np.arange(12), weights.astype(int))
    assert weighted_silhouette(emb, weights, labels) == pytest.approx(silhouette_score(emb[repeated], labels[repeated]))


def test_a_voice_carrying_most_of_the_speech_gets_its_own_cohort_among_many_light_variants():
    rng = np.random.default_rng(2)
    light = rng.standard_normal((40, 8)) * 0.5 + np.eye(8)[0]  # 40 spread-out variants, 2 utterances each
    heavy = np.stack([np.eye(8)[1] + 0.05 * rng.standard_normal(8), np.eye(8)[2] + 0.05 * rng.standard_normal(8)])
    emb = np.vstack([light, heavy])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    weights = np.array([2.0] * 40 + [60.0, 60.0])
    speakers = [f"s{i:02d}" for i in range(42)]
    weighted = discover(speakers, emb, weights, k=3, max_k=3, seed=0).labels
    assert weighted[40] != weighted[41]
    unweighted = discover(speakers, emb, np.ones(42), k=3, max_k=3, seed=0).labels
    assert unweighted[40] == unweighted[41]  # the variants' spread takes the centroids


GOOD = {"audio": "a.wav", "text": "hello there", "speaker": "v1", "synthesizer": "espeak-ng", "accent": "us",
        "gender": "male", "duration_s": 1.0}


@pytest.mark.parametrize("bad_line, message", [
    ({k: v for k, v in GOOD.items() if k != "accent"}, "missing required key(s) accent"),
    ({**GOOD, "text": "  "}, "'text' is empty for speaker 'v1'"),
    ({**GOOD, "audio": "gone.wav"}, "audio file"),
    ({**GOOD, "duration_s": "long"}, "'duration_s' must be a number"),
    ("not json", "not valid JSON"),
    ([1, 2], "must be a JSON object"),
])
def test_bad_manifest_line_is_refused_naming_the_line(tmp_path, bad_line, message):
    sf.write(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    bad = bad_line if isinstance(bad_line, str) else json.dumps(bad_line)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(GOOD) + "\n\n" + bad + "\n")
    with pytest.raises(ManifestError) as info:
        speech_rows(manifest)
    assert str(info.value).startswith(f"{manifest}:3: ") and message in str(info.value)


def test_cli_prints_the_bad_line_and_exits_2(tmp_path, tiny_bundle, tiny_embedder):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({**GOOD, "audio": "gone.wav"}) + "\n")
    proc = subprocess.run([sys.executable, "-m", "framegate.engine.cli", "fairness", "cohorts", "--model",
                           str(tiny_bundle), "--embedder", str(tiny_embedder), "--manifest", str(manifest),
                           "--json", str(tmp_path / "out.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"framegate: error: {manifest}:1: audio file '{tmp_path / 'gone.wav'}' does not exist"]


def test_eer_report_per_accent_group_and_comparison(voices_manifest, tiny_embedder, tmp_path):
    import torch

    from framegate.benchmarks.speaker_eer import parse_named, run
    from framegate.export.models.speaker_embedding import SpeakerEmbedding, SpeakerEmbeddingConfig
    from framegate.export.speaker_export import export_embedding_bundle

    torch.manual_seed(7)
    cfg = SpeakerEmbeddingConfig(channels=16, pooled_channels=24, embedding_dim=8)
    torch.save({"model": SpeakerEmbedding(cfg).state_dict(), "model_config": cfg.to_dict(),
                "model_type": "speaker_embedding"}, tmp_path / "other.pt")
    other = export_embedding_bundle(tmp_path / "other.pt", tmp_path / "other")
    report = run(parse_named([f"plain={tiny_embedder}", f"reweighted={other}"]), voices_manifest,
                 tmp_path / "eer.json")
    assert (tmp_path / "eer.png").stat().st_size > 0
    assert report["groups"] == {"gb": 2, "scottish": 2, "us": 2}
    for name, r in report["embedders"].items():
        assert (r["target_trials"], r["nontarget_trials"]) == (6 * 3, 18 * 17 // 2 - 18)
        eers = {g: e["eer"] for g, e in r["per_group"].items()}
        assert all(e["target_trials"] == 6 and e["nontarget_trials"] == 9 for e in r["per_group"].values())
        assert r["accent_gap"] == pytest.approx(max(eers.values()) - min(eers.values()))
        assert eers[r["worst_group"]] == max(eers.values())
    plain, reweighted = report["embedders"]["plain"], report["embedders"]["reweighted"]
    comparison = report["comparisons"]["reweighted"]
    assert comparison["accent_gap_difference"] == pytest.approx(reweighted["accent_gap"] - plain["accent_gap"])
    assert comparison["eer_difference"] == pytest.approx(reweighted["eer"] - plain["eer"])
