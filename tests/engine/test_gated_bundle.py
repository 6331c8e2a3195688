"""A gated Transformer bundle end to end: export, load, stream, compute dial, telemetry, refusals."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from framegate.engine.bundle import Bundle
from framegate.engine.errors import BundleError, ComputeSettingError
from framegate.engine.offline import encoder_output, padded_features, recognize
from framegate.engine.recognizer import Recognizer


def test_bundle_json_records_rule_macs_denominator_and_tensors(tiny_gated):
    manifest = json.loads((tiny_gated["feature"][1] / "bundle.json").read_text())
    gating = manifest["gating"]
    assert manifest["model_type"] == "gated_transformer" and gating["rule"] == "full-skip"
    macs = gating["part_macs_per_frame"]
    d, ff, w, layers = 16, 32, 5, 2
    assert macs["attention_fixed"] == 4 * d * d and macs["feed_forward"] == 2 * d * ff
    assert gating["mac_denominator_per_frame"] == (macs["frontend"] + macs["arbitrator"] + macs["output"]
                                                   + layers * (4 * d * d + 2 * d * (w + 1) + 2 * d * ff))
    names = {t["name"] for t in gating["tensors"]}
    assert "gated.feature_arbitrator.conv_weight" in names and "gated.block1.qkv_weight" in names
    conv = next(t for t in gating["tensors"] if t["name"] == "gated.feature_arbitrator.conv_weight")
    assert conv["shape"] == [8, 3, 16] and conv["layout"] == "row-major"


@pytest.mark.parametrize("arbitrator", ["feature", "block", "none"])
def test_onnx_frontend_and_cpp_blocks_equal_the_torch_forward(tiny_gated, speechlike_16k, arbitrator):
    import torch

    from framegate.export.onnx_export import load_model

    checkpoint, bundle_dir = tiny_gated[arbitrator]
    model = load_model(checkpoint)
    bundle = Bundle.load(bundle_dir)
    features = padded_features(bundle, speechlike_16k)
    with torch.no_grad():
        frames = model.encoder.frontend(torch.from_numpy(features)[None])
        expected = model.encoder.blocks_forward(frames)[0].numpy()
        probs = model.encoder.last_probs[0].numpy()
    got = encoder_output(bundle, speechlike_16k)
    if np.abs(probs - 0.5).min() > 1e-4:  # no decision on the edge: the gated runs must agree
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert got.shape == expected.shape


@pytest.mark.parametrize("seed", range(3))
def test_streaming_equals_offline_for_random_blocks(tiny_gated, speechlike_16k, stream_in_random_blocks, seed):
    recognizer = Recognizer(tiny_gated["feature"][1], endpoint=None)
    stream = stream_in_random_blocks(recognizer, speechlike_16k, seed)
    offline = recognize(recognizer.bundle, speechlike_16k)
    assert offline.tokens, "the tiny model should emit something"
    assert [recognizer.bundle.tokens[t] for t in offline.tokens] == stream.result.tokens
    assert 0.0 < stream.compute_telemetry.parts_on < 1.0


def _feed_until_chunks(recognizer, stream, audio, chunks: int, pos: int) -> int:
    while stream.compute_telemetry.chunks < chunks:
        stream.accept_waveform(16000, audio[pos:pos + 320])
        recognizer.decode(stream)
        pos += 320
    return pos


def test_threshold_change_takes_effect_on_that_streams_next_chunk_only(tiny_gated, speechlike_16k):
    recognizer = Recognizer(tiny_gated["feature"][1], endpoint=None, compute_threshold=0.5)
    changed, untouched = recognizer.create_stream(), recognizer.create_stream()
    pos = _feed_until_chunks(recognizer, changed, speechlike_16k, 10, 0)
    _feed_until_chunks(recognizer, untouched, speechlike_16k, 10, 0)
    before = changed.compute_telemetry.chunks
    changed.set_compute_threshold(0.95)
    assert changed.compute_threshold == 0.95 and untouched.compute_threshold == 0.5
    _feed_until_chunks(recognizer, changed, speechlike_16k, before + 10, pos)
    _feed_until_chunks(recognizer, untouched, speechlike_16k, before + 10, pos)

    history_changed = list(changed.compute_telemetry.history)
    history_untouched = list(untouched.compute_telemetry.history)
    assert [c.threshold for c in history_changed[:before]] == [0.5] * before
    assert all(c.threshold == 0.95 for c in history_changed[before:])
    assert all(c.threshold == 0.5 for c in history_untouched)
    assert history_changed[:before] == history_untouched[:before]  # same audio, same decisions until the change
    after_changed = sum(c.macs for c in history_changed[before:])
    after_untouched = sum(c.macs for c in history_untouched[before:before + len(history_changed) - before])
    assert after_changed < after_untouched


def test_telemetry_reports_per_layer_per_chunk_fractions(tiny_gated, speechlike_16k):
    recognizer = Recognizer(tiny_gated["block"][1], endpoint=None)
    stream = recognizer.create_stream()
    stream.accept_waveform(16000, speechlike_16k[:16000])
    recognizer.decode(stream)
    telemetry = stream.compute_telemetry
    last = telemetry.last
    assert len(last.attention_on) == len(last.ff_on) == 2 and last.frames == 2
    assert all(v in (0.0, 0.5, 1.0) for v in last.attention_on + last.ff_on)
    per_layer = telemetry.per_layer()
    assert len(per_layer) == 2 and all(0 <= p["attention"] <= 1 for p in per_layer)
    assert 0 < telemetry.mac_fraction < 1.01


def test_dense_bundle_runs_everything(tiny_gated, speechlike_16k):
    recognizer = Recognizer(tiny_gated["none"][1], endpoint=None)
    stream = recognizer.create_stream()
    stream.accept_waveform(16000, speechlike_16k[:16000])
    recognizer.decode(stream)
    assert stream.compute_telemetry.parts_on == 1.0


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan"), "0.5", True])
def test_bad_thresholds_raise_compute_setting_errors(tiny_gated, threshold):
    with pytest.raises(ComputeSettingError, match="threshold"):
        Recognizer(tiny_gated["feature"][1], compute_threshold=threshold)
    stream = Recognizer(tiny_gated["feature"][1]).create_stream()
    with pytest.raises(ComputeSettingError, match="threshold"):
        stream.set_compute_threshold(threshold)
    assert stream.compute_threshold == 0.5


def test_a_threshold_for_a_bundle_without_gates_is_refused(tiny_bundle):
    with pytest.raises(ComputeSettingError, match="gated bundles"):
        Recognizer(tiny_bundle, compute_threshold=0.5)
    stream = Recognizer(tiny_bundle).create_stream()
    with pytest.raises(ComputeSettingError, match="gated bundle"):
        stream.set_compute_threshold(0.5)
    assert stream.compute_telemetry is None


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["gating"].update(rule="query-skip"), "gating.rule"),
    (lambda m: m["gating"].update(default_threshold=2), "default_threshold"),
    (lambda m: m["gating"]["tensors"][0].update(shape=[1]), "gated_weights.onnx: tensor"),
    (lambda m: m["encoder"].update(left_context=7), "states"),
])
def test_bundle_whose_gating_record_disagrees_is_refused(tiny_gated, tmp_path, edit, message):
    broken = Path(shutil.copytree(tiny_gated["feature"][1], tmp_path / "broken"))
    manifest = json.loads((broken / "bundle.json").read_text())
    edit(manifest)
    (broken / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        Bundle.load(broken)


def test_gated_meter_reads_the_recent_mac_fraction_and_follows_the_dial(tiny_gated, speechlike_16k):
    from framegate.engine.compute_telemetry import GatedComputeMeter

    recognizer = Recognizer(tiny_gated["feature"][1], endpoint=None, compute_threshold=0.0)
    stream = recognizer.create_stream()
    meter = GatedComputeMeter(stream.compute_telemetry, window_chunks=5)
    assert meter.label == "enc" and meter.read() == 0.0
    pos = _feed_until_chunks(recognizer, stream, speechlike_16k, 5, 0)
    everything = meter.read()
    stream.set_compute_threshold(1.0)
    _feed_until_chunks(recognizer, stream, speechlike_16k, 10, pos)
    nothing = meter.read()
    recent = list(stream.compute_telemetry.history)[-5:]
    assert nothing == pytest.approx(sum(c.macs for c in recent) / sum(c.dense_macs for c in recent))
    # All on: about the dense MACs (the first frames have fewer keys); all off leaves the ungated
    # front end, arbitrator and output projection (large in this tiny model).
    assert everything > 0.95 and 0.0 < nothing < everything - 0.1
