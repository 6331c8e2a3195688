"""Training the gated Transformer: warm start from dense, the compute term, honest MAC counts."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from framegate.export.models.gated_transformer import GatedTransformer, GatedTransformerConfig, part_macs
from framegate.export.models.lstm_transducer import subsampled_length
from framegate.export.nonspeech_padding import encoder_frame_mask
from framegate.export.train import TrainConfig, Trainer

TINY = dict(vocab_size=40, conv_channels=4, d_model=16, num_heads=2, ff_dim=32, num_layers=2, left_context=4,
            joiner_dim=16, decoder_dim=16, chunk_frames=8, arbitrator_hidden=8, arbitrator_kernel=3)


def _config(tmp: Path, corpus: Path, name: str, model: dict, **overrides) -> Path:
    settings = dict(corpus_dir=str(corpus), work_dir=str(tmp / name), max_batch_frames=3000, warmup_steps=5,
                    peak_lr=3e-3, checkpoint_minutes=0.0, eval_every_steps=1000, milestone_every_steps=1000,
                    dev_utterances=4, threads=1, spec_augment_after=1000, feature_workers=1,
                    model_type="gated_transformer")
    settings.update(overrides)
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()] + ["[model]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in {**TINY, **model}.items()]
    path = tmp / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_gated_training_warm_starts_from_dense_and_the_compute_term_lowers_the_gates(tiny_corpus, tmp_path):
    dense = Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "dense", {}, max_steps=2)))
    dense.train()
    gated_cfg = _config(tmp_path, tiny_corpus, "gated",
                        {"arbitrator": "feature", "compute_lambda": 20.0, "tau_anneal_steps": 10,
                         "wake_cost_frames": 1.3},
                        max_steps=25, init_from=str(tmp_path / "dense" / "weights_last.pt"), peak_lr=2e-2)
    gated = Trainer(TrainConfig.load(gated_cfg))
    dense_state = dense.model.state_dict()
    for key, value in gated.model.state_dict().items():
        if "arbitrator" not in key:
            assert torch.equal(value, dense_state[key]), key  # everything but the arbitrator is the warm start
    assert (tmp_path / "gated" / "bpe.model").read_bytes() == (tmp_path / "dense" / "bpe.model").read_bytes()
    batch = gated._collate(list(range(min(4, len(gated.train_set.utterances)))), False, np.random.default_rng(0))
    _, before = gated._loss(*batch)
    gated.train()
    _, after = gated._loss(*batch)
    assert {"rnnt", "ctc", "compute", "cost", "chunk_parts_on", "gates_on", "tau"} <= after.keys()
    assert after["compute"] < before["compute"] - 0.05
    assert after["cost"] < before["cost"] - 0.05
    assert after["tau"] < before["tau"]


def test_trainer_pads_batches_and_reports_gates_on_speech_and_on_silence(tiny_corpus: Path, tmp_path: Path) -> None:
    plain = Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "plain", {"arbitrator": "feature"}, max_steps=1,
                                             max_batch_frames=800)))
    padded = Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "padded", {"arbitrator": "feature"}, max_steps=1,
                                              max_batch_frames=800, nonspeech_pad_s=0.5,
                                              nonspeech_pad_probability=1.0)))
    idx = [i for i, u in enumerate(plain.train_set.utterances) if u.text][:3]
    x_plain, len_plain, y_plain, _, quiet_plain = plain._collate(idx, False, np.random.default_rng(0))
    x_padded, len_padded, y_padded, _, quiet_padded = padded._collate(idx, False, np.random.default_rng(0))
    assert (len_padded > len_plain).all() and np.array_equal(y_padded, y_plain)  # same words, more frames
    for i, n in enumerate(len_plain.tolist()):  # the flags mark the crops: the utterance's own frames are speech
        start = int(quiet_padded[i].long().argmin())
        assert torch.equal(x_padded[i, start:start + n], x_plain[i, :n])
        assert not quiet_padded[i, start:start + n].any() and quiet_padded[i, :start].all() and start > 0
        assert quiet_padded[i, start + n:len_padded[i]].all()
        assert not quiet_plain[i, :n].any()
    assert len(padded._epoch_batches(0)) > len(plain._epoch_batches(0))  # batches budget for the padding
    result = padded.evaluate()
    assert 0.0 <= result["gates_on_speech"] <= 1.0 and 0.0 <= result["gates_on_empty"] <= 1.0
    with pytest.raises(ValueError, match="nonspeech_pad_s"):
        TrainConfig(corpus_dir=str(tiny_corpus), work_dir="unused", nonspeech_pad_s=-1.0).validate()


def test_warm_start_refuses_a_checkpoint_of_another_shape(tiny_corpus, tmp_path):
    Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "small", {}, max_steps=1))).train()
    cfg = _config(tmp_path, tiny_corpus, "wide", {"ff_dim": 48, "arbitrator": "block"}, max_steps=1,
                  init_from=str(tmp_path / "small" / "weights_last.pt"))
    with pytest.raises(RuntimeError, match="size mismatch"):
        Trainer(TrainConfig.load(cfg))


@pytest.fixture(scope="module")
def lstm_source(tiny_corpus, tmp_path_factory) -> Path:
    """A tiny trained LSTM transducer whose decoder and joiner have TINY's sizes (vocab 40, dims 16)."""
    tmp = tmp_path_factory.mktemp("lstm_source")
    lstm = dict(vocab_size=40, conv_channels=4, d_model=16, rnn_hidden_size=16, num_layers=1, joiner_dim=16,
                decoder_dim=16)
    path = _config(tmp, tiny_corpus, "lstm", {}, max_steps=1, model_type="lstm_transducer")
    settings = path.read_text().split("[model]")[0]  # _config wrote the gated TINY model: an LSTM instead
    path.write_text(settings + "[model]\n" + "".join(f"{k} = {v}\n" for k, v in lstm.items()))
    Trainer(TrainConfig.load(path)).train()
    return tmp / "lstm" / "weights_last.pt"


def test_transformer_warm_starts_its_prediction_network_from_an_lstm_transducer(tiny_corpus, tmp_path, lstm_source):
    source = torch.load(lstm_source, weights_only=False)["model"]
    cfg = TrainConfig.load(_config(tmp_path, tiny_corpus, "dense", {}, max_steps=2, init_parts="prediction",
                                   init_from=str(lstm_source)))
    dense = Trainer(cfg)
    assert (tmp_path / "dense" / "bpe.model").read_bytes() == (lstm_source.parent / "bpe.model").read_bytes()
    torch.manual_seed(cfg.seed)
    fresh = GatedTransformer(cfg.model).state_dict()
    for name, tensor in dense.model.state_dict().items():
        if name.startswith(("decoder.", "joiner.")):
            assert torch.equal(tensor, source[name]), name
        elif name in ("encoder.feature_mean", "encoder.feature_inv_std"):  # this data's statistics
            assert torch.equal(tensor, source[name]) and not torch.equal(tensor, fresh[name]), name
        else:
            assert torch.equal(tensor, fresh[name]), name  # the encoder and CTC head start fresh
    assert not torch.equal(dense.model.ctc_head.weight, source["ctc_head.weight"])
    dense.train()
    assert dense.step == 2
    kept = torch.load(tmp_path / "dense" / "weights_last.pt", weights_only=False)["warm_start"]
    assert kept["parts"] == "prediction" and kept["from"] == str(lstm_source)


def test_prediction_warm_start_names_each_mismatched_tensor_and_both_shapes(tiny_corpus, tmp_path, lstm_source):
    cfg = _config(tmp_path, tiny_corpus, "wide", {"decoder_dim": 24}, max_steps=1, init_parts="prediction",
                  init_from=str(lstm_source))
    with pytest.raises(ValueError, match=r"decoder\.embedding\.weight: init_from \(40, 16\), model \(40, 24\)"
                                         r".*decoder\.out\.weight: init_from \(16, 16\), model \(16, 24\)"):
        Trainer(TrainConfig.load(cfg))


def test_expected_compute_fraction_is_one_when_dense_and_counts_attention_per_key():
    cfg = GatedTransformerConfig(**TINY, arbitrator="block", gate_init_bias=50.0)
    model = GatedTransformer(cfg).eval()
    model.encoder(torch.zeros(1, 8 * 10 + 3, 80))
    fraction = model.encoder.expected_compute_fraction()[0]
    # Gates all on: steady state (a full left context) costs exactly the dense denominator;
    # the first frames have fewer keys, so they cost less.
    assert torch.allclose(fraction[cfg.left_context:], torch.ones(1), atol=1e-5)
    macs = part_macs(cfg)
    missing_keys = cfg.left_context  # frame 0 sees 1 key instead of left_context + 1
    expected0 = 1 - cfg.num_layers * missing_keys * macs["attention_per_key"] / macs["dense_per_frame"]
    assert float(fraction[0].detach()) == pytest.approx(expected0, rel=1e-5)


def _wake_model(wake: float, probs: torch.Tensor) -> GatedTransformer:
    """A tiny gated model whose last call's gate probabilities are `probs` (N, T', 2L)."""
    model = GatedTransformer(GatedTransformerConfig(**TINY, arbitrator="feature", compute_lambda=2.0,
                                                    wake_cost_frames=wake)).eval()
    model.encoder(torch.zeros(probs.shape[0], 4 * probs.shape[1] + 3, 80))
    model.encoder.last_probs = probs
    return model


def test_wake_cost_is_the_brute_force_chunk_cost_and_one_when_dense():
    torch.manual_seed(0)
    cfg = GatedTransformerConfig(**TINY, arbitrator="feature", wake_cost_frames=1.5)
    per_chunk, gates = cfg.chunk_frames // 4, cfg.num_gates
    lengths = torch.tensor([9, 6])  # 3 and 2 chunks of 2 frames; the second utterance is padded
    probs = torch.rand(2, 9, gates, dtype=torch.float64)
    model = _wake_model(1.5, probs)
    loss, parts = model.auxiliary_loss(lengths)
    macs = part_macs(cfg)
    part = [macs["attention_fixed"] + macs["attention_per_key"] * (cfg.left_context + 1), macs["feed_forward"]]
    fraction = model.encoder.expected_compute_fraction()
    used = dense = 0.0
    for b, length in enumerate(lengths.tolist()):
        for start in range(0, length, per_chunk):
            frames = range(start, min(start + per_chunk, length))
            for j in range(gates):
                off = 1.0
                for t in frames:
                    off *= 1 - float(probs[b, t, j])
                used += 1.5 * part[j % 2] * (1 - off)
                dense += 1.5 * part[j % 2]
            for t in frames:
                used += float(fraction[b, t]) * macs["dense_per_frame"]
                dense += macs["dense_per_frame"]
    assert parts["cost"] == pytest.approx(used / dense, rel=1e-9)
    assert float(loss) == pytest.approx(2.0 * used / dense, rel=1e-9)
    ones = _wake_model(1.5, torch.ones(2, 9, gates, dtype=torch.float64))
    full = torch.tensor([9, 9])
    ones.encoder.last_probs = torch.ones(2, 9, gates, dtype=torch.float64)
    steady = ones.auxiliary_loss(full)[1]
    assert steady["cost"] < 1 and steady["chunk_parts_on"] == 1.0  # early frames see fewer keys


def test_wake_cost_prefers_gates_that_agree_within_a_chunk():
    """The same expected frames on cost less gathered into whole chunks than one per chunk."""
    gates = TINY["num_layers"] * 2
    lengths = torch.tensor([8])
    gathered = torch.zeros(1, 8, gates, dtype=torch.float64)
    gathered[:, :2] = 1.0      # chunk 0 fully on, chunks 1-3 off
    scattered = torch.zeros(1, 8, gates, dtype=torch.float64)
    scattered[:, ::4] = 1.0    # frame 0 of chunks 0 and 2
    costs = {}
    for name, probs in (("gathered", gathered), ("scattered", scattered)):
        free = _wake_model(0.0, probs).auxiliary_loss(lengths)[1]["compute"]
        costs[name] = (free, _wake_model(2.0, probs).auxiliary_loss(lengths)[1]["cost"])
    assert costs["scattered"][0] <= costs["gathered"][0]  # as many MACs or fewer (fewer keys) ...
    assert costs["gathered"][1] < costs["scattered"][1] - 0.05  # ... but two chunks woken, not one


def test_wake_cost_off_leaves_the_papers_mac_fraction():
    probs = torch.rand(1, 6, TINY["num_layers"] * 2)
    model = _wake_model(0.0, probs)
    loss, parts = model.auxiliary_loss(torch.tensor([6]))
    assert float(loss) == pytest.approx(2.0 * parts["compute"]) and "cost" not in parts
    with pytest.raises(ValueError, match="wake_cost_frames"):
        GatedTransformerConfig(**TINY, wake_cost_frames=-1.0).validate()


def test_recipes_share_the_dense_shape_so_every_warm_start_loads():
    recipes = Path(__file__).resolve().parents[2] / "export" / "recipes"
    dense = TrainConfig.load(recipes / "dense_transformer.toml")
    dense_shapes = {k: v.shape for k, v in GatedTransformer(dense.model).state_dict().items()}
    for name in ("gated_feature", "gated_feature_lambda64", "gated_block", "sliding_window"):
        cfg = TrainConfig.load(recipes / f"{name}.toml")
        assert cfg.init_from == f"checkpoints/dense_transformer/weights_step{dense.max_steps - cfg.max_steps}.pt"
        shapes = {k: v.shape for k, v in GatedTransformer(cfg.model).state_dict().items()}
        assert {k: v for k, v in shapes.items() if "arbitrator" not in k} == dense_shapes, name


def test_silence_segments_are_flagged_whole_and_the_nonspeech_term_prices_only_their_frames(tiny_corpus, tmp_path):
    """nonspeech_compute_lambda adds its weight * the mean expected MAC fraction over the flagged frames."""
    trainer = Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "quiet", {"arbitrator": "feature"},
                                               max_steps=1)))
    utts = trainer.train_set.utterances
    idx = [next(i for i, u in enumerate(utts) if not u.text), next(i for i, u in enumerate(utts) if u.text)]
    x, lengths, y, tlen, quiet = trainer._collate(idx, False, np.random.default_rng(0))
    assert quiet[0, :lengths[0]].all() and not quiet[1, :lengths[1]].any()
    model = GatedTransformer(GatedTransformerConfig(**TINY, arbitrator="feature", compute_lambda=2.0,
                                                    nonspeech_compute_lambda=5.0))
    model.eval()
    model.encoder(x)
    enc_len = subsampled_length(lengths)
    frames_quiet = encoder_frame_mask(quiet, int(enc_len.max()))
    plain, parts_plain = model.auxiliary_loss(enc_len)
    priced, parts = model.auxiliary_loss(enc_len, frames_quiet)
    fraction = model.encoder.expected_compute_fraction()
    expected_quiet = float(fraction[0, :enc_len[0]].mean().detach())
    assert parts["compute_nonspeech"] == pytest.approx(expected_quiet, rel=1e-5)
    assert float((priced - plain).detach()) == pytest.approx(5.0 * expected_quiet, rel=1e-5)
    assert "compute_nonspeech" not in parts_plain


def test_encoder_frames_take_the_flag_of_their_receptive_fields_centre() -> None:
    fbank = torch.zeros(1, 40, dtype=torch.bool)
    fbank[0, :12] = True   # encoder frame t sees fbank 4t .. 4t + 6, centre 4t + 3: frames 0, 1, 2
    mask = encoder_frame_mask(fbank, int(subsampled_length(40)))
    assert mask.shape == (1, 9) and mask[0].tolist() == [True, True, True] + [False] * 6


def test_distillation_pulls_the_student_toward_the_frozen_dense_teacher(tiny_corpus, tmp_path):
    Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "dense", {}, max_steps=2))).train()
    teacher_path = tmp_path / "dense" / "weights_last.pt"
    cfg = _config(tmp_path, tiny_corpus, "student", {"arbitrator": "feature", "compute_lambda": 4.0}, max_steps=3,
                  init_from=str(teacher_path), distill_from=str(teacher_path), distill_weight=2.0)
    student = Trainer(TrainConfig.load(cfg))
    teacher = student.distillation.teacher
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not {id(p) for p in teacher.parameters()} & {id(p) for g in student.opt.param_groups for p in g["params"]}
    x, lengths, _, _, _ = student._collate([0, 1, 2], False, np.random.default_rng(0))
    enc_len = subsampled_length(lengths).clamp(min=1)
    student.model.eval()  # the warm start with every gate on (bias 3) is the teacher itself
    with torch.no_grad():
        assert float(student.distillation.loss(x, student.model.encoder(x)[0], enc_len)) == pytest.approx(0, abs=1e-10)
        student.model.encoder.out.weight.mul_(1.5)
    enc = student.model.encoder(x)[0]
    target = teacher.encoder(x)[0]
    expected = 2.0 * sum(float((enc[i, :n] - target[i, :n]).detach().pow(2).mean(-1).sum()) for i, n in
                         enumerate(enc_len.tolist())) / 3
    loss = student.distillation.loss(x, enc, enc_len)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5) and expected > 0
    loss.backward()
    assert student.model.encoder.out.weight.grad.abs().sum() > 0
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student.model.train()
    student.train()
    assert student.step == 3 and "distill" in student._loss(*student._collate([0, 1], False,
                                                                              np.random.default_rng(0)))[1]
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())  # the teacher never trains


def test_distillation_settings_and_teachers_that_cannot_teach_are_refused(tiny_corpus, tmp_path):
    for settings in (dict(distill_weight=1.0), dict(distill_from="x.pt"), dict(distill_from="x.pt", distill_weight=-1.0)):
        with pytest.raises(ValueError, match="distill_weight"):
            TrainConfig(corpus_dir=str(tiny_corpus), work_dir="unused", **settings).validate()
    wide = GatedTransformerConfig(**{**TINY, "joiner_dim": 24})
    path = tmp_path / "wide.pt"
    torch.save(dict(model=GatedTransformer(wide).state_dict(), model_config=asdict(wide),
                    model_type="gated_transformer"), path)
    for teacher, match in ((path, "gives 24 dims, the student's 16"), (tmp_path / "none.pt", "no such")):
        cfg = _config(tmp_path, tiny_corpus, "refused", {"arbitrator": "feature"}, max_steps=1,
                      distill_from=str(teacher), distill_weight=1.0)
        with pytest.raises(ValueError, match=match):
            Trainer(TrainConfig.load(cfg))


def test_speech_only_distillation_leaves_the_frames_without_speech_out(tiny_corpus, tmp_path):
    Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "dense", {}, max_steps=1))).train()
    teacher_path = tmp_path / "dense" / "weights_last.pt"
    cfg = _config(tmp_path, tiny_corpus, "student", {"arbitrator": "feature", "compute_lambda": 4.0}, max_steps=1,
                  init_from=str(teacher_path), distill_from=str(teacher_path), distill_weight=1.0,
                  distill_speech_only=True, nonspeech_pad_s=0.5, nonspeech_pad_probability=1.0)
    student = Trainer(TrainConfig.load(cfg))
    x, lengths, y, tlen, nonspeech = student._collate([0, 1, 2], False, np.random.default_rng(0))
    student.model.eval()
    with torch.no_grad():
        student.model.encoder.out.weight.mul_(1.5)  # away from the teacher it started as
    enc = student.model.encoder(x)[0]
    enc_len = subsampled_length(lengths).clamp(min=1)
    skip = encoder_frame_mask(nonspeech, enc.shape[1])
    assert skip.any() and (~skip).any()
    with torch.no_grad():
        target = student.distillation.teacher.encoder(x)[0]
    per_frame = (enc - target).detach().pow(2).mean(-1)
    kept = sum(float(per_frame[i, :n][~skip[i, :n]].sum()) for i, n in enumerate(enc_len.tolist())) / 3
    assert student.distillation.loss(x, enc, enc_len, skip).item() == pytest.approx(kept, rel=1e-5) and kept > 0
    assert student.distillation.loss(x, enc, enc_len).item() > kept  # the silence counted too
    seen = []
    original = student.distillation.loss
    student.distillation.loss = lambda *a: seen.append(a[3]) or original(*a)
    student._loss(x, lengths, y, tlen, nonspeech)
    assert torch.equal(seen[0], skip)  # the trainer hands the non-speech frames over
    with pytest.raises(ValueError, match="distill_speech_only"):
        TrainConfig(corpus_dir=str(tiny_corpus), work_dir="unused", distill_speech_only=True).validate()
