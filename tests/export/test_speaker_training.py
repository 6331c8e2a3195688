"""Speaker embeddings, torch side: ONNX equals torch, the weighted losses, the adversary, training."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from framegate.engine.speaker_embedding import SpeakerEmbedder
from framegate.export.models.speaker_embedding import ExampleAdversary
from framegate.export.speaker_export import load_embedding_model
from framegate.export.speaker_verification import equal_error_rate
from framegate.export.train_speaker import SpeakerTrainConfig, SpeakerTrainer, weighted_loss


@pytest.mark.parametrize("frames", [1, 7, 250])
def test_embedding_onnx_equals_torch(tiny_embedder, tiny_embedder_checkpoint, frames):
    x = np.random.default_rng(frames).normal(-9.0, 3.0, (frames, 80)).astype(np.float32)
    with torch.no_grad():
        expected = load_embedding_model(tiny_embedder_checkpoint)(torch.from_numpy(x)[None])[0].numpy()
    session = ort.InferenceSession(str(tiny_embedder / "embedding.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x[None]})[0][0], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(SpeakerEmbedder(tiny_embedder).embed_features(x), expected, rtol=1e-4, atol=1e-5)


def _pair_case():
    example = torch.tensor([1.0, 2.0, 3.0])
    pair = torch.tensor([[0.0, 0.1, 0.2], [0.1, 0.0, 0.4], [0.2, 0.4, 0.0]])
    labels = torch.tensor([0, 0, 1])
    same = labels[:, None] == labels[None, :]
    upper = torch.ones(3, 3, dtype=torch.bool).triu(diagonal=1)
    return example, pair, same, upper


def test_uniform_weights_give_the_plain_losses():
    example, pair, same, upper = _pair_case()
    # the only same-voice pair is (0, 1): 0.1; different-voice pairs (0, 2), (1, 2): mean 0.3
    expected = example.mean() + 0.5 * (0.1 + 0.3) / 2
    assert float(weighted_loss(example, pair, same, upper, torch.ones(3), 0.5)) == pytest.approx(float(expected))


def test_pair_weight_is_the_sum_of_the_two_examples_weights():
    example, pair, same, upper = _pair_case()
    w = torch.tensor([1.0, 2.0, 5.0])
    example_part = (1 * 1.0 + 2 * 2.0 + 5 * 3.0) / 8
    different = ((1 + 5) * 0.2 + (2 + 5) * 0.4) / ((1 + 5) + (2 + 5))
    expected = example_part + 1.0 * (0.1 + different) / 2  # one same-voice pair: its weight cancels
    assert float(weighted_loss(example, pair, same, upper, w, 1.0)) == pytest.approx(expected)


def test_adversary_weights_are_at_least_one_and_add_n_units():
    with torch.no_grad():
        weights = ExampleAdversary(80, 8)(torch.randn(6, 40, 80))
    assert bool((weights > 1.0).all())
    assert float(weights.sum()) == pytest.approx(12.0)


def test_eer_on_hand_made_trials():
    assert equal_error_rate(np.array([0.9, 0.8, 0.2, 0.1]), np.array([True, True, False, False])) == 0.0
    assert equal_error_rate(np.array([0.9, 0.8, 0.2, 0.1]), np.array([False, False, True, True])) == 1.0
    # accept >= 0.6: half the targets (0.4 rejected) and half the non-targets (0.6) -> both 0.5
    assert equal_error_rate(np.array([0.9, 0.4, 0.6, 0.1]), np.array([True, True, False, False])) == 0.5


def test_eer_matches_an_roc_from_scikit_learn():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(3)
    target = rng.random(400) < 0.3
    scores = rng.normal(0, 1, 400) + 1.2 * target
    fpr, tpr, _ = roc_curve(target, scores)
    fnr = 1 - tpr
    k = int(np.argmax(fpr >= fnr))
    t = (fnr[k - 1] - fpr[k - 1]) / ((fnr[k - 1] - fpr[k - 1]) + (fpr[k] - fnr[k]))
    assert equal_error_rate(scores, target) == pytest.approx(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


def test_reweighted_training_moves_the_adversary_and_writes_a_loadable_bundle(tiny_corpus: Path, tmp_path: Path):
    config = tmp_path / "speaker.toml"
    settings = dict(corpus_dir=str(tiny_corpus), work_dir=str(tmp_path / "spk"), speakers_per_batch=6,
                    utterances_per_speaker=2, segment_frames=60, max_steps=6, warmup_steps=2, eval_every_steps=3,
                    threads=1, feature_workers=1, adversarial_reweighting=True, adversary_lr=0.05)
    config.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
                      + "\n[model]\nchannels = 8\npooled_channels = 12\nembedding_dim = 4\n")
    trainer = SpeakerTrainer(SpeakerTrainConfig.load(config))
    before = [p.detach().clone() for p in trainer.adversary.parameters()]
    bundle = trainer.train()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.adversary.parameters()))
    log = [json.loads(line) for line in (tmp_path / "spk" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "dev_eer" in r] == [3, 6]
    embedder = SpeakerEmbedder(bundle)
    assert embedder.dim == 4 and embedder.model_card["adversarial_reweighting"] is True


def test_reweighted_recipe_differs_from_the_plain_one_only_by_the_reweighting():
    recipes = Path(__file__).resolve().parents[2] / "export" / "recipes"
    plain = SpeakerTrainConfig.load(recipes / "speaker_embedding.toml").__dict__
    reweighted = SpeakerTrainConfig.load(recipes / "speaker_embedding_reweighted.toml").__dict__
    differing = {k for k in plain if plain[k] != reweighted[k]}
    assert differing == {"work_dir", "adversarial_reweighting"}
    assert reweighted["adversarial_reweighting"] is True


def test_adversary_learns_to_weigh_up_the_hardest_examples():
    torch.manual_seed(0)
    x = torch.randn(4, 30, 80) + torch.arange(4.0)[:, None, None]  # four distinguishable inputs
    example_loss = torch.tensor([5.0, 1.0, 1.0, 1.0])
    pair_loss, same, upper = torch.zeros(4, 4), torch.eye(4, dtype=torch.bool), torch.ones(4, 4).triu(1).bool()
    adversary = ExampleAdversary(80, 8)
    opt = torch.optim.Adam(adversary.parameters(), lr=0.05)
    for _ in range(60):  # the adversary's half of the min-max: raise the weighted loss
        objective = -weighted_loss(example_loss, pair_loss, same, upper, adversary(x), 0.0)
        opt.zero_grad()
        objective.backward()
        opt.step()
    with torch.no_grad():
        weights = adversary(x)
    assert int(weights.argmax()) == 0 and float(weights[0]) > 3.0
