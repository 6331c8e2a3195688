"""GlobalCnn: the C++ streaming kernel against the numba reference and the torch causal forward."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from framegate.export.convrnnt_export import global_cnn_tensors
from framegate.export.models.convrnnt import ConvRnntConfig, GlobalCnn as TorchGlobalCnn
from framegate.kernels import GlobalCnn, GlobalCnnConfig, _native
from framegate.kernels.global_cnn_state import TENSOR_KEYS, tensor_shapes
from framegate.kernels.reference import reference_global_cnn


def torch_global_cnn(config: GlobalCnnConfig, seed: int) -> TorchGlobalCnn:
    torch.manual_seed(seed)
    cfg = ConvRnntConfig(global_channels=config.channels, global_hidden=config.hidden, se_hidden=config.se_hidden,
                         global_blocks=config.num_blocks, squeeze=config.squeeze, ema_decay=config.ema_decay)
    module = TorchGlobalCnn(cfg).eval()
    with torch.no_grad():  # LayerNorm starts at (1, 0): give it values, so a swapped layout shows
        for block in module.blocks:
            block.norm.weight.uniform_(0.5, 1.5)
            block.norm.bias.uniform_(-0.3, 0.3)
    return module


def blocks_of(module: TorchGlobalCnn, config: GlobalCnnConfig) -> list[dict[str, np.ndarray]]:
    named = global_cnn_tensors(module)
    return [{k: named[f"global_cnn.block{b}.{k}"] for k in TENSOR_KEYS} for b in range(config.num_blocks)]


def stream(cnn: GlobalCnn, frames: np.ndarray, sizes: list[int]) -> np.ndarray:
    state = cnn.initial_state()
    outputs, pos = [], 0
    for size in sizes:
        outputs.append(cnn.forward(frames[pos:pos + size], state))
        pos += size
    assert state.frames == len(frames)
    return np.concatenate(outputs) if outputs else np.zeros((0, cnn.config.channels), np.float32)


def random_sizes(rng: np.random.Generator, n: int, largest: int = 200) -> list[int]:
    sizes, left = [], n
    while left:
        size = int(min(left, rng.integers(1, largest + 1)))
        sizes.append(size)
        left -= size
    return sizes


@pytest.mark.parametrize("squeeze", ["cumulative", "ema"])
@pytest.mark.parametrize("seed", range(6))
def test_streamed_output_equals_numba_and_torch_full_forward_for_random_chunkings(seed, squeeze):
    rng = np.random.default_rng(seed)
    config = GlobalCnnConfig(channels=int(rng.integers(2, 12)), hidden=int(rng.integers(2, 16)),
                             se_hidden=int(rng.integers(1, 5)), num_blocks=int(rng.integers(1, 7)),
                             squeeze=squeeze, ema_decay=0.95)
    module = torch_global_cnn(config, seed)
    cnn = GlobalCnn(config, blocks_of(module, config))
    frames = rng.normal(0.3, 1.0, size=(int(rng.integers(1, 700)), config.channels)).astype(np.float32)

    streamed = stream(cnn, frames, random_sizes(rng, len(frames)))

    with torch.no_grad():
        expected_torch = module(torch.from_numpy(frames)[None])[0].numpy()
    expected_numba = reference_global_cnn(frames, blocks_of(module, config), squeeze, 0.95, np.float32)
    np.testing.assert_allclose(streamed, expected_torch, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(streamed, expected_numba, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("squeeze", ["cumulative", "ema"])
def test_one_hour_stream_does_not_drift_from_float64_recomputation(squeeze):
    """90,000 frames = 1 hour at 25 frames/s, never reset; inputs with a large common offset
    make a float32 running sum lose digits, the kernel's float64 sums must not."""
    rng = np.random.default_rng(99)
    config = GlobalCnnConfig(channels=4, hidden=6, se_hidden=2, num_blocks=3, squeeze=squeeze, ema_decay=0.999)
    module = torch_global_cnn(config, 5)
    blocks = blocks_of(module, config)
    frames = (rng.normal(size=(90_000, 4)) + 20.0).astype(np.float32)

    streamed = stream(GlobalCnn(config, blocks), frames, random_sizes(rng, len(frames), largest=400))

    expected = reference_global_cnn(frames, blocks, squeeze, 0.999, np.float64)
    relative = np.abs(streamed - expected) / np.maximum(np.abs(expected), 1e-3)
    assert relative.max() < 1e-4, relative.max()


def test_reset_makes_the_next_utterance_independent_of_the_last():
    config = GlobalCnnConfig(channels=3, hidden=4, se_hidden=2, num_blocks=2)
    cnn = GlobalCnn(config, blocks_of(torch_global_cnn(config, 0), config))
    rng = np.random.default_rng(1)
    first, second = (rng.normal(size=(n, 3)).astype(np.float32) for n in (50, 30))
    state = cnn.initial_state()
    cnn.forward(first, state)
    cnn.reset(state)
    assert state.frames == 0
    np.testing.assert_array_equal(cnn.forward(second, state), cnn.forward(second, cnn.initial_state()))


# -- the binding refuses bad input with a Python exception, never a crash ---------------------

CONFIG = GlobalCnnConfig(channels=3, hidden=4, se_hidden=2, num_blocks=2)


@pytest.fixture(scope="module")
def native_cnn():
    blocks = blocks_of(torch_global_cnn(CONFIG, 0), CONFIG)
    return _native.GlobalCnn(CONFIG.to_native(), blocks), blocks


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=0, max_size=3),
       dtype=st.sampled_from([np.float32, np.float64, np.int32, np.float16]))
def test_binding_refuses_wrong_shapes_and_dtypes(native_cnn, shape, dtype):
    cnn, _ = native_cnn
    frames = np.zeros(shape, dtype=dtype)
    state = cnn.initial_state()
    if dtype == np.float32 and len(shape) == 2 and shape[1] == 3:
        assert cnn.forward(frames, state).shape == tuple(shape)
        assert state.frames == shape[0]
    else:
        with pytest.raises(ValueError, match=r"frames must be a C-contiguous float32 array of shape \(n, 3\)"):
            cnn.forward(frames, state)
        assert state.frames == 0


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 20), step=st.integers(2, 4))
def test_binding_refuses_non_contiguous_frames(native_cnn, n, step):
    cnn, _ = native_cnn
    frames = np.zeros((n * step, 3), np.float32)[::step]
    with pytest.raises(ValueError, match="non-contiguous"):
        cnn.forward(frames, cnn.initial_state())


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), data=st.data(), bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_binding_refuses_non_finite_frames_and_keeps_the_state(native_cnn, n, data, bad):
    cnn, _ = native_cnn
    frames = np.zeros((n, 3), np.float32)
    t, c = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, 2))
    frames[t, c] = bad
    state = cnn.initial_state()
    with pytest.raises(ValueError, match=f"frame {t}, channel {c} is not finite"):
        cnn.forward(frames, state)
    assert state.frames == 0


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(TENSOR_KEYS), block=st.integers(0, 1),
       fault=st.sampled_from(["shape", "dtype", "nan", "missing", "strided"]))
def test_binding_refuses_bad_weights_naming_the_tensor(native_cnn, key, block, fault):
    _, blocks = native_cnn
    broken = [dict(b) for b in blocks]
    array = broken[block][key]
    if fault == "shape":
        broken[block][key] = np.zeros(array.shape + (1,), np.float32)
    elif fault == "dtype":
        broken[block][key] = array.astype(np.float64)
    elif fault == "nan":
        broken[block][key] = np.full(array.shape, np.nan, np.float32)
    elif fault == "missing":
        del broken[block][key]
    else:
        broken[block][key] = np.repeat(array, 2, axis=-1)[..., ::2]
    with pytest.raises(ValueError, match=f"block {block} {key}"):
        _native.GlobalCnn(CONFIG.to_native(), broken)


def test_state_of_another_network_is_refused(native_cnn):
    cnn, _ = native_cnn
    other_config = GlobalCnnConfig(channels=3, hidden=4, se_hidden=2, num_blocks=3)
    other = _native.GlobalCnn(other_config.to_native(), blocks_of(torch_global_cnn(other_config, 1), other_config))
    with pytest.raises(ValueError, match="does not belong"):
        cnn.forward(np.zeros((1, 3), np.float32), other.initial_state())


@pytest.mark.parametrize("kwargs, field", [
    (dict(channels=0, hidden=2, se_hidden=1, num_blocks=1), "channels"),
    (dict(channels=2, hidden=2, se_hidden=1, num_blocks=17), "num_blocks"),
    (dict(channels=2, hidden=2, se_hidden=1, num_blocks=1, ema_decay=1.0), "ema_decay"),
])
def test_invalid_config_is_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        GlobalCnnConfig(**kwargs).validate()
    native_kwargs = dict(kwargs)
    with pytest.raises(ValueError, match=field):
        _native.GlobalCnnConfig(**native_kwargs).validate()


def test_tensor_shapes_match_the_torch_layout():
    config = GlobalCnnConfig(channels=5, hidden=7, se_hidden=3, num_blocks=2)
    blocks = blocks_of(torch_global_cnn(config, 0), config)
    for block in blocks:
        assert {k: v.shape for k, v in block.items()} == tensor_shapes(config)


def test_a_block_residual_branch_does_not_grow_with_its_input():
    """The pre-norm LayerNorm: a trained stream's scale cannot compound block after block."""
    config = GlobalCnnConfig(channels=6, hidden=8, se_hidden=3, num_blocks=1)
    cnn = GlobalCnn(config, blocks_of(torch_global_cnn(config, 3), config))
    x = np.random.default_rng(3).normal(size=(40, 6)).astype(np.float32)
    branch = stream(cnn, x, [40]) - x
    scaled_branch = stream(cnn, 1000 * x, [40]) - 1000 * x
    np.testing.assert_allclose(scaled_branch, branch, atol=2e-3)
    assert np.abs(branch).max() > 0.05
