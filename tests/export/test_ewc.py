"""Elastic weight consolidation: the Fisher, the penalty and its gradient by hand; fine-tuning
with it stays nearer the original weights and exports a bundle; the protocol runs end to end."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from framegate.engine.bundle import Bundle
from framegate.export.ewc import ElasticWeightConsolidation, diagonal_fisher
from framegate.export.train import TrainConfig, Trainer

TINY_MODEL = dict(vocab_size=40, conv_channels=8, d_model=32, rnn_hidden_size=48, num_layers=1,
                  joiner_dim=32, decoder_dim=32)


def _line() -> nn.Linear:
    """y = w x + b with w = 0.5, b = 0."""
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(0.5)
        model.bias.fill_(0.0)
    return model


def test_fisher_is_the_mean_squared_per_example_gradient():
    # loss = (y - t)^2 / 2: gradient (y - t) * x for w, (y - t) for b.
    # (x=1, t=0): residual 0.5 -> (0.5, 0.5); (x=2, t=0): residual 1.0 -> (2.0, 1.0).
    model = _line()
    examples = [(torch.tensor([[1.0]]), torch.tensor([[0.0]])), (torch.tensor([[2.0]]), torch.tensor([[0.0]]))]
    fisher = diagonal_fisher(model, examples, lambda e: 0.5 * ((model(e[0]) - e[1]) ** 2).sum())
    assert fisher["weight"].item() == pytest.approx((0.25 + 4.0) / 2)
    assert fisher["bias"].item() == pytest.approx((0.25 + 1.0) / 2)
    assert model.weight.grad is None  # the estimate leaves no gradients behind


def _moved_ewc() -> tuple[nn.Linear, ElasticWeightConsolidation]:
    model = _line()
    anchor = {k: v.detach().clone() for k, v in model.named_parameters()}
    with torch.no_grad():
        model.weight.fill_(1.5)   # displacement +1
        model.bias.fill_(-1.0)    # displacement -1
    fisher = {"weight": torch.tensor([[2.125]]), "bias": torch.tensor([0.625])}
    return model, ElasticWeightConsolidation(fisher, anchor, lam=4.0)


def test_penalty_is_half_lambda_fisher_weighted_squared_displacement():
    model, ewc = _moved_ewc()
    assert ewc.penalty(model).item() == pytest.approx(4.0 / 2 * (2.125 * 1.0 + 0.625 * 1.0))


def test_penalty_gradient_is_lambda_fisher_times_displacement():
    model, ewc = _moved_ewc()
    ewc.penalty(model).backward()
    assert model.weight.grad.item() == pytest.approx(4.0 * 2.125 * 1.0)
    assert model.bias.grad.item() == pytest.approx(4.0 * 0.625 * -1.0)


def test_penalty_is_zero_at_the_anchor():
    model = _line()
    ewc = ElasticWeightConsolidation({"weight": torch.ones(1, 1), "bias": torch.ones(1)},
                                     {k: v.detach().clone() for k, v in model.named_parameters()}, lam=10.0)
    assert ewc.penalty(model).item() == 0.0


def _config(tmp: Path, corpus: Path, name: str, **overrides) -> Path:
    settings = dict(corpus_dir=str(corpus), work_dir=str(tmp / name), max_batch_frames=4000, warmup_steps=2,
                    peak_lr=3e-3, checkpoint_minutes=0.0, eval_every_steps=1000, milestone_every_steps=1000,
                    dev_utterances=2, threads=1, spec_augment_after=1000, feature_workers=1)
    settings.update(overrides)
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()] + ["[model]"]
    lines += [f"{k} = {v}" for k, v in TINY_MODEL.items()]
    path = tmp / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def base_weights(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("ewc_base")
    Trainer(TrainConfig.load(_config(tmp, tiny_corpus, "base", max_steps=4))).train()
    return tmp / "base" / "weights_last.pt"


def _fisher_distance(weights: Path, anchor: Path, fisher: dict[str, torch.Tensor]) -> float:
    """sum_i F_i (theta_i - theta*_i)^2: the displacement EWC penalizes."""
    a = torch.load(anchor, weights_only=False)["model"]
    b = torch.load(weights, weights_only=False)["model"]
    return sum(float((f * (b[k] - a[k]) ** 2).sum()) for k, f in fisher.items())


def test_ewc_finetuning_moves_less_where_the_fisher_is_large_and_exports_a_bundle(tiny_corpus, base_weights,
                                                                                 tmp_path):
    cohort = tmp_path / "cohort.jsonl"
    rows = [json.loads(l) for l in (tiny_corpus / "train.jsonl").read_text().splitlines() if l.strip()]
    speech = [{**r, "audio": str(tiny_corpus / r["audio"])} for r in rows if r["text"]][:3]
    cohort.write_text("".join(json.dumps(r) + "\n" for r in speech))
    for lam in (1e4, 0.0):
        cfg = _config(tmp_path, tiny_corpus, f"ft{lam:g}", max_steps=4, init_from=str(base_weights),
                      fisher_utterances=4, peak_lr=1e-2)
        trainer = Trainer(replace(TrainConfig.load(cfg), finetune_on=str(cohort), ewc_lambda=lam))
        assert (trainer.ewc is None) == (lam == 0)
        trainer.train()
        assert Bundle.load(tmp_path / f"ft{lam:g}" / "bundle").model_card["ewc_lambda"] == lam
    fisher = torch.load(tmp_path / "ft10000" / "fisher.pt", weights_only=False)["fisher"]
    plain = _fisher_distance(tmp_path / "ft0" / "weights_last.pt", base_weights, fisher)
    ewc = _fisher_distance(tmp_path / "ft10000" / "weights_last.pt", base_weights, fisher)
    assert 0 < ewc < 0.5 * plain


def test_finetune_manifest_errors_name_the_line(tiny_corpus, base_weights, tmp_path):
    bad = tmp_path / "bad.jsonl"
    row = {"audio": "missing.flac", "text": "hello", "speaker": "a", "synthesizer": "s", "accent": "us",
           "gender": "male", "duration_s": 1.0}
    bad.write_text(json.dumps(row) + "\n")
    cfg = _config(tmp_path, tiny_corpus, "bad", max_steps=1, init_from=str(base_weights))
    proc = subprocess.run([sys.executable, "-m", "framegate.engine.cli", "train", "--config", str(cfg),
                           "--finetune-on", str(bad), "--ewc-lambda", "10"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"framegate: error: {bad}:1: audio file '{tmp_path / 'missing.flac'}' does not exist"]


def test_protocol_writes_the_comparison_report(tiny_corpus, base_weights, tiny_embedder, tmp_path):
    from framegate.benchmarks.fairness_ewc import run

    cfg = _config(tmp_path, tiny_corpus, "protocol", max_steps=2, init_from=str(base_weights), fisher_utterances=3)
    report = run(cfg, tiny_embedder, [100.0], tmp_path / "work", tmp_path / "ewc.json", min_speakers=2)
    assert list(report["systems"]) == ["none", "plain", "ewc_100"]
    assert len(report["finetune_voices"]) >= 2
    finetune = [json.loads(l) for l in (tmp_path / "work" / "finetune.jsonl").read_text().splitlines()]
    assert {r["speaker"] for r in finetune} == set(report["finetune_voices"])
    dev_voices = {s for c in report["dev_cohorts"] for s in c["speakers"]}
    assert not dev_voices & set(report["finetune_voices"])  # fine-tuning data never comes from dev voices
    per_utt = [json.loads(l) for l in Path(report["per_utterance"]).read_text().splitlines()]
    for name, system in report["systems"].items():
        mine = [u for u in per_utt if u["system"] == name]
        assert system["overall"] == pytest.approx(sum(u["errors"] for u in mine) / sum(u["words"] for u in mine))
    assert set(report["checks"]) == {"ewc_100"}
    assert (tmp_path / "ewc.png").stat().st_size > 0


def test_finetune_recipe_warm_starts_the_default_model_shape():
    recipes = Path(__file__).resolve().parents[2] / "export" / "recipes"
    finetune = TrainConfig.load(recipes / "finetune_ewc.toml")
    assert finetune.model == TrainConfig.load(recipes / "default.toml").model
    assert finetune.init_from and finetune.fisher_utterances >= 100
