"""Shared fixtures: one tiny random-weight bundle per test session, built by export_bundle.

Tests that need torch import it through these fixtures only, so engine tests that use the
bundle still run the device path (ONNX Runtime) exactly as a user would.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

TINY_VOCAB = 30


def tiny_tokens() -> list[str]:
    """`<blk>`, `<unk>`, then word-initial and word-internal letter pieces."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    pieces = ["<blk>", "<unk>"] + [f"▁{ch}" for ch in letters[:14]] + list(letters[:TINY_VOCAB - 16])
    assert len(pieces) == TINY_VOCAB
    return pieces


def nudge_tiny_lstm_model(model) -> None:
    """Scale a tiny random transducer with an LSTM encoder (LstmTransducer, ConvRnnt) in place so it
    both emits and stays silent: normalization maps fbank values to about unit scale, larger LSTM
    and output weights make the encoder output vary over time, and the blank logit gets a bias."""
    import torch

    with torch.no_grad():
        model.encoder.feature_mean.fill_(-11.0)
        model.encoder.feature_inv_std.fill_(1 / 7.0)
        for name, param in model.encoder.lstm.named_parameters():
            if name.startswith("weight"):
                param.mul_(3.0)
        model.encoder.out.weight.mul_(8.0)
        model.joiner.out.weight.mul_(3.0)
        model.joiner.out.bias[0] += 3.5


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights-only checkpoint of a tiny LstmTransducer plus its tokens.txt, as training writes them.

    The random model is nudged (`nudge_tiny_lstm_model`): about 3 frames in 4 emit.
    """
    import torch
    from dataclasses import asdict

    from framegate.export.models.lstm_transducer import LstmTransducer, LstmTransducerConfig

    torch.manual_seed(1234)
    cfg = LstmTransducerConfig(vocab_size=TINY_VOCAB, conv_channels=4, d_model=16, rnn_hidden_size=24,
                               num_layers=1, joiner_dim=16, decoder_dim=16, context_size=2,
                               dropout=0.0, chunk_frames=8)
    model = LstmTransducer(cfg)
    nudge_tiny_lstm_model(model)
    work = tmp_path_factory.mktemp("tiny_train")
    torch.save({"model": model.state_dict(), "model_config": asdict(cfg), "step": 0}, work / "weights.pt")
    lines = [f"{piece} {i}" for i, piece in enumerate(tiny_tokens())]
    (work / "tokens.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return work / "weights.pt"


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model exported once; tests that damage a bundle copy it first."""
    from framegate.export.onnx_export import export_bundle

    return export_bundle(tiny_checkpoint, tmp_path_factory.mktemp("bundle") / "tiny",
                         model_card={"purpose": "tests", "weights": "random"})


@pytest.fixture(scope="session")
def tiny_bundle_chunk4(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model exported with `chunk_frames=4` (its checkpoint says 8): same weights, smaller windows."""
    from framegate.export.onnx_export import export_bundle

    return export_bundle(tiny_checkpoint, tmp_path_factory.mktemp("bundle") / "tiny_chunk4",
                         model_card={"purpose": "tests", "weights": "random"}, chunk_frames=4)


@pytest.fixture(scope="session")
def tiny_bundle_int8(tiny_checkpoint: Path, speechlike_16k: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny two-layer LSTM transducer without projection (ONNX LSTM ops, as the default model),
    nudged to emit, exported, then given int8 LSTM weights calibrated on the speech-like signal.
    Its fp32 bundle is the sibling folder `fp32`."""
    from dataclasses import asdict, replace

    import torch

    from framegate.export.models.lstm_transducer import LstmTransducer
    from framegate.export.onnx_export import export_bundle, load_model
    from framegate.export.quantize import quantize_bundle

    tiny = load_model(tiny_checkpoint)
    torch.manual_seed(11)
    model = LstmTransducer(replace(tiny.cfg, rnn_hidden_size=tiny.cfg.d_model, num_layers=2)).eval()
    nudge_tiny_lstm_model(model)
    work = tmp_path_factory.mktemp("int8")
    torch.save({"model": model.state_dict(), "model_config": asdict(model.cfg), "step": 0}, work / "weights.pt")
    fp32 = export_bundle(work / "weights.pt", work / "fp32", tokens=tiny_checkpoint.parent / "tokens.txt")
    return quantize_bundle(fp32, work / "int8", [speechlike_16k], "speech-like test signal")


@pytest.fixture(scope="session")
def plain_lstm_model_and_bundle(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny model with rnn_hidden_size = d_model (no projection, as the default model):
    its encoder exports as ONNX's own LSTM op instead of the spelled-out Loop."""
    from dataclasses import asdict, replace

    import torch

    from framegate.export.models.lstm_transducer import LstmTransducer
    from framegate.export.onnx_export import export_bundle, load_model

    tiny = load_model(tiny_checkpoint)
    torch.manual_seed(7)
    model = LstmTransducer(replace(tiny.cfg, rnn_hidden_size=tiny.cfg.d_model)).eval()
    work = tmp_path_factory.mktemp("plain_lstm")
    torch.save({"model": model.state_dict(), "model_config": asdict(model.cfg), "step": 0}, work / "weights.pt")
    bundle = export_bundle(work / "weights.pt", work / "bundle", tokens=tiny_checkpoint.parent / "tokens.txt")
    return model, bundle


def _tiny_convrnnt(work: Path, tokens: Path, rnn_hidden_size: int):
    """A tiny random ConvRNN-T (eval mode) and its bundle, nudged as the LSTM fixture, on the tokens' vocabulary;
    rnn_hidden_size 24 > d_model 16 makes its LSTM projected, 16 leaves it unprojected."""
    import torch
    from dataclasses import asdict

    from framegate.export.models.convrnnt import ConvRnnt, ConvRnntConfig
    from framegate.export.onnx_export import export_bundle

    vocab = len(tokens.read_text(encoding="utf-8").splitlines())
    torch.manual_seed(4321)
    cfg = ConvRnntConfig(vocab_size=vocab, conv_channels=4, frontend_dim=16, local_channels=6, local_kernel=3,
                         local_layers=2, global_channels=8, global_hidden=10, global_blocks=4, se_hidden=3,
                         d_model=16, rnn_hidden_size=rnn_hidden_size, num_layers=1, joiner_dim=16, decoder_dim=16,
                         dropout=0.0)
    model = ConvRnnt(cfg)
    nudge_tiny_lstm_model(model)
    with torch.no_grad():  # a trained merge: the branches (the C++ global CNN's output too) reach the LSTM
        torch.nn.init.normal_(model.encoder.merge.weight, std=1.0)
        torch.nn.init.normal_(model.encoder.merge.bias, std=0.1)
        # blank's bias so that each both emits and reaches endpoints on speechlike_16k (8 and 87 tokens)
        model.joiner.out.bias[0] += 2.0 if rnn_hidden_size > cfg.d_model else -2.0
    torch.save({"model": model.state_dict(), "model_config": asdict(cfg), "model_type": "convrnnt"},
               work / "weights.pt")
    bundle = export_bundle(work / "weights.pt", work / "bundle", tokens=tokens, model_card={"purpose": "tests"})
    return model.eval(), bundle


@pytest.fixture(scope="module")
def convrnnt_model_and_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path):
    """A tiny ConvRNN-T with a projected LSTM and its bundle."""
    return _tiny_convrnnt(tmp_path_factory.mktemp("convrnnt"), tiny_checkpoint.parent / "tokens.txt", 24)


@pytest.fixture(scope="module")
def unprojected_convrnnt_model_and_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path):
    """The same with an unprojected LSTM (the comparison recipe's shape: ONNX's own LSTM op)."""
    return _tiny_convrnnt(tmp_path_factory.mktemp("convrnnt_unprojected"), tiny_checkpoint.parent / "tokens.txt", 16)


def _stream_in_random_blocks(recognizer, samples_16k: np.ndarray, seed: int, max_block: int = 8999):
    """Feed `samples_16k` to a new stream in seeded random blocks (1 to `max_block` samples), decoding
    after each, then finish it; the finished stream (its result, telemetry) is for the caller to compare."""
    rng = np.random.default_rng(seed)
    stream = recognizer.create_stream()
    pos = 0
    while pos < len(samples_16k):
        size = int(rng.integers(1, max_block + 1))
        stream.accept_waveform(16000, samples_16k[pos:pos + size])
        recognizer.decode(stream)
        pos += size
    stream.input_finished()
    recognizer.decode(stream)
    return stream


@contextlib.contextmanager
def _capture_encoder_frames(recognizer) -> Iterator[list[np.ndarray]]:
    """Inside the block, every encoder frame `recognizer` computes is appended to the yielded list
    (what the engine streamed, for comparison with an unchunked pass); the method is restored after."""
    frames: list[np.ndarray] = []
    encode_windows = recognizer.encode_windows

    def recording(windows, state):
        outputs, state = encode_windows(windows, state)
        frames.extend(outputs)
        return outputs, state

    recognizer.encode_windows = recording
    try:
        yield frames
    finally:
        del recognizer.encode_windows  # the class's method again


def _stream_until_endpoint(recognizer, samples_16k: np.ndarray):
    """Feed 10 ms frames to a new stream, decoding after each, and stop right after the first
    endpoint; returns the stream and how many samples it was fed."""
    stream = recognizer.create_stream()
    for start in range(0, len(samples_16k), 160):
        stream.accept_waveform(16000, samples_16k[start:start + 160])
        recognizer.decode(stream)
        if stream.is_endpoint:
            return stream, min(start + 160, len(samples_16k))
    raise AssertionError("the signal never reached an endpoint")


@pytest.fixture(scope="session")
def stream_until_endpoint():
    """`stream_until_endpoint(recognizer, samples_16k)`: (stream, samples fed), stopped at its first endpoint."""
    return _stream_until_endpoint


@pytest.fixture(scope="session")
def stream_in_random_blocks():
    """`stream_in_random_blocks(recognizer, samples_16k, seed[, max_block])`: the stream after a seeded
    random-block feed."""
    return _stream_in_random_blocks


@pytest.fixture(scope="session")
def capture_encoder_frames():
    """`with capture_encoder_frames(recognizer) as frames:` collects every encoder frame it computes."""
    return _capture_encoder_frames


@pytest.fixture(scope="session")
def speechlike_16k() -> np.ndarray:
    """6.3 s of deterministic speech-like audio at 16 kHz: gliding harmonics, noise bursts, pauses.

    The odd length makes the final window need tail padding.
    """
    rng = np.random.default_rng(7)
    sr = 16000
    n = int(6.3 * sr) + 37
    t = np.arange(n) / sr
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 1.3 * t), 0, None) ** 0.5
    bursts = rng.standard_normal(n) * (np.sin(2 * np.pi * 0.9 * t + 1.0) > 0.8)
    signal = 0.25 * voiced * envelope + 0.05 * bursts
    signal[int(2.0 * sr):int(2.6 * sr)] = 0.0  # a pause of digital silence
    return signal.astype(np.float32)


def make_tiny_gated(arbitrator: str, work: Path, tokens: Path, seed: int = 99, **overrides) -> tuple[Path, Path]:
    """A tiny random gated Transformer (checkpoint, bundle). Gate logits start at 0 so the random
    arbitrators switch parts both on and off; normalization and output scales as the LSTM fixture."""
    import torch
    from dataclasses import asdict

    from framegate.export.models.gated_transformer import GatedTransformer, GatedTransformerConfig
    from framegate.export.onnx_export import export_bundle

    torch.manual_seed(seed)
    settings = dict(vocab_size=TINY_VOCAB, conv_channels=4, d_model=16, num_heads=2, ff_dim=32, num_layers=2,
                    left_context=5, joiner_dim=16, decoder_dim=16, dropout=0.0, chunk_frames=8,
                    arbitrator=arbitrator, arbitrator_kernel=3, arbitrator_hidden=8, gate_init_bias=0.0)
    settings.update(overrides)
    cfg = GatedTransformerConfig(**settings)
    model = GatedTransformer(cfg)
    with torch.no_grad():
        model.encoder.feature_mean.fill_(-11.0)
        model.encoder.feature_inv_std.fill_(1 / 7.0)
        model.encoder.out.weight.mul_(4.0)
        model.joiner.out.weight.mul_(3.0)
        model.joiner.out.bias[0] += 2.5
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / f"gated_{arbitrator}.pt"
    torch.save({"model": model.state_dict(), "model_config": asdict(cfg), "model_type": "gated_transformer"},
               checkpoint)
    bundle = export_bundle(checkpoint, work / f"bundle_{arbitrator}", tokens=tokens,
                           model_card={"purpose": "tests", "weights": "random"})
    return checkpoint, bundle


@pytest.fixture(scope="session")
def tiny_gated(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Tiny gated Transformer (checkpoint, bundle) per arbitrator: "feature", "block", "none" (dense)."""
    work = tmp_path_factory.mktemp("tiny_gated")
    tokens = tiny_checkpoint.parent / "tokens.txt"
    return {arb: make_tiny_gated(arb, work, tokens) for arb in ("feature", "block", "none")}


@pytest.fixture(scope="session")
def tiny_embedder_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights-only checkpoint of a tiny random speaker-embedding network, as train-speaker writes it.

    BatchNorm running statistics are randomized so the exported graph's folded normalization
    is exercised, not an identity."""
    import torch

    from framegate.export.models.speaker_embedding import SpeakerEmbedding, SpeakerEmbeddingConfig

    torch.manual_seed(4321)
    cfg = SpeakerEmbeddingConfig(channels=16, pooled_channels=24, embedding_dim=8)
    model = SpeakerEmbedding(cfg)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("tiny_embedder") / "weights.pt"
    torch.save({"model": model.state_dict(), "model_config": cfg.to_dict(), "model_type": "speaker_embedding"}, path)
    return path


@pytest.fixture(scope="session")
def tiny_embedder(tiny_embedder_checkpoint: Path) -> Path:
    """The tiny speaker-embedding network exported once as an embedding bundle."""
    from framegate.export.speaker_export import export_embedding_bundle

    return export_embedding_bundle(tiny_embedder_checkpoint, tiny_embedder_checkpoint.parent / "bundle",
                                   model_card={"purpose": "tests", "weights": "random"})


def make_tiny_sts(work: Path, tokens: Path, seed: int = 9) -> tuple[Path, Path]:
    """A tiny random separator-transducer-segmenter (checkpoint, bundle): the tiny vocabulary plus
    <sot>, <eot>, scaled as the LSTM fixture, with the turn tokens' logits raised so the random
    model opens and closes turns as well as emitting words."""
    import torch
    from dataclasses import asdict

    from framegate.export.models.sts import SeparatorTransducerSegmenter, StsConfig
    from framegate.export.onnx_export import export_bundle
    from framegate.export.turn_tokens import extend_tokens_txt

    torch.manual_seed(seed)
    cfg = StsConfig(vocab_size=TINY_VOCAB + 2, conv_channels=4, d_model=16, rnn_hidden_size=24, mix_layers=1,
                    rec_layers=1, joiner_dim=16, decoder_dim=16, context_size=2, dropout=0.0, chunk_frames=8)
    model = SeparatorTransducerSegmenter(cfg)
    with torch.no_grad():
        model.encoder.feature_mean.fill_(-11.0)
        model.encoder.feature_inv_std.fill_(1 / 7.0)
        for lstm in (model.encoder.mix_lstm, model.encoder.rec_lstm):
            for name, param in lstm.named_parameters():
                if name.startswith("weight"):
                    param.mul_(3.0)
                model.encoder.out.weight.mul_(8.0)
        model.joiner.out.weight.mul_(3.0)
        model.joiner.out.bias[0] += 2.0
        model.joiner.out.bias[cfg.sot_id] += 1.0
        model.joiner.out.bias[cfg.eot_id] += 2.5
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / "sts.pt"
    torch.save({"model": model.state_dict(), "model_config": asdict(cfg), "model_type": "sts"}, checkpoint)
    extend_tokens_txt(tokens, work / "tokens.txt")
    bundle = export_bundle(checkpoint, work / "bundle_sts", model_card={"purpose": "tests", "weights": "random"})
    return checkpoint, bundle


@pytest.fixture(scope="session")
def tiny_sts(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Tiny random two-channel STS (checkpoint, bundle) sharing the tiny LSTM's pieces (+ <sot>, <eot>)."""
    return make_tiny_sts(tmp_path_factory.mktemp("tiny_sts"), tiny_checkpoint.parent / "tokens.txt")
