"""Training recipe for the streaming LSTM transducer: `framegate train --config FILE`.

Built for two CPU cores: features cached once, length-bucketed batches (shortest first
in a fresh encoder's first epoch), an auxiliary CTC loss to leave the blank plateau early, SpecAugment
after a warm-up, checkpoints every few minutes with automatic resume, periodic dev WER. A first
SIGTERM or SIGINT stops the run after the current step with a checkpoint (export/stop_request.py).
Under `torchrun` it trains data-parallel (gloo on CPU, nccl on GPUs).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import jiwer
import numba
import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from framegate.export.distillation import EncoderDistillation
from framegate.export.feature_cache import FeatureCache, length_buckets, read_manifest
from framegate.export.frequency_warp import warp_batch
from framegate.export.greedy import greedy_search
from framegate.export.loss import rnnt_loss
from framegate.export.models import model_classes
from framegate.export.models.lstm_transducer import (LstmTransducerConfig, decoder_contexts,
                                                     subsampled_length)
from framegate.export.nonspeech_padding import NonSpeechPadding, encoder_frame_mask
from framegate.export.pruned_loss import SimpleJoiner, pruned_rnnt_loss
from framegate.export.stop_request import StopRequest
from framegate.export.tokenizer import BLANK_ID, load_bpe, train_bpe, write_tokens_txt


@dataclass(frozen=True)
class TrainConfig:
    corpus_dir: str
    work_dir: str
    model: LstmTransducerConfig = field(default_factory=LstmTransducerConfig)  # or the model_type's config
    model_type: str = "lstm_transducer"  # a key of framegate.export.models.MODEL_TYPES
    max_batch_frames: int = 6000          # ~60 s of audio per batch (per process)
    peak_lr: float = 1.5e-3
    warmup_steps: int = 800
    lr_schedule: str = "inverse_sqrt"     # or "hold_linear": hold peak_lr, then linear to final_lr by max_steps
    lr_step_offset: int = 0               # a warm start continues its source run's schedule: the steps it had
    decay_steps: int = 0                  # hold_linear: length of the final linear decay
    final_lr: float = 0.0                 # hold_linear: learning rate reached at max_steps
    weight_decay: float = 1e-3
    grad_clip: float = 5.0
    ctc_weight: float = 0.3
    fastemit_lambda: float = 0.0          # FastEmit (export/loss.py): > 0 pulls emissions earlier (last-word latency)
    delay_penalty: float = 0.0            # delay-penalized lattice (export/loss.py), per encoder frame: same aim
    prune_range: int = 0                  # > 0: pruned transducer loss (export/pruned_loss.py), windows of this
                                          # many label positions per frame; 0: the full lattice
    simple_loss_scale: float = 0.5        # pruned: weight of the simple joiner's loss after prune_warmup_steps
    prune_warmup_steps: int = 2000        # pruned: simple loss 1 -> simple_loss_scale, pruned 0.1 -> 1 meanwhile
    ctc_units: str = "tokens"             # auxiliary CTC over the BPE tokens, or "chars" (leaves the plateau sooner)
    spec_augment_after: int = 1500        # steps without augmentation first
    vtlp_max_warp: float = 0.0            # > 0: with augmentation, each utterance's frequency axis warped by
                                          # a factor from 1 +- this (export/frequency_warp.py): voice variety
    nonspeech_pad_s: float = 0.0          # > 0: up to this many seconds of the corpus's silence/noise
                                          # before and after utterances (export/nonspeech_padding.py)
    nonspeech_pad_probability: float = 0.5  # share of utterances padded
    max_steps: int = 1_000_000
    max_hours: float = 1e9                # stop (with a checkpoint) after this much wall time
    checkpoint_minutes: float = 5.0
    eval_every_steps: int = 1000
    milestone_every_steps: int = 5000
    dev_utterances: int = 300
    threads: int = 2
    seed: int = 1
    feature_workers: int = 2
    init_from: str = ""                   # warm start: a weights checkpoint (its bpe.model beside it)
    init_parts: str = "all"               # "all"; "encoder": only its encoder (new tokens, new heads);
                                          # "prediction": only its decoder and joiner and its tokens (new encoder)
    finetune_on: str = ""                 # fine-tune init_from on this manifest instead of train.jsonl
    ewc_lambda: float = 0.0               # with finetune_on: EWC strength (export/ewc.py); 0 = plain
    fisher_utterances: int = 500          # original training utterances the EWC Fisher is estimated on
    conversations: dict = field(default_factory=dict)  # model_type "sts": export/sts_train.py ConversationTraining
    distill_from: str = ""                # a frozen reference's weights (e.g. the dense model) whose encoder
    distill_weight: float = 0.0           # output the student's is pulled toward (export/distillation.py)
    distill_speech_only: bool = False     # leave the frames without speech out of the distillation loss

    def validate(self) -> None:
        if not (Path(self.corpus_dir) / "train.jsonl").exists():
            raise ValueError(f"TrainConfig.corpus_dir: {self.corpus_dir}/train.jsonl does not exist")
        for name in ("max_batch_frames", "warmup_steps", "max_steps", "eval_every_steps", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1")
        for name in ("prune_range", "prune_warmup_steps", "simple_loss_scale", "lr_step_offset", "nonspeech_pad_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0")
        if not 0.0 <= self.vtlp_max_warp < 0.5:
            raise ValueError(f"TrainConfig.vtlp_max_warp must be in [0, 0.5), got {self.vtlp_max_warp}")
        if self.distill_weight < 0 or (self.distill_weight > 0) != bool(self.distill_from):
            raise ValueError("TrainConfig.distill_weight must be > 0 with distill_from and 0 without it, "
                             f"got {self.distill_weight} with distill_from {self.distill_from!r}")
        if self.distill_speech_only and not self.distill_from:
            raise ValueError("TrainConfig.distill_speech_only needs distill_from")
        if self.init_parts not in ("all", "encoder", "prediction"):
            raise ValueError(f"TrainConfig.init_parts must be 'all', 'encoder' or 'prediction', "
                             f"got {self.init_parts!r}")
        if not 0.0 <= self.fastemit_lambda < 1.0:
            raise ValueError(f"TrainConfig.fastemit_lambda must be in [0, 1), got {self.fastemit_lambda}")
        if not 0.0 <= self.delay_penalty < 1.0:
            raise ValueError(f"TrainConfig.delay_penalty must be in [0, 1), got {self.delay_penalty}")
        if self.lr_schedule not in ("inverse_sqrt", "hold_linear"):
            raise ValueError(f"TrainConfig.lr_schedule must be 'inverse_sqrt' or 'hold_linear', got {self.lr_schedule!r}")
        if self.lr_schedule == "hold_linear" and not 0 < self.decay_steps <= self.max_steps:
            raise ValueError("TrainConfig.decay_steps must be in (0, max_steps] for lr_schedule 'hold_linear'")
        if self.ctc_units not in ("tokens", "chars"):
            raise ValueError(f"TrainConfig.ctc_units must be 'tokens' or 'chars', got {self.ctc_units!r}")
        if self.finetune_on:
            from framegate.export.corpus.manifest import speech_rows

            if not self.init_from or self.ewc_lambda < 0 or self.fisher_utterances < 1:
                raise ValueError("TrainConfig.finetune_on needs init_from (the model to fine-tune), "
                                 "ewc_lambda >= 0 and fisher_utterances >= 1")
            speech_rows(self.finetune_on)  # a bad line is a ManifestError naming it
        self.model.validate()

    @staticmethod
    def load(path: Path) -> "TrainConfig":
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        model = model_classes(raw.get("model_type", "lstm_transducer"))[1](**raw.pop("model", {}))
        known = {f.name for f in fields(TrainConfig)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown training settings {sorted(unknown)}")
        return TrainConfig(model=model, **raw)  # relative paths are relative to the working directory


CTC_CHARS = " 'abcdefghijklmnopqrstuvwxyz"  # normalized text's alphabet; CTC id = index + 1, 0 = blank


def _char_targets(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded character ids (N, U) and lengths for the character CTC head."""
    ids = [[CTC_CHARS.index(ch) + 1 for ch in text if ch in CTC_CHARS] for text in texts]
    lengths = torch.tensor([len(i) for i in ids])
    out = torch.zeros(len(ids), max(1, int(lengths.max())), dtype=torch.long)
    for row, i in enumerate(ids):
        out[row, :len(i)] = torch.tensor(i, dtype=torch.long)
    return out, lengths


def full_lattice_loss(joiner: nn.Module, enc: torch.Tensor, dec: torch.Tensor, y: torch.Tensor, enc_len: torch.Tensor,
                      tlen: torch.Tensor, token_penalty: tuple[int, torch.Tensor] | None = None,
                      fastemit_lambda: float = 0.0, delay_penalty: float = 0.0) -> torch.Tensor:
    """Mean transducer loss over the joiner's whole (T, U+1) lattice; token_penalty (token, (B, T, U+1))
    lowers that token's logit per lattice node (STS's late <eot>)."""
    logits = joiner(enc.unsqueeze(2), dec.unsqueeze(1))
    if token_penalty is not None:
        logits[..., token_penalty[0]] -= token_penalty[1].to(logits.dtype)
    return rnnt_loss(logits, y, enc_len, tlen, blank=BLANK_ID, reduction="mean",
                     fastemit_lambda=fastemit_lambda, delay_penalty=delay_penalty)


def _lr(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then inverse-sqrt decay (open-ended runs) or a hold and a final linear decay
    (runs with a known budget: the decay at the end is where most of a fixed budget's gain lands).
    `lr_step_offset` shifts the whole schedule, so a warm start from another run's step N
    (a gated model from its dense reference's milestone) learns at the rate the source run
    continues with, and the two are compared at the same learning rate, step for step."""
    step = max(step, 1) + cfg.lr_step_offset
    if step < cfg.warmup_steps:
        return cfg.peak_lr * step / cfg.warmup_steps
    if cfg.lr_schedule == "inverse_sqrt":
        return cfg.peak_lr * math.sqrt(cfg.warmup_steps / step)
    remaining = (cfg.max_steps + cfg.lr_step_offset - step) / cfg.decay_steps
    return cfg.final_lr + (cfg.peak_lr - cfg.final_lr) * min(1.0, max(0.0, remaining))


def _spec_augment(x: torch.Tensor, lengths: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Two frequency masks (<= 15 bins) and time masks covering <= ~10 % of each utterance."""
    x = x.clone()
    for i in range(x.shape[0]):
        for _ in range(2):
            w = int(rng.integers(0, 16))
            f0 = int(rng.integers(0, x.shape[2] - w + 1))
            x[i, :, f0:f0 + w] = 0.0
        n = int(lengths[i])
        for _ in range(max(1, n // 300)):
            w = int(rng.integers(0, min(30, max(1, n // 10)) + 1))
            t0 = int(rng.integers(0, max(1, n - w)))
            x[i, t0:t0 + w] = 0.0
    return x


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.ewc = None  # the EWC penalty when fine-tuning (below, once the Fisher is known)
        self.work = Path(cfg.work_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        torch.set_num_threads(cfg.threads)
        # The loss's numba prange too: its idle OpenMP workers otherwise spin on cores another job needs.
        numba.set_num_threads(min(cfg.threads, numba.config.NUMBA_NUM_THREADS))
        torch.manual_seed(cfg.seed)
        self._prepare_data()
        self.model = model_classes(cfg.model_type)[0](cfg.model)
        # A character CTC head belongs to training only (the trainer, not the exported model).
        self.char_ctc = nn.Linear(cfg.model.joiner_dim, len(CTC_CHARS) + 1) if cfg.ctc_units == "chars" else None
        self.simple_joiner = SimpleJoiner(cfg.model.joiner_dim, cfg.model.vocab_size) if cfg.prune_range else None
        self.opt = torch.optim.AdamW(self._parameters(), lr=cfg.peak_lr, weight_decay=cfg.weight_decay)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.train_seconds = 0.0  # wall time spent training, summed over resumed runs
        self.warm_start: dict | None = None  # where init_from's weights came from (steps, wall time, parts)
        if not self._resume():
            if cfg.init_from:
                self._warm_start(Path(cfg.init_from))
            if self.fresh_encoder:
                self._init_normalization()
        self.distillation = (EncoderDistillation(Path(cfg.distill_from), cfg.distill_weight, cfg.model.joiner_dim)
                             if cfg.distill_from else None)
        if cfg.finetune_on and cfg.ewc_lambda > 0:
            from framegate.export.ewc import for_finetuning

            self.ewc = for_finetuning(Path(cfg.corpus_dir), Path(cfg.init_from), self.work, cfg.ewc_lambda,
                                      cfg.fisher_utterances, cfg.seed, self.model, self.sp.encode, self._loss)

    def _heads(self) -> dict[str, nn.Module]:
        """The training-only heads this run has, by their checkpoint key (none is exported)."""
        heads = {"char_ctc": self.char_ctc, "simple_joiner": self.simple_joiner}
        return {name: head for name, head in heads.items() if head is not None}

    def _heads_state(self) -> dict:
        return {name: head.state_dict() for name, head in self._heads().items()}

    def _load_heads(self, saved: dict, names: tuple[str, ...] = ("char_ctc", "simple_joiner")) -> None:
        """Load the heads a checkpoint has and this run has too; a head new to the run starts fresh."""
        for name, head in self._heads().items():
            if name in names and saved.get(name):
                head.load_state_dict(saved[name])

    def _parameters(self) -> list[nn.Parameter]:
        """Everything the optimizer trains: the model and the training-only heads."""
        return list(self.model.parameters()) + [p for head in self._heads().values() for p in head.parameters()]

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def _prepare_data(self) -> None:
        corpus = Path(self.cfg.corpus_dir)
        bpe_path = self.work / "bpe.model"
        if self.is_main:
            if self.cfg.init_from and self.cfg.init_parts in ("all", "prediction") and not bpe_path.exists():
                shutil.copyfile(Path(self.cfg.init_from).parent / "bpe.model", bpe_path)  # its token ids
            if not bpe_path.exists():
                texts = [r["text"] for r in read_manifest(corpus / "train.jsonl") if r["text"]]
                train_bpe(texts, bpe_path, self.cfg.model.vocab_size)
            write_tokens_txt(load_bpe(bpe_path), self.work / "tokens.txt")
            sources = {"train": Path(self.cfg.finetune_on or corpus / "train.jsonl"), "dev": corpus / "dev.jsonl"}
            for split, manifest in sources.items():
                FeatureCache.build(manifest, self.work / "features" / split, self.cfg.feature_workers)
        self._barrier()
        self.sp = load_bpe(bpe_path)
        self.train_set = FeatureCache(self.work / "features" / "train")
        self.dev_set = FeatureCache(self.work / "features" / "dev")
        self.train_tokens = [self.sp.encode(u.text) for u in self.train_set.utterances]
        self.padding = (NonSpeechPadding(self.train_set, self.cfg.nonspeech_pad_s, self.cfg.nonspeech_pad_probability)
                        if self.cfg.nonspeech_pad_s > 0 else None)

    def _init_normalization(self) -> None:
        feats = self.train_set.feats
        sample = np.asarray(feats[:: max(1, len(feats) // 200_000)], dtype=np.float64)
        enc = self.model.encoder
        enc.feature_mean.copy_(torch.from_numpy(sample.mean(0)).float())
        enc.feature_inv_std.copy_(torch.from_numpy(1.0 / (sample.std(0) + 1e-5)).float())

    def _record_warm_start(self, path: Path, saved: dict, parts: str) -> None:
        """Where init_from's weights came from, with the source's own warm start: the whole chain."""
        self.warm_start = {"from": str(path), "parts": parts, "step": saved.get("step", 0),
                           "train_seconds": saved.get("train_seconds", 0.0), "before": saved.get("warm_start")}

    def _warm_start(self, path: Path) -> None:
        """Start from another model's weights; only parameters this model adds (e.g. arbitrators)
        may be missing from it, and nothing of it may be left unused. With init_parts "encoder"
        only its encoder (and character CTC head) is kept: a new token set reuses the slow part.
        With "prediction" only its decoder and joiner (and token set) are kept, shapes exactly
        equal: a new encoder (e.g. the dense Transformer) starts beside a trained prediction network."""
        saved = torch.load(path, map_location="cpu", weights_only=False)
        state = saved["model"]
        self._record_warm_start(path, saved, self.cfg.init_parts)
        if self.cfg.init_parts == "prediction":
            self._load_prediction_network(path, state)
            if self.is_main:
                print(f"warm start from {path}: decoder and joiner only", flush=True)
            return
        self._load_heads(saved, ("char_ctc",) if self.cfg.init_parts == "encoder" else ("char_ctc", "simple_joiner"))
        if self.cfg.init_parts == "encoder":
            self.model.encoder.load_state_dict({k[len("encoder."):]: v for k, v in state.items()
                                                if k.startswith("encoder.")})
            if self.is_main:
                print(f"warm start from {path}: encoder only", flush=True)
            return
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        added = [k for k in missing if "arbitrator" not in k]
        if added or unexpected:
            raise ValueError(f"init_from {path}: missing {added}, unexpected {unexpected}")
        if self.is_main:
            print(f"warm start from {path} (new: {len(missing)} arbitrator tensors)", flush=True)

    def _load_prediction_network(self, path: Path, state: dict) -> None:
        """Copy init_from's decoder and joiner; a tensor missing, left over or of another shape
        (another vocab_size, decoder_dim, joiner_dim or context_size) is a ValueError naming it."""
        parts = ("decoder", "joiner")
        own = {f"{part}.{k}": v for part in parts for k, v in getattr(self.model, part).state_dict().items()}
        theirs = {k: v for k, v in state.items() if k.split(".", 1)[0] in parts}
        wrong = [f"{k}: init_from {tuple(theirs[k].shape) if k in theirs else 'missing'}, "
                 f"model {tuple(own[k].shape) if k in own else 'missing'}"
                 for k in sorted(own.keys() | theirs.keys())
                 if k not in own or k not in theirs or theirs[k].shape != own[k].shape]
        if wrong:
            raise ValueError(f"init_from {path}: its prediction network does not fit this model: {'; '.join(wrong)}")
        for part in parts:
            getattr(self.model, part).load_state_dict({k[len(part) + 1:]: v for k, v in theirs.items()
                                                       if k.startswith(f"{part}.")})

    # -- checkpoints -------------------------------------------------------------------
    def _checkpoint_path(self) -> Path:
        return self.work / "checkpoint.pt"

    def _save(self) -> None:
        if not self.is_main:
            return
        state = dict(model=self.model.state_dict(), opt=self.opt.state_dict(), step=self.step, epoch=self.epoch,
                     **self._heads_state(), batch_in_epoch=self.batch_in_epoch, train_seconds=self.train_seconds,
                     config=asdict(self.cfg), warm_start=self.warm_start)
        tmp = self._checkpoint_path().with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self._checkpoint_path())

    def save_weights(self, path: Path) -> None:
        """A weights-only checkpoint: enough to export or warm-start, small enough to keep."""
        torch.save(dict(model=self.model.state_dict(), model_config=asdict(self.cfg.model), **self._heads_state(),
                        model_type=self.cfg.model_type, step=self.step, epoch=self.epoch,
                        train_seconds=self.train_seconds, warm_start=self.warm_start), path)

    def _resume(self) -> bool:
        """Continue from work_dir/checkpoint.pt, or, on a new machine that only has the kept
        weights-only milestone (work_dir/weights_last.pt), from its weights and step with a
        fresh optimizer state and the next epoch."""
        path = self._checkpoint_path()
        if not path.exists():
            path = self.work / "weights_last.pt"
            if not path.exists():
                return False
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(state["model"])
        self._load_heads(state)
        if "opt" in state:
            try:
                self.opt.load_state_dict(state["opt"])
            except ValueError:  # the trained parameters changed (e.g. a char CTC head added): fresh moments
                print(f"{path}: optimizer state does not fit the parameters; starting it afresh", flush=True)
            self.epoch, self.batch_in_epoch = state["epoch"], state["batch_in_epoch"]
        else:
            self.epoch, self.batch_in_epoch = state.get("epoch", 0) + 1, 0
        self.step = state["step"]
        self.train_seconds = state.get("train_seconds", 0.0)
        self.warm_start = state.get("warm_start")
        if self.is_main:
            print(f"resumed from {path} at step {self.step} (epoch {self.epoch})", flush=True)
        return True

    @property
    def fresh_encoder(self) -> bool:
        """The encoder starts from random weights (no warm start, or one of the prediction network only)."""
        return not self.cfg.init_from or self.cfg.init_parts == "prediction"

    # -- batches -----------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """Shortest first in a fresh encoder's first epoch (short utterances get it off the blank
        plateau); shuffled otherwise: a warm-started run needs no curriculum, and a short one would
        otherwise see only the shortest utterances of a large corpus."""
        pad = 0 if self.padding is None else round(self.padding.expected_frames)
        frames = [u.frames + pad for u in self.train_set.utterances]
        curriculum = epoch == 0 and self.fresh_encoder
        rng = None if curriculum else np.random.default_rng(self.cfg.seed * 1000 + epoch)
        batches = length_buckets(frames, self.cfg.max_batch_frames, rng)
        usable = len(batches) - len(batches) % self.world
        if usable == 0:
            raise ValueError(f"{len(batches)} batches cannot feed {self.world} processes: lower max_batch_frames")
        return batches[self.rank:usable:self.world]

    def _collate(self, idx: list[int], augment: bool, rng: np.random.Generator):
        """(x, lengths, y, tlen, nonspeech): nonspeech (N, T) flags the fbank frames without speech
        (padding crops, and the whole of a silence/noise segment)."""
        feats = [self.train_set.features(i) for i in idx]
        starts = [0] * len(feats)
        speech = [len(f) if self.train_set.utterances[i].text else 0 for i, f in zip(idx, feats)]
        if self.padding is not None:
            feats, starts = (list(z) for z in zip(*(self.padding(f, rng) for f in feats)))
        lengths = torch.tensor([len(f) for f in feats])
        frames = torch.arange(int(lengths.max()))
        nonspeech = torch.stack([(frames < s) | (frames >= s + n) for s, n in zip(starts, speech)])
        x = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(f) for f in feats], batch_first=True)
        if augment and self.cfg.vtlp_max_warp > 0:
            x = warp_batch(x, self.cfg.vtlp_max_warp, rng)
        if augment:
            x = _spec_augment(x, lengths, rng)
        toks = [self.train_tokens[i] for i in idx]
        tlen = torch.tensor([len(t) for t in toks])
        y = torch.zeros(len(idx), max(1, int(tlen.max())), dtype=torch.long)
        for i, t in enumerate(toks):
            y[i, :len(t)] = torch.tensor(t, dtype=torch.long)
        return x, lengths, y, tlen, nonspeech

    def _loss(self, x, lengths, y, tlen, nonspeech: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        m = self.model
        if hasattr(m, "set_training_step"):  # e.g. the gated model's Gumbel temperature
            m.set_training_step(self.step)
        enc, _ = m.encoder(x)
        enc_len = subsampled_length(lengths).clamp(min=1)
        contexts = decoder_contexts(y, tlen, m.cfg.context_size, BLANK_ID)
        loss_rnnt, parts = self._transducer_loss(enc, m.decoder(contexts), y, enc_len, tlen)
        if self.char_ctc is None:
            ctc_y, ctc_len, ctc_lp = y, tlen, F.log_softmax(m.ctc_head(enc), dim=-1)
        else:
            ctc_y, ctc_len = _char_targets([self.sp.decode(y[i, :n].tolist()) for i, n in enumerate(tlen.tolist())])
            ctc_lp = F.log_softmax(self.char_ctc(enc), dim=-1)
        loss_ctc = F.ctc_loss(ctc_lp.transpose(0, 1), ctc_y, enc_len, ctc_len, blank=BLANK_ID, reduction="sum",
                              zero_infinity=True) / len(lengths)
        loss = loss_rnnt + self.cfg.ctc_weight * loss_ctc
        parts["ctc"] = float(loss_ctc.detach())
        if self.ewc is not None:  # fine-tuning with EWC
            penalty = self.ewc.penalty(m)
            loss = loss + penalty
            parts["ewc"] = float(penalty.detach())
        frames_nonspeech = None if nonspeech is None else encoder_frame_mask(nonspeech, enc.shape[1])
        if self.distillation is not None:  # a gated student pulled toward the dense reference
            skip = frames_nonspeech if self.cfg.distill_speech_only else None
            distill = self.distillation.loss(x, enc, enc_len, skip)
            loss = loss + distill
            parts["distill"] = float(distill.detach())
        if hasattr(m, "auxiliary_loss"):  # e.g. the gated model's compute cost
            aux, aux_parts = m.auxiliary_loss(enc_len, frames_nonspeech)
            loss = loss + aux
            parts.update(aux_parts)
        return loss, parts

    def _transducer_loss(self, enc, dec, y, enc_len, tlen, token_penalty: tuple[int, torch.Tensor] | None = None,
                         fastemit_lambda: float | None = None) -> tuple[torch.Tensor, dict]:
        """The full-lattice loss, or the pruned one with its simple joiner's loss (weights per the
        warm-up of export/pruned_loss.py's recipe: the windows are poor until the simple joiner learns).
        token_penalty (token, (B, T, U+1)) lowers that token's logit per lattice node (STS's late <eot>);
        fastemit_lambda replaces the recipe's (STS keeps it in its model config)."""
        cfg, m = self.cfg, self.model
        fastemit = cfg.fastemit_lambda if fastemit_lambda is None else fastemit_lambda
        if self.simple_joiner is None:
            loss = full_lattice_loss(m.joiner, enc, dec, y, enc_len, tlen, token_penalty, fastemit, cfg.delay_penalty)
            return loss, dict(rnnt=float(loss.detach()))
        pruned, simple = pruned_rnnt_loss(enc, dec, m.joiner, self.simple_joiner, y, enc_len, tlen, cfg.prune_range,
                                          blank=BLANK_ID, fastemit_lambda=fastemit,
                                          delay_penalty=cfg.delay_penalty, token_penalty=token_penalty)
        warm = min(1.0, self.step / cfg.prune_warmup_steps) if cfg.prune_warmup_steps else 1.0
        simple_scale = 1.0 - warm * (1.0 - cfg.simple_loss_scale)
        loss = (0.1 + 0.9 * warm) * pruned + simple_scale * simple
        return loss, dict(rnnt=float(pruned.detach()), simple=float(simple.detach()))

    # -- evaluation --------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict:
        self.model.eval()
        refs, hyps = [], []
        n = min(self.cfg.dev_utterances, len(self.dev_set.utterances))
        order = sorted(range(len(self.dev_set.utterances)), key=lambda i: self.dev_set.utterances[i].frames)
        chosen = order[:: max(1, len(order) // max(n, 1))][:n]
        dependence = float("nan")
        gates_on = {"speech": [0.0, 0], "empty": [0.0, 0]}  # gated models: parts on, [sum, count]
        for start in range(0, len(chosen), 32):
            idx = chosen[start:start + 32]
            feats = [torch.from_numpy(self.dev_set.features(i)) for i in idx]
            lengths = torch.tensor([len(f) for f in feats])
            x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
            enc, _ = self.model.encoder(x)
            enc_len = subsampled_length(lengths)
            gates = getattr(self.model.encoder, "last_gates", None)
            if gates is not None:
                for row, (i, frames) in enumerate(zip(idx, enc_len.tolist())):
                    tally = gates_on["speech" if self.dev_set.utterances[i].text else "empty"]
                    tally[0] += float(gates[row, :frames].sum())
                    tally[1] += gates[row, :frames].numel()
            if start == 0:
                dependence = self._input_dependence(x, enc)
            for i, toks in zip(idx, greedy_search(self.model, enc, enc_len)):
                refs.append(self.dev_set.utterances[i].text)
                hyps.append(self.sp.decode(toks))
        self.model.train()
        pairs = [(r, h) for r, h in zip(refs, hyps) if r]
        wer = jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]) if pairs else float("nan")
        spurious = sum(1 for r, h in zip(refs, hyps) if not r and h.strip())
        gate_fractions = {f"gates_on_{k}": on / count for k, (on, count) in gates_on.items() if count}
        return dict(step=self.step, dev_wer=wer, empty_refs_with_output=spurious, n=len(refs),
                    input_dependence=dependence, **gate_fractions,
                    example_ref=pairs[0][0] if pairs else "", example_hyp=pairs[0][1] if pairs else "")

    def _input_dependence(self, x: torch.Tensor, enc: torch.Tensor) -> float:
        """How much the encoder output changes when the features are replaced by a constant,
        relative to its size. Every model here starts by collapsing to an output that ignores the
        input (the blank plateau) and must find its way back; a value near 0 long after the start
        means it has not (three ConvRNN-T runs sat at 0 for 2,500 steps behind a dev WER of 1.0)."""
        flat, _ = self.model.encoder(torch.full_like(x, float(x.mean())))
        return float((enc - flat).pow(2).mean().sqrt() / enc.pow(2).mean().sqrt().clamp(min=1e-12))

    # -- loop --------------------------------------------------------------------------
    def train(self) -> bool:
        """Train to max_steps (or max_hours) and finish: weights_last.pt means a finished run. A first
        SIGTERM or SIGINT ends the run after the current step with only the resumable checkpoint.
        Returns whether the run finished."""
        with StopRequest() as stop:
            return self._train(stop)

    def _train(self, stop: StopRequest) -> bool:
        cfg = self.cfg
        start = time.monotonic()
        last_ckpt = start
        seconds_before = self.train_seconds
        log = open(self.work / "train_log.jsonl", "a", encoding="utf-8") if self.is_main else None
        self.model.train()
        while self.step < cfg.max_steps:
            batches = self._epoch_batches(self.epoch)
            rng = np.random.default_rng(cfg.seed * 7919 + self.epoch * 31 + self.rank)
            bar = tqdm(batches[self.batch_in_epoch:], initial=self.batch_in_epoch, total=len(batches),
                       desc=f"epoch {self.epoch}", disable=not self.is_main, mininterval=5)
            for idx in bar:
                batch = self._collate(idx, self.step >= cfg.spec_augment_after, rng)
                for g in self.opt.param_groups:
                    g["lr"] = _lr(self.step + 1, cfg)
                loss, parts = self._loss(*batch)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if self.world > 1:
                    self._average_gradients()
                gnorm = float(torch.nn.utils.clip_grad_norm_(self._parameters(), cfg.grad_clip))
                if math.isfinite(gnorm):
                    self.opt.step()
                self.step += 1
                self.batch_in_epoch += 1
                self.train_seconds = seconds_before + time.monotonic() - start
                loss_value = float(loss.detach())
                bar.set_postfix(loss=f"{loss_value:.3f}", rnnt=f"{parts['rnnt']:.3f}", step=self.step)
                if log and self.step % 50 == 0:
                    log.write(json.dumps(dict(step=self.step, loss=loss_value, **parts, grad_norm=gnorm,
                                              lr=_lr(self.step, cfg), t=time.monotonic() - start)) + "\n")
                    log.flush()
                if self._stop_agreed(stop.requested):
                    self._stop(log)
                    return False
                if self.step % cfg.eval_every_steps == 0 and self.is_main:
                    result = self.evaluate()
                    log.write(json.dumps(result) + "\n")
                    log.flush()
                    dependence = result.get("input_dependence")  # not measured for every model type
                    tqdm.write(f"step {self.step}: dev WER {result['dev_wer']:.3f}"
                               + ("" if dependence is None else f", input dependence {dependence:.3g}")
                               + f" | {result['example_hyp']}")
                if self.step % cfg.milestone_every_steps == 0 and self.is_main:
                    self.save_weights(self.work / f"weights_step{self.step}.pt")
                now = time.monotonic()
                out_of_time = (now - start) / 3600 > cfg.max_hours or self.step >= cfg.max_steps
                if now - last_ckpt > cfg.checkpoint_minutes * 60 or out_of_time:
                    self._save()
                    last_ckpt = now
                if out_of_time:
                    self._finish(log)
                    return True
            self.epoch += 1
            self.batch_in_epoch = 0
        self._finish(log)
        return True

    def _stop_agreed(self, requested: bool) -> bool:
        """Whether any process was asked to stop: under torchrun all stop at the same step (each
        gets its own signal, not necessarily during the same step), so none waits in a collective."""
        if self.world == 1:
            return requested
        flag = torch.tensor([float(requested)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _stop(self, log) -> None:
        """End a run early on request: the resumable checkpoint only; weights_last.pt, the
        fine-tuned bundle and the rest of _finish belong to finished runs."""
        if self.is_main:
            print(f"stop requested: saving a checkpoint at step {self.step}", flush=True)
        self._save()
        if self.is_main:
            log.close()
        self._barrier()

    def _average_gradients(self) -> None:
        """Data parallelism: every process steps with the mean gradient of all batches."""
        params = self._parameters()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, g in zip(params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
            offset += g.numel()

    def _finish(self, log) -> None:
        self._save()
        if self.is_main:
            self.save_weights(self.work / "weights_last.pt")
            log.close()
            if self.cfg.finetune_on:  # a fine-tuned model is exported right away
                from framegate.export.onnx_export import export_bundle

                export_bundle(self.work / "weights_last.pt", self.work / "bundle",
                              model_card={"finetuned_from": self.cfg.init_from, "finetune_on": self.cfg.finetune_on,
                                          "ewc_lambda": self.cfg.ewc_lambda, "step": self.step})
        self._barrier()


def run(config_path: Path, **overrides) -> None:
    """Train the recipe at `config_path`; `overrides` replace its settings (the CLI's fine-tuning flags)."""
    cfg = TrainConfig.load(config_path)
    cfg = replace(cfg, **overrides) if overrides else cfg
    if cfg.model_type == "sts":  # conversations simulated on the fly: its own data path and loss
        from framegate.export.sts_train import StsTrainer

        StsTrainer(cfg).train()
        return
    Trainer(cfg).train()
