"""The LSTM transducer's encoder in ops the TorchScript ONNX exporter accepts.

Without a projection, `nn.LSTM` exports as ONNX's own LSTM op, which ONNX Runtime runs as
one fused kernel (measured here on the default model, one thread: 0.81 ms per 80 ms chunk
against 0.95 ms for the same cell spelled out as a Loop). torch 2.13's exporter
(`torch.onnx.export(..., dynamo=False)`) refuses `nn.LSTM` with `proj_size > 0`, and ONNX's
LSTM op has no projection, so `ProjectedLstm` spells the projected cell out: per layer, the
input-to-hidden product runs once for all frames of a call (one big MatMul), then a scripted
loop does the recurrent steps, which the exporter turns into an ONNX `Loop` so the frame
count stays dynamic. `ExportableEncoder` wraps either with the original normalization,
subsampling and output layers, taking and returning (h, c) as explicit tensors in
sherpa-onnx's layout (layers, N, size).
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from framegate.export.models.lstm_transducer import LstmEncoder


def _recurrent_steps_eager(gates_x: torch.Tensor, w_hh: torch.Tensor, w_hr: torch.Tensor,
                     h: torch.Tensor, c: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """gates_x (N, T, 4H) precomputed input gates (biases included), h (N, P), c (N, H)
    -> outputs (N, T, P), last h, last c. Gate order i, f, g, o as in nn.LSTM."""
    outputs: list[torch.Tensor] = []
    for t in range(gates_x.size(1)):
        gates = gates_x[:, t] + torch.matmul(h, w_hh)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.matmul(torch.sigmoid(o) * torch.tanh(c), w_hr)
        outputs.append(h)
    return torch.stack(outputs, dim=1), h, c


with warnings.catch_warnings():  # TorchScript is deprecated, but it is what turns the loop into ONNX Loop
    warnings.simplefilter("ignore", DeprecationWarning)
    _recurrent_steps = torch.jit.script(_recurrent_steps_eager)


class ProjectedLstm(nn.Module):
    """A stack of LSTM layers equal to a given `nn.LSTM` with proj_size > 0 in eval mode.

    Weights are stored pre-transposed (in, out) and the two biases pre-summed, so the
    exported graph does no per-call weight reshuffling.
    """

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        if not lstm.batch_first or lstm.bidirectional or not lstm.bias or lstm.proj_size == 0:
            raise ValueError("ProjectedLstm mirrors a unidirectional, batch-first, projected nn.LSTM with biases")
        self.num_layers = lstm.num_layers
        for layer in range(lstm.num_layers):
            w_ih = getattr(lstm, f"weight_ih_l{layer}").detach()
            w_hh = getattr(lstm, f"weight_hh_l{layer}").detach()
            bias = (getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")).detach()
            self.register_buffer(f"w_ih_{layer}", w_ih.t().contiguous())
            self.register_buffer(f"w_hh_{layer}", w_hh.t().contiguous())
            self.register_buffer(f"w_hr_{layer}", getattr(lstm, f"weight_hr_l{layer}").detach().t().contiguous())
            self.register_buffer(f"bias_{layer}", bias.contiguous())

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (N, T, d_model), h (layers, N, d_model), c (layers, N, hidden) -> out, new h, new c."""
        new_h, new_c = [], []
        for layer in range(self.num_layers):
            gates_x = torch.matmul(x, getattr(self, f"w_ih_{layer}")) + getattr(self, f"bias_{layer}")
            x, h_l, c_l = _recurrent_steps(gates_x, getattr(self, f"w_hh_{layer}"),
                                           getattr(self, f"w_hr_{layer}"), h[layer], c[layer])
            new_h.append(h_l)
            new_c.append(c_l)
        return x, torch.stack(new_h, dim=0), torch.stack(new_c, dim=0)


class NativeLstm(nn.Module):
    """An `nn.LSTM` without projection behind `ProjectedLstm`'s call signature (exports as ONNX LSTM)."""

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        if lstm.proj_size > 0:
            raise ValueError("ONNX's LSTM op has no projection: use ProjectedLstm")
        self.lstm = lstm

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, (h, c) = self.lstm(x, (h, c))
        return x, h, c


def exportable_lstm(lstm: nn.LSTM) -> nn.Module:
    """The fastest exportable equivalent of a trained `nn.LSTM`: (x, h, c) -> (out, new h, new c)."""
    return ProjectedLstm(lstm) if lstm.proj_size > 0 else NativeLstm(lstm)


class ExportableEncoder(nn.Module):
    """`LstmEncoder` as the streaming graph: (x, h, c) -> (encoder_out, new_h, new_c)."""

    def __init__(self, encoder: LstmEncoder) -> None:
        super().__init__()
        self.register_buffer("feature_mean", encoder.feature_mean.detach().clone())
        self.register_buffer("feature_inv_std", encoder.feature_inv_std.detach().clone())
        self.subsampling = encoder.subsampling
        self.lstm = exportable_lstm(encoder.lstm)
        self.out = encoder.out

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.subsampling((x - self.feature_mean) * self.feature_inv_std)
        x, new_h, new_c = self.lstm(x, h, c)
        return self.out(x), new_h, new_c
