"""Training the separator-transducer-segmenter on conversations simulated on the fly.

`framegate train --config export/recipes/sts.toml` runs `StsTrainer`: the baseline Trainer's
loop, checkpoints, resume, graceful stop, warm-up schedule and data parallelism, with its own
data path and loss. The single-speaker FeatureCache does not fit: a mixture's fbank is not the
sum of its voices' fbanks, so every training window is mixed in the waveform domain and
featurized when it is drawn. What is cached instead is the corpus waveform (int16,
memory-mapped, `WaveStore`) and each utterance's trimmed speech span.

Every example is a fresh conversation: example k of batch b of epoch e is drawn from the
seed (seed, e, b, k), so training never sees the same mixture twice and a resumed run
draws exactly what the interrupted one would have. Each conversation is cut at silences
into windows of about 10 s (export/conversations.py `cut_windows`) and one window is used.

Loss per example, on each of the two channel rows:
  transducer loss (export/loss.py, or the pruned one of export/pruned_loss.py when the recipe
      sets prune_range; FastEmit lambda from the model config) on the channel's
      `<sot> words <eot>` targets, with the `<eot>` late penalty: at lattice nodes where the
      next target is a turn's `<eot>`, its logit is lowered by eot_late_penalty per encoder
      frame past the reference turn end (+ eot_tolerance_frames), so alignments that close
      turns late score worse (the early/late-penalty idea of Li et al. 2020 for end-of-query);
  + ctc_weight * CTC on the same targets (the baseline's aid against the blank plateau);
  + activity_weight * binary cross-entropy of the per-channel speech-activity head against
      the reference activity of the channel's turns.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from framegate.engine.features import SAMPLE_RATE, compute_fbank
from framegate.export.conversations import (AudioSource, ConversationConfig, ConversationSimulator, Utterance,
                                            cut_windows, speech_bounds)
from framegate.export.feature_cache import read_manifest
from framegate.export.greedy import greedy_search
from framegate.export.models.lstm_transducer import decoder_contexts, subsampled_length
from framegate.export.models.sts import CHANNELS, SeparatorTransducerSegmenter, channel_ctc_loss, warm_start_state, wrap_turns
from framegate.export.tokenizer import BLANK_ID, load_bpe, train_bpe, write_tokens_txt
from framegate.export.train import Trainer, full_lattice_loss
from framegate.export.turn_tokens import extend_bpe

ENCODER_FRAME_S = 0.04
# (enc, dec, targets, enc_len, target_len, token_penalty) -> (loss, logged parts)
TransducerLoss = Callable[..., tuple[torch.Tensor, dict]]
# seed streams apart from the training epochs (seeds are (seed, epoch, batch, k))
DEV_STREAM = 10**9
NORMALIZATION_STREAM = 10**9 + 1


@dataclass(frozen=True)
class ConversationTraining:
    """The recipe's [conversations] table: window cutting, batch size, epoch length, dev set,
    and `simulator` (a ConversationConfig as a table)."""

    window_s: float = 10.0
    max_window_s: float = 16.0
    batch_size: int = 6
    steps_per_epoch: int = 1000
    dev_conversations: int = 40
    simulator: dict | None = None

    @staticmethod
    def from_dict(values: dict) -> "ConversationTraining":
        known = {f.name for f in fields(ConversationTraining)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"[conversations]: unknown settings {sorted(unknown)} (known: {sorted(known)})")
        out = ConversationTraining(**values)
        if out.batch_size < 1 or out.steps_per_epoch < 1 or not 0 < out.window_s <= out.max_window_s:
            raise ValueError("[conversations]: need batch_size, steps_per_epoch >= 1 and 0 < window_s <= max_window_s")
        return out

    def simulator_config(self) -> ConversationConfig:
        return ConversationConfig.from_dict(self.simulator or {})


class WaveStore(AudioSource):
    """A split's utterances with text as one int16 memory-mapped array, plus their speech spans.

    Built once per split (like FeatureCache) so drawing a conversation reads memory, not FLAC."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, cache=False)
        index = json.loads((directory / "index.json").read_text(encoding="utf-8"))
        self.utterances = [Utterance(**u) for u in index["utterances"]]
        self._spans = {u: tuple(s) for u, s in zip(index["keys"], index["spans"])}
        self._waves = np.load(directory / "waves.npy", mmap_mode="r")

    def read(self, utt: Utterance) -> np.ndarray:
        offset, length = self._spans[utt.audio]
        return np.asarray(self._waves[offset:offset + length], dtype=np.float32) / 32768.0

    @staticmethod
    def build(manifest: Path, directory: Path) -> "WaveStore":
        if (directory / "index.json").exists():
            return WaveStore(directory)
        import soundfile as sf

        directory.mkdir(parents=True, exist_ok=True)
        chunks, utts, keys, spans, offset = [], [], [], [], 0
        for row in read_manifest(manifest):
            if not row.get("text", "").strip():
                continue
            samples, rate = sf.read(manifest.parent / row["audio"], dtype="int16", always_2d=True)
            if rate != SAMPLE_RATE:
                raise ValueError(f"{row['audio']}: corpus audio must be {SAMPLE_RATE} Hz, got {rate}")
            mono = samples[:, 0]
            bounds = speech_bounds(mono.astype(np.float32) / 32768.0)
            if bounds is None:
                continue
            utts.append(dict(audio=row["audio"], text=row["text"], speaker=row["speaker"],
                             family=row.get("family") or row["speaker"], split=row.get("split", ""),
                             speech_start=bounds[0], speech_end=bounds[1]))
            keys.append(row["audio"])
            spans.append((offset, len(mono)))
            chunks.append(mono)
            offset += len(mono)
        np.save(directory / "waves.npy", np.concatenate(chunks) if chunks else np.zeros(0, np.int16))
        tmp = directory / "index.json.tmp"
        tmp.write_text(json.dumps({"manifest": str(manifest), "utterances": utts, "keys": keys, "spans": spans}),
                       encoding="utf-8")
        tmp.replace(directory / "index.json")
        return WaveStore(directory)


@dataclass
class Example:
    features: np.ndarray             # (T, bins)
    targets: list[list[int]]         # per channel: <sot> ids <eot> ...
    eot_frames: list[list[int]]      # per channel: reference end (encoder frame) of each turn
    activity: np.ndarray             # (channels, T') 0/1


class ConversationExamples:
    """Training windows drawn from a seed: conversation -> windows at silences -> one window."""

    def __init__(self, simulator: ConversationSimulator, sp, sot_id: int, eot_id: int,
                 settings: ConversationTraining) -> None:
        self.simulator, self.sp, self.sot_id, self.eot_id, self.settings = simulator, sp, sot_id, eot_id, settings

    def example(self, seed: tuple[int, ...]) -> Example:
        for attempt in range(8):
            conv = self.simulator.draw((*seed, attempt))
            windows = cut_windows(conv, self.settings.window_s, self.settings.max_window_s)
            if windows:
                break
        else:
            raise ValueError(f"no window of at most {self.settings.max_window_s} s in 8 conversations of seed {seed}; "
                             f"raise max_window_s or lower the overlap settings")
        window = windows[int(np.random.default_rng(seed).integers(len(windows)))]
        audio = conv.audio[window.start_sample:window.end_sample]
        feats = compute_fbank(audio)
        frames = int(subsampled_length(len(feats)))
        times = np.arange(max(frames, 0)) * ENCODER_FRAME_S
        targets, eots = [[] for _ in range(CHANNELS)], [[] for _ in range(CHANNELS)]
        activity = np.zeros((CHANNELS, max(frames, 0)), dtype=np.float32)
        per_channel: list[list[list[int]]] = [[] for _ in range(CHANNELS)]
        for turn in sorted(window.turns, key=lambda t: t.start):
            per_channel[turn.channel].append(self.sp.encode(turn.text))
            eots[turn.channel].append(round(turn.end / ENCODER_FRAME_S))
            activity[turn.channel, (times >= turn.start) & (times < turn.end)] = 1.0
        for c in range(CHANNELS):
            targets[c] = wrap_turns(per_channel[c], self.sot_id, self.eot_id)
        return Example(feats, targets, eots, activity)


def eot_penalty(targets: torch.Tensor, eot_frames: list[list[int]], frames: int, eot_id: int, per_frame: float,
                tolerance: int) -> torch.Tensor:
    """(rows, T, U+1) logit penalties for <eot> at the nodes whose next target is a turn's <eot>."""
    rows, u_max = targets.shape
    penalty = torch.zeros(rows, frames, u_max + 1)
    t = torch.arange(frames, dtype=torch.float32)
    for r in range(rows):
        positions = (targets[r] == eot_id).nonzero().flatten().tolist()
        for u, end in zip(positions, eot_frames[r]):
            penalty[r, :, u] = per_frame * (t - end - tolerance).clamp(min=0)
    return penalty


def full_transducer_loss(model: SeparatorTransducerSegmenter) -> TransducerLoss:
    """The full-lattice transducer loss with the model's FastEmit (a Trainer brings its pruned one)."""
    def loss(enc, dec, y, enc_len, tlen, token_penalty=None) -> tuple[torch.Tensor, dict]:
        value = full_lattice_loss(model.joiner, enc, dec, y, enc_len, tlen, token_penalty, model.cfg.fastemit_lambda)
        return value, dict(rnnt=float(value.detach()))
    return loss


def sts_loss(model: SeparatorTransducerSegmenter, x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor,
             tlen: torch.Tensor, activity: torch.Tensor, eot_frames: list[list[int]], ctc_weight: float,
             transducer_loss: TransducerLoss | None = None) -> tuple[torch.Tensor, dict]:
    """The STS training loss of one batch (see the module docstring); rows are (example, channel).
    transducer_loss(enc, dec, y, enc_len, tlen, token_penalty) -> (loss, parts): the full lattice
    by default, the Trainer's (pruned when its recipe says so) in training."""
    cfg = model.cfg
    enc, act_logits, _ = model.encoder(x)
    n, channels, t, j = enc.shape
    enc_len = subsampled_length(lengths).clamp(min=1)
    rows = enc.reshape(n * channels, t, j)
    row_len = enc_len.repeat_interleave(channels)
    dec = model.decoder(decoder_contexts(y, tlen, cfg.context_size, BLANK_ID))
    penalty = None
    if cfg.eot_late_penalty > 0:
        penalty = (cfg.eot_id, eot_penalty(y, eot_frames, t, cfg.eot_id, cfg.eot_late_penalty,
                                           cfg.eot_tolerance_frames))
    loss_rnnt, parts = (transducer_loss or full_transducer_loss(model))(rows, dec, y, row_len, tlen, penalty)
    loss_ctc = channel_ctc_loss(model, rows, row_len, y, tlen, BLANK_ID)
    mask = (torch.arange(t).unsqueeze(0) < enc_len.unsqueeze(1)).unsqueeze(1).expand(n, channels, t).float()
    frames_act = activity[:, :, :t]
    loss_act = (F.binary_cross_entropy_with_logits(act_logits, frames_act, reduction="none") * mask).sum() / mask.sum()
    loss = loss_rnnt + ctc_weight * loss_ctc + cfg.activity_weight * loss_act
    return loss, dict(**parts, ctc=float(loss_ctc.detach()), activity=float(loss_act.detach()))


def collate(examples: list[Example]) -> tuple:
    """Padded batch: x (N, T, bins), lengths (N,), y (N*C, U), tlen (N*C,), activity (N, C, T'), eot frames."""
    feats = [torch.from_numpy(e.features) for e in examples]
    lengths = torch.tensor([len(f) for f in feats])
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    targets = [tg for e in examples for tg in e.targets]
    tlen = torch.tensor([len(tg) for tg in targets])
    y = torch.zeros(len(targets), max(1, int(tlen.max())), dtype=torch.long)
    for i, tg in enumerate(targets):
        y[i, :len(tg)] = torch.tensor(tg, dtype=torch.long)
    frames = max(e.activity.shape[1] for e in examples)
    activity = torch.zeros(len(examples), CHANNELS, frames)
    for i, e in enumerate(examples):
        activity[i, :, :e.activity.shape[1]] = torch.from_numpy(e.activity)
    eot_frames = [ef for e in examples for ef in e.eot_frames]
    return x, lengths, y, tlen, activity, eot_frames


def split_turns(ids: list[int], sot_id: int, eot_id: int) -> list[list[int]]:
    """A channel's decoded ids as turns, with the engine's rules (engine/turns.py) for stray tokens."""
    turns, current = [], None
    for token in ids:
        if token == eot_id:
            if current:
                turns.append(current)
            current = None
        elif token == sot_id:
            current = current if current is not None else []
        else:
            current = (current if current is not None else []) + [token]
    if current:
        turns.append(current)
    return turns


class StsTrainer(Trainer):
    """The baseline Trainer with conversations drawn on the fly (see the module docstring)."""

    def _prepare_data(self) -> None:
        cfg = self.cfg
        corpus, bpe_path = Path(cfg.corpus_dir), self.work / "bpe.model"
        self.settings = ConversationTraining.from_dict(dict(cfg.conversations))
        if self.is_main:
            if not bpe_path.exists():
                if cfg.init_from:  # the single-speaker model's pieces keep their ids
                    source = Path(cfg.init_from).parent / "bpe.model"
                else:
                    texts = [r["text"] for r in read_manifest(corpus / "train.jsonl") if r["text"]]
                    source = self.work / "bpe_single.model"
                    train_bpe(texts, source, cfg.model.vocab_size - 2)
                extend_bpe(source, bpe_path)
            write_tokens_txt(load_bpe(bpe_path), self.work / "tokens.txt")
            for split in ("train", "dev"):
                WaveStore.build(corpus / f"{split}.jsonl", self.work / "waves" / split)
        self._barrier()
        self.sp = load_bpe(bpe_path)
        if self.sp.get_piece_size() != cfg.model.vocab_size:
            raise ValueError(f"{bpe_path} has {self.sp.get_piece_size()} pieces with <sot>/<eot>; the model's "
                             f"vocab_size is {cfg.model.vocab_size}")
        sim_cfg = self.settings.simulator_config()
        self.train_store = WaveStore(self.work / "waves" / "train")
        self.dev_store = WaveStore(self.work / "waves" / "dev")
        train_sim = ConversationSimulator(self.train_store.utterances, self.train_store, sim_cfg)
        self.dev_sim = ConversationSimulator(self.dev_store.utterances, self.dev_store, sim_cfg)
        self.examples = ConversationExamples(train_sim, self.sp, cfg.model.sot_id, cfg.model.eot_id, self.settings)

    def _init_normalization(self) -> None:
        """Feature statistics of a few hundred drawn training windows (mixtures, as the model sees)."""
        feats = np.concatenate([self.examples.example((self.cfg.seed, NORMALIZATION_STREAM, k)).features for k in range(64)])
        enc = self.model.encoder
        enc.feature_mean.copy_(torch.from_numpy(feats.mean(0)).float())
        enc.feature_inv_std.copy_(torch.from_numpy(1.0 / (feats.std(0) + 1e-5)).float())

    def _warm_start(self, path: Path) -> None:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        state = saved["model"]
        if any(k.startswith("encoder.mix_lstm.") for k in state):  # an STS checkpoint: a later stage goes on
            self.model.load_state_dict(state)
            self._load_heads(saved)  # its simple joiner too, so the pruned loss needs no warm-up again
            self._record_warm_start(path, saved, "all")
            return
        mapped, added = warm_start_state(self.model, state)
        self.model.load_state_dict(mapped)
        if self.is_main:
            print(f"warm start from single-speaker {path} (new: {len(added)} tensors)", flush=True)

    def _epoch_batches(self, epoch: int) -> list[list[tuple[int, ...]]]:
        """Seeds of this process's examples: (seed, epoch, batch, k), never repeated."""
        s = self.settings
        batches = [[(self.cfg.seed, epoch, b, k) for k in range(s.batch_size)] for b in range(s.steps_per_epoch)]
        return batches[self.rank::self.world]

    def _collate(self, idx: list[tuple[int, ...]], augment: bool, rng: np.random.Generator):
        from framegate.export.train import _spec_augment

        x, lengths, *rest = collate([self.examples.example(seed) for seed in idx])
        if augment:
            x = _spec_augment(x, lengths, rng)
        return (x, lengths, *rest)

    def _loss(self, x, lengths, y, tlen, activity, eot_frames) -> tuple[torch.Tensor, dict]:
        return sts_loss(self.model, x, lengths, y, tlen, activity, eot_frames, self.cfg.ctc_weight,
                        partial(self._transducer_loss, fastemit_lambda=self.model.cfg.fastemit_lambda))

    @torch.no_grad()
    def evaluate(self) -> dict:
        """cpWER (meeteval) and turn-counting accuracy on fixed dev conversations, whole, greedy."""
        from meeteval.wer.wer.cp import cp_word_error_rate

        self.model.eval()
        cfg = self.cfg.model
        errors = length = counted = 0
        n = self.settings.dev_conversations
        example = ""
        for i in range(n):
            conv = self.dev_sim.draw((self.cfg.seed, DEV_STREAM, i))
            feats = torch.from_numpy(compute_fbank(conv.audio)).unsqueeze(0)
            enc, _, _ = self.model.encoder(feats)
            rows = enc[0]
            lens = torch.full((CHANNELS,), int(subsampled_length(feats.shape[1])))
            hyps = greedy_search(self.model, rows, lens)
            turns = [split_turns(h, cfg.sot_id, cfg.eot_id) for h in hyps]
            hyp = {str(c): " ".join(self.sp.decode(t) for t in turns[c]) for c in range(CHANNELS)}
            ref: dict[str, list[str]] = {}
            for turn in conv.turns:
                ref.setdefault(turn.speaker, []).append(turn.text)
            result = cp_word_error_rate(reference={k: " ".join(v) for k, v in ref.items()}, hypothesis=hyp,
                                        reference_sort=False, hypothesis_sort=False)
            errors, length = errors + result.errors, length + result.length
            counted += sum(len(t) for t in turns) == len(conv.turns)
            example = example or " | ".join(hyp.values())
        self.model.train()
        cpwer = errors / length if length else math.nan
        return dict(step=self.step, dev_wer=cpwer, dev_cpwer=cpwer, turn_count_accuracy=counted / max(n, 1),
                    n=n, example_hyp=example[:200])

