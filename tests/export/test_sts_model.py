"""The separator-transducer-segmenter model: token wrapping, turn tokens, warm start, loss, export."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from framegate.export.models.lstm_transducer import LstmTransducer, LstmTransducerConfig
from framegate.export.models.sts import SeparatorTransducerSegmenter, StsConfig, warm_start_state, wrap_turns
from framegate.export.sts_train import Example, collate, eot_penalty, split_turns, sts_loss
from framegate.export.turn_tokens import extend_bpe, extend_tokens_txt

TINY = dict(conv_channels=4, d_model=16, rnn_hidden_size=16, joiner_dim=16, decoder_dim=16, dropout=0.0)


def test_each_turn_is_wrapped_in_sot_and_eot_in_order():
    assert wrap_turns([[5, 6], [7]], sot_id=40, eot_id=41) == [40, 5, 6, 41, 40, 7, 41]
    assert wrap_turns([], 40, 41) == []


def test_decoded_ids_split_into_turns_with_the_engine_rules():
    sot, eot = 40, 41
    assert split_turns([sot, 5, 6, eot, sot, 7, eot], sot, eot) == [[5, 6], [7]]
    assert split_turns([eot, 5, sot, 6, eot, sot, eot, 8], sot, eot) == [[5, 6], [8]]  # stray, duplicate, empty


def test_turn_tokens_are_appended_so_existing_ids_stay(tmp_path):
    from framegate.export.tokenizer import load_bpe, train_bpe

    single = train_bpe(["the cat sat on the mat", "a dog ran far away"] * 20, tmp_path / "single.model", 30)
    size = extend_bpe(tmp_path / "single.model", tmp_path / "sts.model")
    sts = load_bpe(tmp_path / "sts.model")
    assert size == sts.get_piece_size() == single.get_piece_size() + 2
    assert [sts.id_to_piece(i) for i in range(30)] == [single.id_to_piece(i) for i in range(30)]
    assert (sts.id_to_piece(30), sts.id_to_piece(31)) == ("<sot>", "<eot>")
    assert sts.encode("the cat") == single.encode("the cat")
    assert extend_bpe(tmp_path / "sts.model", tmp_path / "again.model") == size  # idempotent
    (tmp_path / "tokens.txt").write_text("<blk> 0\n<unk> 1\n▁a 2\n", encoding="utf-8")
    assert extend_tokens_txt(tmp_path / "tokens.txt", tmp_path / "sts_tokens.txt") == 5
    assert (tmp_path / "sts_tokens.txt").read_text().splitlines()[-2:] == ["<sot> 3", "<eot> 4"]


def test_warm_start_carries_the_single_speaker_weights_over():
    torch.manual_seed(0)
    single = LstmTransducer(LstmTransducerConfig(vocab_size=20, num_layers=3, **TINY))
    sts = SeparatorTransducerSegmenter(StsConfig(vocab_size=22, mix_layers=1, rec_layers=2, **TINY))
    state, added = warm_start_state(sts, single.state_dict())
    sts.load_state_dict(state)
    s = single.state_dict()
    assert torch.equal(sts.encoder.mix_lstm.weight_ih_l0, s["encoder.lstm.weight_ih_l0"])
    assert torch.equal(sts.encoder.rec_lstm.weight_hh_l0, s["encoder.lstm.weight_hh_l1"])
    assert torch.equal(sts.encoder.rec_lstm.bias_ih_l1, s["encoder.lstm.bias_ih_l2"])
    assert torch.equal(sts.decoder.embedding.weight[:20], s["decoder.embedding.weight"])
    assert torch.equal(sts.joiner.out.bias[:20], s["joiner.out.bias"])
    assert any(k.startswith("encoder.separator") for k in added) and "joiner.out.weight[-2:]" in added
    wrong = SeparatorTransducerSegmenter(StsConfig(vocab_size=22, mix_layers=1, rec_layers=1, **TINY))
    with pytest.raises(ValueError, match="3 LSTM layers"):
        warm_start_state(wrong, single.state_dict())


def _example(rng: np.random.Generator, seconds: float, targets, eots) -> Example:
    frames = int(seconds * 100)
    feats = rng.standard_normal((frames, 80)).astype(np.float32) - 10
    enc_frames = ((frames - 3) // 2 + 1 - 3) // 2 + 1
    activity = np.zeros((2, enc_frames), np.float32)
    activity[0, 5:20] = 1
    return Example(feats, targets, eots, activity)


def test_the_sts_loss_trains_every_part_and_penalizes_late_eot():
    torch.manual_seed(1)
    model = SeparatorTransducerSegmenter(StsConfig(vocab_size=12, mix_layers=1, rec_layers=1, **TINY))
    rng = np.random.default_rng(0)
    batch = collate([_example(rng, 1.2, [[10, 3, 4, 11], []], [[20], []]),
                     _example(rng, 0.9, [[10, 5, 11], [10, 6, 7, 11]], [[10], [18]])])
    loss, parts = sts_loss(model, *batch, ctc_weight=0.3)
    loss.backward()
    assert torch.isfinite(loss) and set(parts) == {"rnnt", "ctc", "activity"}
    for name in ("encoder.separator.mask.weight", "encoder.activity.weight", "encoder.mix_lstm.weight_ih_l0",
                 "decoder.embedding.weight", "joiner.out.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    y = torch.tensor([[10, 3, 11, 10, 4, 11]])
    penalty = eot_penalty(y, [[4, 9]], frames=15, eot_id=11, per_frame=0.5, tolerance=2)
    assert torch.all(penalty[0, :, [0, 1, 3, 4, 6]] == 0)
    assert torch.all(penalty[0, :7, 2] == 0) and penalty[0, 10, 2] == pytest.approx(2.0)
    assert torch.all(penalty[0, :12, 5] == 0) and penalty[0, 14, 5] == pytest.approx(1.5)


def test_export_gives_the_torch_encoders_frames_for_both_channels(tiny_sts):
    from framegate.engine.bundle import Bundle
    from framegate.engine.offline import encoder_output, padded_features
    from framegate.export.onnx_export import load_model

    checkpoint, bundle_dir = tiny_sts
    bundle = Bundle.load(bundle_dir)
    assert bundle.model_type == "sts" and bundle.manifest["sts"]["channels"] == 2
    rng = np.random.default_rng(3)
    samples = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
    onnx_out = encoder_output(bundle, samples)
    model = load_model(checkpoint)
    with torch.no_grad():
        torch_out, _, _ = model.encoder(torch.from_numpy(padded_features(bundle, samples)).unsqueeze(0))
    assert onnx_out.shape == tuple(torch_out.shape[1:])
    reference = torch_out[0].numpy()  # the fixture's scaled weights make values large: compare relatively
    np.testing.assert_allclose(onnx_out, reference, rtol=1e-3, atol=1e-4 * float(np.abs(reference).max()))
