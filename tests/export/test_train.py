"""The training recipe: learns on tiny data, checkpoints and resumes, runs data-parallel."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
import torch

from framegate.engine.audio import read_audio
from framegate.engine.features import compute_fbank
from framegate.export.feature_cache import FeatureCache, read_manifest
from framegate.export.loss import rnnt_loss
from framegate.export.models.lstm_transducer import LstmTransducer
from framegate.export.train import CTC_CHARS, TrainConfig, Trainer, _char_targets, _lr

TINY_MODEL = dict(vocab_size=40, conv_channels=8, d_model=32, rnn_hidden_size=48, num_layers=1,
                  joiner_dim=32, decoder_dim=32)


def _config(tmp: Path, corpus: Path, name: str, **overrides) -> Path:
    settings = dict(corpus_dir=str(corpus), work_dir=str(tmp / name), max_batch_frames=4000, warmup_steps=5,
                    peak_lr=3e-3, checkpoint_minutes=0.0, eval_every_steps=1000, milestone_every_steps=1000,
                    dev_utterances=4, threads=1, spec_augment_after=1000, feature_workers=1)
    settings.update(overrides)
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    lines.append("[model]")
    lines += [f"{k} = {v}" for k, v in TINY_MODEL.items()]
    path = tmp / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_training_features_are_the_engine_features(tiny_corpus: Path, tmp_path: Path) -> None:
    cache = FeatureCache.build(tiny_corpus / "dev.jsonl", tmp_path / "dev", workers=1)
    row = read_manifest(tiny_corpus / "dev.jsonl")[0]
    samples, rate = read_audio(tiny_corpus / row["audio"])
    assert rate == 16000
    np.testing.assert_allclose(cache.features(0), compute_fbank(samples), atol=2e-2)  # float16 storage


def test_loss_falls_when_overfitting_tiny_data(tiny_corpus: Path, tmp_path: Path) -> None:
    trainer = Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "fit", max_steps=40)))
    batch = trainer._collate(list(range(min(4, len(trainer.train_set.utterances)))), False, np.random.default_rng(0))
    first, _ = trainer._loss(*batch)
    trainer.train()
    trainer.model.train()
    last, _ = trainer._loss(*batch)
    assert float(last.detach()) < 0.7 * float(first.detach())


def test_resume_continues_from_the_checkpoint(tiny_corpus: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path, tiny_corpus, "resume", max_steps=3)
    Trainer(TrainConfig.load(cfg)).train()
    cfg2 = _config(tmp_path, tiny_corpus, "resume", max_steps=5)
    resumed = Trainer(TrainConfig.load(cfg2))
    assert resumed.step == 3
    resumed.train()
    assert resumed.step == 5
    weights = torch.load(tmp_path / "resume" / "weights_last.pt", weights_only=False)
    assert weights["step"] == 5 and set(weights) == {"model", "model_config", "model_type", "step", "epoch",
                                                "train_seconds", "warm_start"}  # no training-only heads here


def test_a_new_machine_resumes_from_the_kept_weights_only_milestone(tiny_corpus: Path, tmp_path: Path) -> None:
    Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "milestone", max_steps=3))).train()
    (tmp_path / "milestone" / "checkpoint.pt").unlink()  # what a new machine lacks: runs/ is not kept
    kept = torch.load(tmp_path / "milestone" / "weights_last.pt", weights_only=False)
    resumed = Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "milestone", max_steps=4)))
    assert resumed.step == 3 and resumed.epoch == kept["epoch"] + 1
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, kept["model"][name]), name
    resumed.train()
    assert resumed.step == 4


def test_encoder_only_warm_start_keeps_the_encoder_and_learns_a_new_token_set(tiny_corpus: Path,
                                                                             tmp_path: Path) -> None:
    Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "stage1", max_steps=2, ctc_units="chars"))).train()
    source = torch.load(tmp_path / "stage1" / "weights_last.pt", weights_only=False)
    cfg = _config(tmp_path, tiny_corpus, "stage2", max_steps=1, ctc_units="chars", init_parts="encoder",
                  init_from=str(tmp_path / "stage1" / "weights_last.pt"))
    cfg.write_text(cfg.read_text().replace("vocab_size = 40", "vocab_size = 30"))
    stage2 = Trainer(TrainConfig.load(cfg))
    assert stage2.sp.get_piece_size() == 30  # its own tokenizer, not the source's
    for name, tensor in stage2.model.encoder.state_dict().items():
        assert torch.equal(tensor, source["model"][f"encoder.{name}"]), name
    for name, tensor in stage2.char_ctc.state_dict().items():
        assert torch.equal(tensor, source["char_ctc"][name]), name
    assert stage2.model.joiner.out.weight.shape[0] == 30
    stage2.train()
    assert stage2.step == 1
    kept = torch.load(tmp_path / "stage2" / "weights_last.pt", weights_only=False)["warm_start"]
    assert kept["parts"] == "encoder" and kept["step"] == 2 and kept["from"].endswith("weights_last.pt")


def test_prediction_warm_start_keeps_decoder_joiner_and_tokens_and_starts_a_fresh_encoder(tiny_corpus: Path,
                                                                                          tmp_path: Path) -> None:
    Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "trained", max_steps=2))).train()
    source = torch.load(tmp_path / "trained" / "weights_last.pt", weights_only=False)
    cfg = TrainConfig.load(_config(tmp_path, tiny_corpus, "fresh_encoder", max_steps=1, init_parts="prediction",
                                   init_from=str(tmp_path / "trained" / "weights_last.pt")))
    target = Trainer(cfg)
    bpe = [(tmp_path / name / "bpe.model").read_bytes() for name in ("fresh_encoder", "trained")]
    assert bpe[0] == bpe[1]
    torch.manual_seed(cfg.seed)
    fresh = LstmTransducer(cfg.model).state_dict()
    for name, tensor in target.model.state_dict().items():
        if name.startswith(("decoder.", "joiner.")):
            assert torch.equal(tensor, source["model"][name]), name
        elif name in ("encoder.feature_mean", "encoder.feature_inv_std"):  # this data's statistics, as the source's
            assert torch.equal(tensor, source["model"][name]) and not torch.equal(tensor, fresh[name]), name
        else:
            assert torch.equal(tensor, fresh[name]) and not torch.equal(tensor, source["model"][name]), name
    target.train()
    assert target.step == 1
    kept = torch.load(tmp_path / "fresh_encoder" / "weights_last.pt", weights_only=False)["warm_start"]
    assert kept["parts"] == "prediction" and kept["step"] == 2


def test_character_targets_spell_the_text_with_blank_zero() -> None:
    targets, lengths = _char_targets(["ab c", "it's"])
    assert lengths.tolist() == [4, 4]
    assert ["".join(CTC_CHARS[i - 1] for i in row[:n]) for row, n in zip(targets.tolist(), lengths.tolist())] == \
        ["ab c", "it's"]
    assert int(targets.min()) >= 0 and 0 not in targets[0, :4].tolist()


def test_character_ctc_head_trains_and_resumes_with_the_model(tiny_corpus: Path, tmp_path: Path) -> None:
    Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "chars", max_steps=2, ctc_units="chars"))).train()
    resumed = Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "chars", max_steps=3, ctc_units="chars")))
    saved = torch.load(tmp_path / "chars" / "checkpoint.pt", weights_only=False)["char_ctc"]
    assert resumed.step == 2 and torch.equal(resumed.char_ctc.weight, saved["weight"])
    x, lengths, y, tlen, _ = resumed._collate([0, 1], False, np.random.default_rng(0))
    loss, parts = resumed._loss(x, lengths, y, tlen)
    loss.backward()
    assert parts["ctc"] > 0 and resumed.char_ctc.weight.grad is not None
    assert resumed.model.ctc_head.weight.grad is None  # the token CTC head is not trained then


def test_data_parallel_under_torchrun_keeps_replicas_identical(tiny_corpus: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path, tiny_corpus, "ddp", max_steps=3, max_batch_frames=800)
    Trainer(TrainConfig.load(cfg))  # prepare features once, outside the workers
    script = tmp_path / "ddp_worker.py"
    script.write_text(
        "import os, sys, torch\n"
        "from pathlib import Path\n"
        "from framegate.export.train import CTC_CHARS, TrainConfig, Trainer, _char_targets, _lr\n"
        "t = Trainer(TrainConfig.load(Path(sys.argv[1])))\n"
        "t.train()\n"
        "flat = torch.cat([p.detach().reshape(-1) for p in t.model.parameters()])\n"
        "torch.save(flat, Path(sys.argv[2]) / f\"rank{os.environ['RANK']}.pt\")\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(script), str(cfg), str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert torch.equal(r0, r1)


def test_model_type_selects_the_model_class(tmp_path):
    from framegate.export.models.convrnnt import ConvRnntConfig
    from framegate.export.train import TrainConfig

    config = TrainConfig.load(Path(__file__).resolve().parents[2] / "export" / "recipes" / "convrnnt.toml")
    assert config.model_type == "convrnnt" and isinstance(config.model, ConvRnntConfig)
    bad = tmp_path / "bad.toml"
    bad.write_text('model_type = "transformer"\ncorpus_dir = "x"\nwork_dir = "y"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="unknown model_type 'transformer'"):
        TrainConfig.load(bad)


def test_lr_step_offset_continues_the_source_runs_schedule(tiny_corpus: Path) -> None:
    """A warm start from step N learns at the source run's rate for step N + s, for both schedules."""
    for schedule in ("inverse_sqrt", "hold_linear"):
        common = dict(corpus_dir=str(tiny_corpus), work_dir="unused", peak_lr=1e-3, warmup_steps=10,
                      lr_schedule=schedule, decay_steps=40, final_lr=1e-4)
        source = TrainConfig(max_steps=100, **common)
        branch = TrainConfig(max_steps=70, lr_step_offset=30, **common)
        for step in (1, 5, 20, 50, 70):
            assert _lr(step, branch) == pytest.approx(_lr(step + 30, source)), (schedule, step)
        assert _lr(1, branch) > _lr(1, TrainConfig(max_steps=70, **common))  # no second warm-up
    with pytest.raises(ValueError, match="lr_step_offset"):
        TrainConfig(lr_step_offset=-1, **common).validate()


def test_hold_linear_schedule_warms_up_holds_then_decays_to_final_lr(tiny_corpus: Path) -> None:
    cfg = TrainConfig(corpus_dir=str(tiny_corpus), work_dir="unused", peak_lr=1e-3, warmup_steps=10,
                      lr_schedule="hold_linear", max_steps=100, decay_steps=40, final_lr=1e-4)
    cfg.validate()
    assert _lr(5, cfg) == pytest.approx(5e-4)
    assert _lr(10, cfg) == _lr(60, cfg) == pytest.approx(1e-3)
    assert _lr(80, cfg) == pytest.approx(5.5e-4)
    assert _lr(100, cfg) == pytest.approx(1e-4)
    inverse = TrainConfig(corpus_dir=str(tiny_corpus), work_dir="unused", peak_lr=1e-3, warmup_steps=10)
    assert _lr(40, inverse) == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="decay_steps"):
        TrainConfig(corpus_dir=str(tiny_corpus), work_dir="unused", lr_schedule="hold_linear",
                    max_steps=100, decay_steps=0).validate()


def test_threads_bound_the_loss_threads_too(tiny_corpus: Path, tmp_path: Path) -> None:
    """A one-thread run must not leave numba's OpenMP workers spinning beside another job."""
    Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "threads", max_steps=1)))
    assert numba.get_num_threads() == 1


def test_latency_penalties_reach_the_transducer_loss(tiny_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    from framegate.export import train as train_module

    seen: list[dict] = []

    def recording_loss(*args, **kwargs):
        seen.append(kwargs)
        return rnnt_loss(*args, **kwargs)

    monkeypatch.setattr(train_module, "rnnt_loss", recording_loss)
    trainer = Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "delay", delay_penalty=0.02,
                                               fastemit_lambda=0.01)))
    trainer._loss(*trainer._collate([0, 1], False, np.random.default_rng(0)))
    assert len(seen) == 1 and seen[0]["delay_penalty"] == 0.02 and seen[0]["fastemit_lambda"] == 0.01
    with pytest.raises(ValueError, match="delay_penalty"):
        TrainConfig(corpus_dir=str(tiny_corpus), work_dir="unused", delay_penalty=-0.01).validate()


def test_pruned_loss_trains_its_simple_joiner_and_resumes_it(tiny_corpus: Path, tmp_path: Path) -> None:
    """prune_range switches the transducer loss to the pruned one; its simple joiner is a
    training-only head: optimized, checkpointed and resumed, never in the model."""
    settings = dict(prune_range=2, prune_warmup_steps=4, simple_loss_scale=0.25)
    trainer = Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "pruned", max_steps=40, **settings)))
    batch = trainer._collate(list(range(min(4, len(trainer.train_set.utterances)))), False, np.random.default_rng(0))
    first, first_parts = trainer._loss(*batch)
    assert set(first_parts) >= {"rnnt", "simple", "ctc"}
    trainer.train()
    trainer.model.train()
    last, last_parts = trainer._loss(*batch)
    assert last_parts["rnnt"] < 0.7 * first_parts["rnnt"] and last_parts["simple"] < first_parts["simple"]
    assert not any(name.startswith("simple") for name in trainer.model.state_dict())
    resumed = Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "pruned", max_steps=41, **settings)))
    assert torch.equal(resumed.simple_joiner.am.weight, trainer.simple_joiner.am.weight)
    with pytest.raises(ValueError, match="prune_range"):
        TrainConfig(corpus_dir=str(tiny_corpus), work_dir="unused", prune_range=-1).validate()


def test_evaluation_reports_whether_the_encoder_reads_its_input(tiny_corpus: Path, tmp_path: Path) -> None:
    trainer = Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "dependence", max_steps=1)))
    alive = trainer.evaluate()["input_dependence"]
    with torch.no_grad():
        trainer.model.encoder.feature_inv_std.zero_()  # every frame normalizes to the same vector
    assert alive > 0.01 and trainer.evaluate()["input_dependence"] < 1e-6


def test_train_cli_threads_override_the_recipe(monkeypatch, tmp_path) -> None:
    """Two runs side by side on 2 cores take 1 thread each without editing their recipes."""
    import framegate.export.train as train_module
    from framegate.engine.cli import main

    calls = []
    monkeypatch.setattr(train_module, "run", lambda config, **overrides: calls.append((config, overrides)))
    recipe = tmp_path / "r.toml"
    assert main(["train", "--config", str(recipe), "--threads", "1"]) == 0
    assert main(["train", "--config", str(recipe)]) == 0
    assert calls == [(recipe, {"threads": 1}), (recipe, {})]
    with pytest.raises(SystemExit):
        main(["train", "--config", str(recipe), "--threads", "0"])


def test_vtlp_warps_augmented_batches_only(tiny_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    """The warp belongs to augmentation: on with it (before the masks), off for clean batches."""
    from framegate.export import train as train_module

    factors: list[float] = []

    def recording_warp(x, max_warp, rng):
        factors.append(max_warp)
        return x + 1.0

    monkeypatch.setattr(train_module, "warp_batch", recording_warp)
    monkeypatch.setattr(train_module, "_spec_augment", lambda x, lengths, rng: x)
    trainer = Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, "vtlp", vtlp_max_warp=0.1)))
    clean = trainer._collate([0, 1], False, np.random.default_rng(0))[0]
    warped = trainer._collate([0, 1], True, np.random.default_rng(0))[0]
    assert factors == [0.1] and torch.equal(warped, clean + 1.0)
    with pytest.raises(ValueError, match="vtlp_max_warp"):
        TrainConfig(corpus_dir=str(tiny_corpus), work_dir="unused", vtlp_max_warp=0.5).validate()


def test_only_a_fresh_encoder_gets_the_shortest_first_epoch(tiny_corpus: Path, tmp_path: Path) -> None:
    def first_epoch(trainer: Trainer) -> list[int]:
        frames = [u.frames for u in trainer.train_set.utterances]
        batches = trainer._epoch_batches(0)
        assert sorted(i for b in batches for i in b) == list(range(len(frames)))  # every utterance once
        return [max(frames[i] for i in b) for b in batches]

    def trainer(name: str, **overrides) -> Trainer:
        return Trainer(TrainConfig.load(_config(tmp_path, tiny_corpus, name, max_batch_frames=600, max_steps=1,
                                                **overrides)))

    cold = trainer("cold")
    cold_batches = first_epoch(cold)
    assert len(cold_batches) >= 6 and cold_batches == sorted(cold_batches)
    cold.train()
    source = str(tmp_path / "cold" / "weights_last.pt")
    assert first_epoch(trainer("new_encoder", init_from=source, init_parts="prediction")) == cold_batches
    warm = first_epoch(trainer("warm", init_from=source, init_parts="all"))
    assert warm != sorted(warm)  # every utterance (checked above), lengths mixed from the first step
