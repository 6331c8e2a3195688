"""Batched greedy transducer search in torch, for dev WER during training.

Same rule as the engine and sherpa-onnx: at most one symbol per encoder frame.
"""
from __future__ import annotations

import torch

from framegate.export.models.lstm_transducer import LstmTransducer


@torch.no_grad()
def greedy_search(model: LstmTransducer, enc: torch.Tensor, enc_lengths: torch.Tensor, blank: int = 0
                  ) -> list[list[int]]:
    """enc (N, T, joiner_dim) -> token ids per utterance."""
    n, t_max, _ = enc.shape
    k = model.cfg.context_size
    context = torch.full((n, k), -1, dtype=torch.long)
    context[:, -1] = blank
    dec = model.decoder(context.unsqueeze(1)).squeeze(1)
    hyps: list[list[int]] = [[] for _ in range(n)]
    for t in range(t_max):
        logits = model.joiner(enc[:, t], dec)
        best = logits.argmax(dim=-1)
        emit = (best != blank) & (t < enc_lengths)
        if emit.any():
            idx = emit.nonzero().squeeze(1)
            for i in idx.tolist():
                hyps[i].append(int(best[i]))
            context[idx] = torch.cat([context[idx, 1:], best[idx].unsqueeze(1)], dim=1)
            dec[idx] = model.decoder(context[idx].unsqueeze(1)).squeeze(1)
    return hyps
