"""Training recipe for the speaker-embedding network: `framegate train-speaker --config FILE`.

The voices of the corpus's training split are the classes (additive-margin softmax), plus a
pairwise logistic loss on in-batch cosine similarities. Batches hold `speakers_per_batch`
voices x `utterances_per_speaker` random crops of `segment_frames` frames, so every batch has
same-voice pairs. Held-out voices (the dev split: whole voice families never trained on)
give the equal-error rate logged during training.

With `adversarial_reweighting = true` an adversary over the input features assigns every
example a weight (pair (i, j) gets w_i + w_j) and is trained to raise the weighted loss while
the embedding network lowers it (min-max, one step each per batch).

Features are the engine's fbank, cached once (`features_dir` may point at the transducer's
feature cache of the same corpus to skip recomputing it). Checkpoints every few minutes with
automatic resume; at the end `weights_last.pt` and the embedding bundle `bundle/`. A first
SIGTERM or SIGINT (export/stop_request.py) ends the run after the current step with only the
checkpoint: the run resumes from it and is not finished.
"""
from __future__ import annotations

import json
import math
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from framegate.export.feature_cache import FeatureCache
from framegate.export.models.speaker_embedding import (AdditiveMarginSoftmax, ExampleAdversary, PairLoss,
                                                       SpeakerEmbedding, SpeakerEmbeddingConfig)
from framegate.export.speaker_verification import equal_error_rate, trial_scores
from framegate.export.stop_request import StopRequest

MODEL_TYPE = "speaker_embedding"


@dataclass(frozen=True)
class SpeakerTrainConfig:
    corpus_dir: str
    work_dir: str
    model: SpeakerEmbeddingConfig = field(default_factory=SpeakerEmbeddingConfig)
    features_dir: str = ""               # default: work_dir/features
    speakers_per_batch: int = 32
    utterances_per_speaker: int = 4
    segment_frames: int = 200            # 2 s crops
    max_steps: int = 20_000
    peak_lr: float = 2e-3
    warmup_steps: int = 500
    weight_decay: float = 1e-4
    margin: float = 0.2
    scale: float = 30.0
    pair_weight: float = 0.5
    adversarial_reweighting: bool = False
    adversary_hidden: int = 64
    adversary_lr: float = 1e-3
    eval_every_steps: int = 1000
    eval_utterances: int = 400
    checkpoint_minutes: float = 5.0
    max_hours: float = 1e9
    threads: int = 2
    seed: int = 1
    feature_workers: int = 2

    def validate(self) -> None:
        if not (Path(self.corpus_dir) / "train.jsonl").exists():
            raise ValueError(f"SpeakerTrainConfig.corpus_dir: {self.corpus_dir}/train.jsonl does not exist")
        for name in ("speakers_per_batch", "segment_frames", "max_steps", "warmup_steps", "eval_every_steps",
                     "eval_utterances", "threads", "adversary_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"SpeakerTrainConfig.{name} must be >= 1")
        if self.utterances_per_speaker < 2:
            raise ValueError("SpeakerTrainConfig.utterances_per_speaker must be >= 2 (same-voice pairs)")
        if not 0 <= self.margin < 1 or self.scale <= 0 or self.pair_weight < 0:
            raise ValueError("SpeakerTrainConfig: need 0 <= margin < 1, scale > 0, pair_weight >= 0")
        self.model.validate()

    @staticmethod
    def load(path: Path) -> "SpeakerTrainConfig":
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        model = SpeakerEmbeddingConfig(**raw.pop("model", {}))
        unknown = set(raw) - {f.name for f in fields(SpeakerTrainConfig)}
        if unknown:
            raise ValueError(f"{path}: unknown speaker-training settings {sorted(unknown)}")
        return SpeakerTrainConfig(model=model, **raw)


def weighted_loss(example_loss: torch.Tensor, pair_loss: torch.Tensor, same: torch.Tensor, upper: torch.Tensor,
                  weights: torch.Tensor, pair_weight: float) -> torch.Tensor:
    """sum_i w_i l_i / sum_i w_i + pair_weight * (mean over same-voice pairs + mean over different-voice
    pairs), each pair (i < j) weighted by w_i + w_j. Uniform weights give the unweighted loss."""
    example = (weights * example_loss).sum() / weights.sum()
    pair_weights = (weights[:, None] + weights[None, :]) * upper
    pair = example_loss.new_zeros(())
    for mask in (same, ~same):
        if bool((upper & mask).any()):
            w = pair_weights * mask
            pair = pair + (w * pair_loss).sum() / w.sum()
    return example + pair_weight * pair / 2


def _lr(step: int, cfg: SpeakerTrainConfig) -> float:
    step = max(step, 1)
    return cfg.peak_lr * min(step / cfg.warmup_steps, math.sqrt(cfg.warmup_steps / step))


class SpeakerTrainer:
    def __init__(self, cfg: SpeakerTrainConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.work = Path(cfg.work_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        features = Path(cfg.features_dir) if cfg.features_dir else self.work / "features"
        corpus = Path(cfg.corpus_dir)
        self.train_set = FeatureCache.build(corpus / "train.jsonl", features / "train", cfg.feature_workers)
        self.dev_set = FeatureCache.build(corpus / "dev.jsonl", features / "dev", cfg.feature_workers)
        by_speaker: dict[str, list[int]] = {}
        for i, u in enumerate(self.train_set.utterances):
            if u.speaker:  # noise-only segments have no voice
                by_speaker.setdefault(u.speaker, []).append(i)
        self.speakers = sorted(by_speaker)
        self.utterances_of = [by_speaker[s] for s in self.speakers]
        if len(self.speakers) < 2:
            raise ValueError(f"{corpus}/train.jsonl has {len(self.speakers)} voice(s); speaker training needs >= 2")
        self.model = SpeakerEmbedding(cfg.model)
        self.head = AdditiveMarginSoftmax(cfg.model.embedding_dim, len(self.speakers), cfg.margin, cfg.scale)
        self.pairs = PairLoss()
        params = [*self.model.parameters(), *self.head.parameters(), *self.pairs.parameters()]
        self.opt = torch.optim.AdamW(params, lr=cfg.peak_lr, weight_decay=cfg.weight_decay)
        self.adversary = ExampleAdversary(cfg.model.num_bins, cfg.adversary_hidden)
        self.adversary_opt = torch.optim.Adam(self.adversary.parameters(), lr=cfg.adversary_lr)
        self.step = 0
        self.rng = np.random.default_rng(cfg.seed)
        self._resume()

    # -- data --------------------------------------------------------------------------
    def _crop(self, i: int) -> np.ndarray:
        """A random `segment_frames` crop; shorter utterances are tiled to length."""
        feats = self.train_set.features(i)
        n = self.cfg.segment_frames
        if len(feats) < n:
            feats = np.tile(feats, (-(-n // max(len(feats), 1)), 1))
        start = int(self.rng.integers(0, len(feats) - n + 1))
        return feats[start:start + n]

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        voices = self.rng.choice(len(self.speakers), size=min(cfg.speakers_per_batch, len(self.speakers)),
                                 replace=False)
        crops, labels = [], []
        for v in voices:
            pool = self.utterances_of[v]
            for i in self.rng.choice(pool, size=cfg.utterances_per_speaker, replace=len(pool) < cfg.utterances_per_speaker):
                crops.append(self._crop(int(i)))
                labels.append(int(v))
        return torch.from_numpy(np.stack(crops)), torch.tensor(labels)

    # -- one min-max step --------------------------------------------------------------
    def losses(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                      torch.Tensor]:
        emb = self.model(x)
        pair_loss, same, upper = self.pairs(emb, labels)
        return self.head(emb, labels), pair_loss, same, upper

    def train_step(self, x: torch.Tensor, labels: torch.Tensor) -> dict:
        cfg = self.cfg
        example_loss, pair_loss, same, upper = self.losses(x, labels)
        if cfg.adversarial_reweighting:
            weights = self.adversary(x)
            adversary_objective = -weighted_loss(example_loss.detach(), pair_loss.detach(), same, upper, weights,
                                                 cfg.pair_weight)
            self.adversary_opt.zero_grad(set_to_none=True)
            adversary_objective.backward()
            self.adversary_opt.step()
            weights = weights.detach()
        else:
            weights = torch.ones(len(labels))
        loss = weighted_loss(example_loss, pair_loss, same, upper, weights, cfg.pair_weight)
        for g in self.opt.param_groups:
            g["lr"] = _lr(self.step + 1, cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        self.step += 1
        return dict(step=self.step, loss=loss.detach().item(), am_softmax=example_loss.detach().mean().item(),
                    max_weight=float(weights.max()), lr=_lr(self.step, cfg))

    # -- held-out voices ---------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict:
        """EER on the dev split's voices (never trained on), cosine scoring of whole utterances."""
        self.model.eval()
        voiced = [i for i, u in enumerate(self.dev_set.utterances) if u.speaker]
        chosen = voiced[:: max(1, len(voiced) // self.cfg.eval_utterances)][:self.cfg.eval_utterances]
        emb = np.stack([self.model(torch.from_numpy(self.dev_set.features(i))[None])[0].numpy() for i in chosen])
        self.model.train()
        scores, target = trial_scores(emb, [self.dev_set.utterances[i].speaker for i in chosen])
        eer = equal_error_rate(scores, target) if target.any() and (~target).any() else None  # None: no trials
        return dict(step=self.step, dev_eer=eer, dev_utterances=len(chosen))

    # -- checkpoints -------------------------------------------------------------------
    def _state(self) -> dict:
        return dict(model=self.model.state_dict(), head=self.head.state_dict(), pairs=self.pairs.state_dict(),
                    adversary=self.adversary.state_dict(), opt=self.opt.state_dict(),
                    adversary_opt=self.adversary_opt.state_dict(), step=self.step, rng=self.rng.bit_generator.state,
                    speakers=self.speakers, config=asdict(self.cfg))

    def _resume(self) -> None:
        path = self.work / "checkpoint.pt"
        if not path.exists():
            return
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["speakers"] != self.speakers:
            raise ValueError(f"{path}: trained on other voices than {self.cfg.corpus_dir}/train.jsonl")
        for name in ("model", "head", "pairs", "adversary", "opt", "adversary_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.step = state["step"]
        self.rng.bit_generator.state = state["rng"]
        print(f"resumed from {path} at step {self.step}", flush=True)

    def _save(self) -> None:
        tmp = self.work / "checkpoint.tmp"
        torch.save(self._state(), tmp)
        tmp.replace(self.work / "checkpoint.pt")

    def save_weights(self, path: Path) -> None:
        torch.save(dict(model=self.model.state_dict(), model_config=self.cfg.model.to_dict(), model_type=MODEL_TYPE,
                        step=self.step, speakers=self.speakers,
                        adversarial_reweighting=self.cfg.adversarial_reweighting), path)

    def train(self) -> Path | None:
        """Train to max_steps (or max_hours), then write weights_last.pt and bundle/; returns the bundle,
        or None when a stop request ended the run early (then only checkpoint.pt is written)."""
        from framegate.export.speaker_export import export_embedding_bundle

        cfg = self.cfg
        start = last_ckpt = time.monotonic()
        self.model.train()
        with open(self.work / "train_log.jsonl", "a", encoding="utf-8") as log, StopRequest() as stop:
            while self.step < cfg.max_steps and (time.monotonic() - start) / 3600 < cfg.max_hours:
                record = self.train_step(*self.batch())
                if self.step % 50 == 0:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                if stop.requested:
                    print(f"stop requested: saving a checkpoint at step {self.step}", flush=True)
                    self._save()
                    return None
                if self.step % cfg.eval_every_steps == 0:
                    result = self.evaluate()
                    log.write(json.dumps(result) + "\n")
                    log.flush()
                    print(f"step {self.step}: loss {record['loss']:.3f}, dev EER {result['dev_eer']}", flush=True)
                if time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60:
                    self._save()
                    last_ckpt = time.monotonic()
        self._save()
        self.save_weights(self.work / "weights_last.pt")
        card = {"checkpoint": str(self.work / "weights_last.pt"), "step": self.step, "voices": len(self.speakers),
                "corpus": cfg.corpus_dir, "adversarial_reweighting": cfg.adversarial_reweighting}
        return export_embedding_bundle(self.work / "weights_last.pt", self.work / "bundle", model_card=card)


def run(config_path: Path) -> Path | None:
    return SpeakerTrainer(SpeakerTrainConfig.load(config_path)).train()
