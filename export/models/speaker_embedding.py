"""A small x-vector speaker-embedding network, its additive-margin softmax head and the
adversary that reweights its training examples.

Embedding network: per-utterance mean normalization of the fbank frames (channel effects
are largely a constant offset in log-mel) -> dilated 1-D convolutions over time (TDNN,
receptive field 15 frames) -> statistics pooling (mean and standard deviation over all
frames) -> linear + BatchNorm -> the embedding. Any number of frames >= 1 goes in, one
vector comes out, so the engine embeds whole utterances of any length with one call.

Training head: additive-margin softmax over the training voices (cos(theta) - m on the
target, scaled by s); cosine similarity is then the verification score. A pairwise
logistic loss on the in-batch cosine similarities sits beside it, and the adversarial
reweighting (Jin et al., DESIGN.md "Fairness") weighs a pair by the sum of its two
examples' weights.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# (kernel, dilation) of the frame-level layers; the receptive field is 1 + sum (k - 1) * d frames.
TDNN_LAYERS: tuple[tuple[int, int], ...] = ((5, 1), (3, 2), (3, 3), (1, 1))


@dataclass(frozen=True)
class SpeakerEmbeddingConfig:
    num_bins: int = 80
    channels: int = 128          # frame-level width
    pooled_channels: int = 256   # width of the last frame-level layer, the one pooled
    embedding_dim: int = 128

    def validate(self) -> None:
        for name in ("num_bins", "channels", "pooled_channels", "embedding_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"SpeakerEmbeddingConfig.{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


class SpeakerEmbedding(nn.Module):
    """x (N, T, num_bins) log-mel frames -> (N, embedding_dim) embedding (not normalized)."""

    def __init__(self, cfg: SpeakerEmbeddingConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        layers: list[nn.Module] = []
        width = cfg.num_bins
        for i, (kernel, dilation) in enumerate(TDNN_LAYERS):
            out = cfg.pooled_channels if i == len(TDNN_LAYERS) - 1 else cfg.channels
            layers += [nn.Conv1d(width, out, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2),
                       nn.ReLU(), nn.BatchNorm1d(out)]
            width = out
        self.frames = nn.Sequential(*layers)
        self.embed = nn.Linear(2 * cfg.pooled_channels, cfg.embedding_dim)
        self.embed_norm = nn.BatchNorm1d(cfg.embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=1, keepdim=True)
        h = self.frames(x.transpose(1, 2))
        mean = h.mean(dim=2)
        std = torch.sqrt(h.var(dim=2, unbiased=False) + 1e-5)
        return self.embed_norm(self.embed(torch.cat([mean, std], dim=1)))


class AdditiveMarginSoftmax(nn.Module):
    """Per-example loss s * (cos - m * onehot) cross-entropy over the training voices."""

    def __init__(self, embedding_dim: int, num_speakers: int, margin: float, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_speakers, embedding_dim) * 0.01)
        self.margin = margin
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).t()
        logits = self.scale * (cosine - self.margin * F.one_hot(labels, cosine.shape[1]))
        return F.cross_entropy(logits, labels, reduction="none")


class PairLoss(nn.Module):
    """Logistic loss on every in-batch pair's cosine similarity, a learned affine scale as in GE2E.

    Returns (loss per pair (N, N), same-speaker mask (N, N), mask of the pairs i < j); the caller
    weighs and averages, so the reweighting can put weight w_i + w_j on pair (i, j).
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.bias = nn.Parameter(torch.tensor(-5.0))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        unit = F.normalize(embeddings, dim=1)
        logits = self.scale * (unit @ unit.t()) + self.bias
        same = labels[:, None] == labels[None, :]
        loss = F.binary_cross_entropy_with_logits(logits, same.float(), reduction="none")
        upper = torch.ones_like(same).triu(diagonal=1)
        return loss, same, upper


class ExampleAdversary(nn.Module):
    """Adversarial reweighting (ARL): input features -> one weight per training example.

    Sees only the input (per-bin mean and standard deviation of the crop's log-mel frames),
    never the speaker label, so it can single out a kind of voice without being told who is
    who. Weights are 1 + N * sigmoid(a_i) / sum_j sigmoid(a_j): every example keeps at least
    weight 1 and the adversary moves at most N extra units of weight onto the ones it picks.
    """

    def __init__(self, num_bins: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * num_bins, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([x.mean(dim=1), x.std(dim=1)], dim=1)
        score = torch.sigmoid(self.net(stats).squeeze(1))
        return 1.0 + len(score) * score / score.sum()
