"""Elastic weight consolidation: fine-tune for some voices without forgetting the rest.

`framegate train --config RECIPE --finetune-on COHORT_MANIFEST --ewc-lambda L` starts from the
recipe's `init_from` weights theta*, trains on the cohort manifest only, and adds

    penalty(theta) = L / 2 * sum_i F_i * (theta_i - theta*_i)^2

to the loss, where F is the diagonal (empirical) Fisher information of the original training
objective at theta*: the mean over `fisher_utterances` utterances of the original training
split (a seeded sample) of the squared per-utterance gradients of the training loss (RNN-T +
CTC, no augmentation, dropout off). Parameters the original data leaned on get stiff springs;
the rest move freely. L = 0 is plain fine-tuning.

F depends only on theta* and the original data, so it is computed once per `init_from` and
kept in the work directory (`fisher.pt`); runs at other lambdas reuse it (copy it over).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from framegate.export.feature_cache import FeatureCache, read_manifest

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # x, lengths, y, token lengths


def diagonal_fisher(model: nn.Module, examples: Iterable, loss_fn: Callable[[object], torch.Tensor]
                    ) -> dict[str, torch.Tensor]:
    """Mean over `examples` of the squared gradient of `loss_fn(example)` (one example at a time),
    per trainable parameter; parameters the loss does not reach get zeros."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    count = 0
    for example in examples:
        model.zero_grad(set_to_none=True)
        loss_fn(example).backward()
        for name, p in params.items():
            if p.grad is not None:
                fisher[name] += p.grad.detach() ** 2
        count += 1
    if count == 0:
        raise ValueError("the Fisher information needs at least one example")
    model.zero_grad(set_to_none=True)
    return {name: f / count for name, f in fisher.items()}


@dataclass(frozen=True)
class ElasticWeightConsolidation:
    """The EWC penalty around `anchor` (theta*) with stiffness `fisher` (F) and strength `lam`."""

    fisher: dict[str, torch.Tensor]
    anchor: dict[str, torch.Tensor]
    lam: float

    def penalty(self, model: nn.Module) -> torch.Tensor:
        total = torch.zeros(())
        for name, p in model.named_parameters():
            if name in self.fisher:
                total = total + (self.fisher[name] * (p - self.anchor[name]) ** 2).sum()
        return 0.5 * self.lam * total


def _fisher_examples(cache: FeatureCache, encode: Callable[[str], list[int]]) -> Iterable[Batch]:
    for i, u in enumerate(cache.utterances):
        tokens = encode(u.text)
        if not tokens:
            continue  # a silence segment has no label sequence to score
        yield (torch.from_numpy(cache.features(i))[None], torch.tensor([u.frames]),
               torch.tensor([tokens], dtype=torch.long), torch.tensor([len(tokens)]))


def for_finetuning(corpus_dir: Path, init_from: Path, work: Path, lam: float, utterances: int, seed: int,
                   model: nn.Module, encode: Callable[[str], list[int]],
                   loss: Callable[..., tuple[torch.Tensor, dict]]) -> ElasticWeightConsolidation:
    """The trainer's hook: theta* from `init_from`, F on a seeded sample of the original training
    split (computed at theta* with `model` and the trainer's `loss`, or read from work/fisher.pt)."""
    anchor = {k: v.detach().clone() for k, v in
              torch.load(init_from, map_location="cpu", weights_only=False)["model"].items()}
    path = work / "fisher.pt"
    source = {"init_from": str(Path(init_from).resolve()), "utterances": utterances, "seed": seed}
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if saved["source"] != source:
            raise ValueError(f"{path} was computed for {saved['source']}, not {source}; delete it to recompute")
        return ElasticWeightConsolidation(saved["fisher"], anchor, lam)
    rows = [r for r in read_manifest(Path(corpus_dir) / "train.jsonl") if r["text"].strip()]
    chosen = np.random.default_rng(seed).choice(len(rows), size=min(utterances, len(rows)), replace=False)
    sample = work / "fisher_sample.jsonl"
    train_dir = (Path(corpus_dir) / "train.jsonl").resolve().parent
    sample.write_text("".join(json.dumps({**rows[i], "audio": str(train_dir / rows[i]["audio"])}) + "\n"
                              for i in sorted(chosen)), encoding="utf-8")
    cache = FeatureCache.build(sample, work / "features" / "fisher_sample")
    current = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(anchor)
    was_training = model.training
    model.eval()
    fisher = diagonal_fisher(model, _fisher_examples(cache, encode), lambda batch: loss(*batch)[0])
    model.train(was_training)
    model.load_state_dict(current)
    tmp = path.with_suffix(".tmp")
    torch.save({"fisher": fisher, "source": source}, tmp)
    tmp.replace(path)
    return ElasticWeightConsolidation(fisher, anchor, lam)
