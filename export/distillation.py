"""Encoder distillation from a frozen dense reference into a gated student.

A gated run prunes most of the network on speech, and the transducer loss alone only says
what the words are, not how the dense model represented them: the student relearns that
from 3,000 steps of labels. Pulling the student's encoder output toward the dense
reference's on the same (augmented) batch gives every frame a dense target as well, the
standard remedy for pruned and dynamic networks. The teacher runs in eval mode without
gradients and is never saved with the student; the loss is a training aid only.

loss = weight * sum over real frames of mean-over-dims (student - teacher)^2, per utterance
(the transducer loss is per utterance too, so the weight does not depend on batch size).

Frames without speech can be left out (`skip`): there the student only has to say nothing, which
the transducer loss already asks, while matching the dense model's representation of silence
keeps parts switched on that the non-speech compute price is meant to switch off.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class EncoderDistillation:
    """The frozen teacher and the distance of a student's encoder output from its."""

    def __init__(self, path: Path, weight: float, joiner_dim: int) -> None:
        from framegate.export.onnx_export import load_model  # the one checkpoint-to-model loader

        if not path.is_file():
            raise ValueError(f"distill_from {path}: no such weights checkpoint")
        self.teacher: nn.Module = load_model(path)
        if self.teacher.cfg.joiner_dim != joiner_dim:
            raise ValueError(f"distill_from {path}: its encoder gives {self.teacher.cfg.joiner_dim} dims, "
                             f"the student's {joiner_dim}")
        self.teacher.requires_grad_(False)
        self.weight = weight

    def loss(self, x: torch.Tensor, student_enc: torch.Tensor, enc_lengths: torch.Tensor,
             skip: torch.Tensor | None = None) -> torch.Tensor:
        """weight * per-utterance squared distance over the real frames of `enc_lengths`, except
        the encoder frames `skip` (N, T) flags."""
        with torch.no_grad():
            target, _ = self.teacher.encoder(x)
        if target.shape != student_enc.shape:
            raise ValueError(f"teacher encoder output {tuple(target.shape)} != student's {tuple(student_enc.shape)}: "
                             "distill only between encoders of the same frame rate and width")
        valid = torch.arange(student_enc.shape[1]).unsqueeze(0) < enc_lengths.unsqueeze(1)
        if skip is not None:
            valid = valid & ~skip
        per_frame = (student_enc - target).pow(2).mean(-1)
        return self.weight * (per_frame * valid).sum() / len(enc_lengths)
