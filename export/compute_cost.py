"""Parameters and multiply-accumulates per second of audio, counted from the model itself.

MACs are counted by forward hooks on every Linear, Conv1d, Conv2d and LSTM the encoder runs
over `seconds` of audio (so counts follow the real shapes, subsampling included), plus one
joiner call per encoder frame (greedy search's minimum). The decoder runs once per emitted
token, which depends on the text, so it is left out. Element-wise ops (activations, the
squeeze sums, gates) are not MACs and are not counted.
"""
from __future__ import annotations

import torch
import torch.nn as nn

FBANK_FRAMES_PER_SECOND = 100


def parameter_count(model: nn.Module, exclude: tuple[str, ...] = ("ctc_head",)) -> int:
    """Parameters that ship in a bundle (training-only heads excluded)."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith(exclude))


def _lstm_macs(lstm: nn.LSTM, frames: int) -> int:
    hidden, proj = lstm.hidden_size, lstm.proj_size or lstm.hidden_size
    total = 0
    for layer in range(lstm.num_layers):
        inputs = lstm.input_size if layer == 0 else proj
        total += frames * (4 * hidden * (inputs + proj) + (hidden * proj if lstm.proj_size else 0))
    return total


@torch.no_grad()
def encoder_macs_per_second(model: nn.Module, num_bins: int, seconds: float = 10.0) -> float:
    """Encoder MACs per second of audio plus one joiner call per encoder frame."""
    counts: list[int] = []

    def hook(module: nn.Module, inputs: tuple, output) -> None:
        if isinstance(module, nn.Linear):
            counts.append(output.numel() * module.in_features)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            per_output = module.in_channels // module.groups
            for k in module.kernel_size:
                per_output *= k
            counts.append(output.numel() * per_output)
        elif isinstance(module, nn.LSTM):
            out = output[0]
            counts.append(out.shape[0] * _lstm_macs(module, out.shape[1]))

    encoder = model.encoder
    handles = [m.register_forward_hook(hook) for m in encoder.modules()
               if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.LSTM))]
    was_training = encoder.training
    encoder.eval()
    try:
        enc, _ = encoder(torch.zeros(1, int(seconds * FBANK_FRAMES_PER_SECOND), num_bins))
    finally:
        for h in handles:
            h.remove()
        encoder.train(was_training)
    joiner = model.joiner.out
    joiner_macs = enc.shape[1] * joiner.in_features * joiner.out_features
    return (sum(counts) + joiner_macs) / seconds
