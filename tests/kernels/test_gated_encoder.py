"""The C++ gated encoder against the torch training graph, the numba reference and bad input."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framegate.export.gated_transformer_export import gated_tensors, kernel_config
from framegate.export.onnx_export import load_model
from framegate.kernels.gated_encoder import GatedEncoder, tensor_shapes
from framegate.kernels.reference import gated_encoder_reference

THRESHOLD_MARGIN = 1e-4


@pytest.fixture(scope="module")
def models(tiny_gated):
    return {arb: load_model(checkpoint) for arb, (checkpoint, _) in tiny_gated.items()}


def _frames(model, seed: int, fbank_frames: int = 8 * 15 + 3) -> np.ndarray:
    import torch

    rng = np.random.default_rng(seed)
    fbank = rng.normal(-9.0, 4.0, size=(1, fbank_frames, 80)).astype(np.float32)
    with torch.no_grad():
        return model.encoder.frontend(torch.from_numpy(fbank))[0].numpy()


def _torch_forward(model, frames: np.ndarray, threshold: float, gates: np.ndarray | None = None):
    import torch

    model.encoder.threshold = threshold
    with torch.no_grad():
        forced = None if gates is None else torch.from_numpy(gates.astype(np.float32))[None]
        out = model.encoder.blocks_forward(torch.from_numpy(frames)[None], forced)[0].numpy()
    return out, model.encoder.last_probs[0].numpy(), model.encoder.last_gates[0].numpy().astype(np.uint8)


def _stream(encoder: GatedEncoder, frames: np.ndarray, splits: list[int], **kwargs):
    state = encoder.initial_state()
    chunks, at = [], 0
    for size in splits:
        forced = kwargs.get("gates")
        extra = dict(kwargs, gates=None if forced is None else forced[at:at + size])
        chunks.append(encoder.forward(frames[at:at + size], state, **extra))
        at += size
    return chunks


def _random_splits(n: int, rng: np.random.Generator) -> list[int]:
    splits = []
    while n:
        size = int(rng.integers(1, min(n, 20) + 1))
        splits.append(size)
        n -= size
    return splits


@pytest.mark.parametrize("arbitrator", ["feature", "block"])
@pytest.mark.parametrize("seed", range(3))
def test_gated_output_equals_torch_gated_forward_for_random_chunkings(models, arbitrator, seed):
    model = models[arbitrator]
    encoder = GatedEncoder(kernel_config(model), gated_tensors(model.encoder))
    frames = _frames(model, seed)
    rng = np.random.default_rng(seed)
    _, probs_at_half, _ = _torch_forward(model, frames, 0.5)
    threshold = float(np.quantile(probs_at_half, rng.uniform(0.3, 0.7)))  # mixes on and off decisions
    chunks = _stream(encoder, frames, _random_splits(len(frames), rng), threshold=threshold)
    gates = np.concatenate([c.gates for c in chunks])
    probs = np.concatenate([c.probs for c in chunks])
    _, torch_probs, torch_gates = _torch_forward(model, frames, threshold)
    assert 0 < gates.mean() < 1, "the tiny arbitrators should switch parts both on and off"

    # Decisions agree except where torch's probability is within the margin of the threshold.
    # (With the block arbitrator a flipped decision changes later inputs, so compare under torch's.)
    near = np.abs(torch_probs - threshold) < THRESHOLD_MARGIN
    if arbitrator == "feature":
        np.testing.assert_allclose(probs, torch_probs, atol=1e-5)
        assert np.array_equal(gates[~near], torch_gates[~near])
    forced = _stream(encoder, frames, _random_splits(len(frames), rng), threshold=threshold, mode="forced",
                     gates=torch_gates)
    np.testing.assert_allclose(np.concatenate([c.probs for c in forced]), torch_probs, atol=1e-5)
    assert np.array_equal((torch_probs > threshold)[~near], torch_gates.astype(bool)[~near])
    torch_out, _, _ = _torch_forward(model, frames, threshold, gates=torch_gates)
    np.testing.assert_allclose(np.concatenate([c.out for c in forced]), torch_out, atol=1e-4, rtol=0)


@pytest.mark.parametrize("arbitrator", ["feature", "block", "none"])
def test_dense_mode_equals_torch_dense_forward(models, arbitrator):
    model = models[arbitrator]
    encoder = GatedEncoder(kernel_config(model), gated_tensors(model.encoder))
    frames = _frames(model, 11)
    ones = np.ones((len(frames), 2 * model.cfg.num_layers), dtype=np.uint8)
    expected, _, _ = _torch_forward(model, frames, 0.5, gates=ones)
    chunks = _stream(encoder, frames, [2] * (len(frames) // 2) + [len(frames) % 2] * (len(frames) % 2), mode="dense")
    np.testing.assert_allclose(np.concatenate([c.out for c in chunks]), expected, atol=1e-4, rtol=0)
    assert all(c.gates.all() for c in chunks)


@pytest.mark.parametrize("arbitrator", ["feature", "block"])
def test_cpp_equals_the_numba_reference_with_the_same_gates(models, arbitrator):
    model = models[arbitrator]
    config, tensors = kernel_config(model), gated_tensors(model.encoder)
    encoder = GatedEncoder(config, tensors)
    frames = _frames(model, 5)
    gates = (np.random.default_rng(5).random((len(frames), config.num_gates)) < 0.4).astype(np.uint8)
    chunks = _stream(encoder, frames, [3, 1, 16, 5, len(frames) - 25], mode="forced", gates=gates)
    expected = gated_encoder_reference(frames, gates, tensors, config.num_layers, config.num_heads,
                                       config.left_context)
    np.testing.assert_allclose(np.concatenate([c.out for c in chunks]), expected, atol=1e-4, rtol=0)


def test_skipped_parts_do_no_gemm_work(models):
    model = models["feature"]
    config = kernel_config(model)
    encoder = GatedEncoder(config, gated_tensors(model.encoder))
    frames = _frames(model, 3)
    gates = (np.random.default_rng(3).random((len(frames), config.num_gates)) < 0.3).astype(np.uint8)
    gates[:10] = 0  # a stretch where nothing runs
    chunks = _stream(encoder, frames, [4] * (len(frames) // 4) + [len(frames) % 4], mode="forced", gates=gates)
    for chunk, start in zip(chunks, range(0, len(frames), 4)):
        g = gates[start:start + len(chunk.out)]
        assert chunk.attention_rows == [int(g[:, 2 * l].sum()) for l in range(config.num_layers)]
        assert chunk.ff_rows == [int(g[:, 2 * l + 1].sum()) for l in range(config.num_layers)]
    d, f = config.d_model, config.ff_dim
    first = chunks[0]  # all gates off: only the arbitrator and the output projection ran
    arbitrator = 4 * (config.arbitrator_kernel * d * config.arbitrator_hidden + config.arbitrator_hidden * config.num_gates)
    assert first.macs == arbitrator + 4 * d * config.joiner_dim
    dense = _stream(encoder, frames, [len(frames)], mode="dense")[0]
    assert sum(c.macs for c in chunks) < 0.6 * dense.macs
    assert dense.ff_rows == [len(frames)] * config.num_layers and dense.macs > 2 * config.num_layers * len(frames) * d * f


@pytest.fixture(scope="module")
def feature_encoder(models):
    model = models["feature"]
    return GatedEncoder(kernel_config(model), gated_tensors(model.encoder)), kernel_config(model)


@settings(max_examples=40, deadline=None)
@given(threshold=st.one_of(st.floats(allow_nan=True), st.sampled_from([-0.01, 1.01, float("nan")]),
                           st.text(max_size=3), st.none(), st.booleans()))
def test_bad_thresholds_are_refused(feature_encoder, threshold):
    encoder, config = feature_encoder
    frames = np.zeros((2, config.d_model), dtype=np.float32)
    valid = isinstance(threshold, float) and 0.0 <= threshold <= 1.0
    if valid:
        encoder.forward(frames, encoder.initial_state(), threshold=threshold)
    else:
        with pytest.raises(ValueError, match="threshold"):
            encoder.forward(frames, encoder.initial_state(), threshold=threshold)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(0, 5), cols=st.integers(0, 20), dtype=st.sampled_from([np.float32, np.float64, np.int16]),
       transpose=st.booleans())
def test_bad_frames_are_refused_with_the_expected_shape_named(feature_encoder, rows, cols, dtype, transpose):
    encoder, config = feature_encoder
    frames = np.zeros((rows, cols), dtype=dtype)
    frames = frames.T if transpose else frames
    ok = frames.dtype == np.float32 and frames.shape[1:] == (config.d_model,)
    state = encoder.initial_state()
    if ok:
        assert encoder.forward(frames, state).out.shape == (frames.shape[0], config.joiner_dim)
    else:
        with pytest.raises(ValueError, match="frames must be a C-contiguous float32 array of shape"):
            encoder.forward(frames, state)
        assert state.frames == 0


def test_non_finite_frames_leave_the_state_untouched(feature_encoder):
    encoder, config = feature_encoder
    state = encoder.initial_state()
    frames = np.zeros((3, config.d_model), dtype=np.float32)
    frames[1, 2] = np.inf
    with pytest.raises(ValueError, match="frame 1 holds a non-finite value"):
        encoder.forward(frames, state)
    assert state.frames == 0


def test_forced_mode_needs_gates_of_the_right_shape_and_other_modes_refuse_them(feature_encoder):
    encoder, config = feature_encoder
    frames = np.zeros((3, config.d_model), dtype=np.float32)
    with pytest.raises(ValueError, match="forced mode needs gates"):
        encoder.forward(frames, encoder.initial_state(), mode="forced")
    with pytest.raises(ValueError, match=r"gates must be a C-contiguous uint8 array of shape \(3, 4\)"):
        encoder.forward(frames, encoder.initial_state(), mode="forced", gates=np.ones((3, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="only read in forced mode"):
        encoder.forward(frames, encoder.initial_state(), gates=np.ones((3, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="mode must be one of"):
        encoder.forward(frames, encoder.initial_state(), mode="sparse")


def test_missing_unexpected_or_misshapen_weights_are_named(models):
    model = models["feature"]
    config, tensors = kernel_config(model), gated_tensors(model.encoder)
    assert set(tensors) == set(tensor_shapes(config))
    with pytest.raises(ValueError, match="'block1.ff2_bias' is missing"):
        GatedEncoder(config, {k: v for k, v in tensors.items() if k != "block1.ff2_bias"})
    with pytest.raises(ValueError, match="unexpected tensor 'extra'"):
        GatedEncoder(config, {**tensors, "extra": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match=r"tensor 'block0.qkv_weight' must be .* shape \(48, 16\)"):
        GatedEncoder(config, {**tensors, "block0.qkv_weight": np.zeros((16, 48), np.float32)})
    bad = dict(tensors)
    bad["out_bias"] = bad["out_bias"].copy()
    bad["out_bias"][0] = np.nan
    with pytest.raises(ValueError, match="out_bias: holds a non-finite value"):
        GatedEncoder(config, bad)


def test_a_state_of_another_encoder_is_refused(models):
    a, b = models["feature"], models["none"]
    enc_a = GatedEncoder(kernel_config(a), gated_tensors(a.encoder))
    enc_b = GatedEncoder(kernel_config(b), gated_tensors(b.encoder))
    with pytest.raises(ValueError, match="state does not belong"):
        enc_a.forward(np.zeros((1, 16), np.float32), enc_b.initial_state())
