"""StsTrainer end to end on the tiny corpus: conversations drawn on the fly, the full or the
pruned transducer loss with the late-<eot> penalty, checkpoints, resume and evaluation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from framegate.export.train import TrainConfig, run
from framegate.export.sts_train import StsTrainer, sts_loss

MODEL = dict(vocab_size=42, conv_channels=4, d_model=16, rnn_hidden_size=16, mix_layers=1, rec_layers=1,
             joiner_dim=16, decoder_dim=16, chunk_frames=8, eot_late_penalty=0.05)


def _recipe(tmp: Path, corpus: Path, name: str, **overrides) -> Path:
    settings = dict(model_type="sts", corpus_dir=str(corpus), work_dir=str(tmp / name), warmup_steps=2,
                    peak_lr=3e-3, checkpoint_minutes=0.0, eval_every_steps=3, milestone_every_steps=1000,
                    dev_utterances=2, threads=1, spec_augment_after=1000, feature_workers=1, seed=2)
    settings.update(overrides)
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    lines += ["[model]"] + [f"{k} = {json.dumps(v)}" for k, v in MODEL.items()]
    lines += ["[conversations]", "window_s = 4.0", "max_window_s = 6.0", "batch_size = 2", "steps_per_epoch = 2",
              "dev_conversations = 2", "[conversations.simulator]", "min_turns = 2", "max_turns = 3"]
    path = tmp / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("prune_range", [0, 2])
def test_sts_training_runs_resumes_and_logs_its_losses(tiny_corpus, tmp_path, prune_range):
    recipe = _recipe(tmp_path, tiny_corpus, f"sts{prune_range}", max_steps=3, prune_range=prune_range,
                     prune_warmup_steps=2)
    run(recipe)
    work = tmp_path / f"sts{prune_range}"
    log = [json.loads(line) for line in (work / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log if "dev_cpwer" in row] == [3]
    assert all(0 <= row["turn_count_accuracy"] <= 1 for row in log if "dev_cpwer" in row)
    saved = torch.load(work / "weights_last.pt", map_location="cpu", weights_only=False)
    assert saved["step"] == 3 and saved["model_type"] == "sts"
    assert ("simple_joiner" in saved) == (prune_range > 0)
    more = TrainConfig.load(_recipe(tmp_path, tiny_corpus, f"sts{prune_range}", max_steps=5, prune_range=prune_range,
                                    prune_warmup_steps=2))
    trainer = StsTrainer(more)
    assert trainer.step == 3  # resumed, not restarted
    trainer.train()
    assert torch.load(work / "weights_last.pt", map_location="cpu", weights_only=False)["step"] == 5


def test_a_later_stage_starts_from_an_sts_checkpoint_with_its_simple_joiner(tiny_corpus, tmp_path):
    """A second stage (e.g. another <eot> tolerance) continues every trained weight, the pruned
    loss's simple joiner included, and records where it came from."""
    run(_recipe(tmp_path, tiny_corpus, "stage1", max_steps=2, prune_range=2, prune_warmup_steps=0))
    first = torch.load(tmp_path / "stage1" / "weights_last.pt", map_location="cpu", weights_only=False)
    stage2 = StsTrainer(TrainConfig.load(_recipe(tmp_path, tiny_corpus, "stage2", max_steps=1, prune_range=2,
                                                 prune_warmup_steps=0,
                                                 init_from=str(tmp_path / "stage1" / "weights_last.pt"))))
    for key, value in first["model"].items():
        assert torch.equal(stage2.model.state_dict()[key], value), key
    for key, value in first["simple_joiner"].items():
        assert torch.equal(stage2.simple_joiner.state_dict()[key], value), key
    assert stage2.warm_start["step"] == 2 and stage2.warm_start["from"].endswith("weights_last.pt")
    assert stage2.sp.get_piece_size() == MODEL["vocab_size"]  # <sot>/<eot> not appended twice


def test_the_pruned_sts_loss_is_the_full_one_when_windows_cover_every_label(tiny_corpus, tmp_path):
    """The late-<eot> penalty reaches the pruned lattice exactly as the full one."""
    trainer = StsTrainer(TrainConfig.load(_recipe(tmp_path, tiny_corpus, "wide", max_steps=1, prune_range=64,
                                                  prune_warmup_steps=0)))
    trainer.model.eval()
    batch = trainer._collate([(2, 0, 0, 0), (2, 0, 0, 1)], False, np.random.default_rng(0))
    assert int(batch[3].max()) > 0  # turns with targets, so <eot> penalties apply
    with torch.no_grad():
        pruned, parts = trainer._loss(*batch)
        full, full_parts = sts_loss(trainer.model, *batch, ctc_weight=trainer.cfg.ctc_weight)
    assert set(parts) == {"rnnt", "simple", "ctc", "activity"} and set(full_parts) == {"rnnt", "ctc", "activity"}
    simple = trainer.cfg.simple_loss_scale * parts["simple"]
    assert float(pruned) - simple == pytest.approx(float(full), rel=1e-5)
