"""The ConvRNN-T encoder's merge: residual on the subsampled frames, branches silent at first."""
import pytest
import torch

from framegate.export.models.convrnnt import ConvRnnt, ConvRnntConfig

TINY = dict(vocab_size=20, conv_channels=4, frontend_dim=16, local_channels=6, local_kernel=3, global_channels=8,
            global_hidden=10, global_blocks=3, se_hidden=3, d_model=16, rnn_hidden_size=16, num_layers=1,
            joiner_dim=16, decoder_dim=16, dropout=0.0)


def test_at_initialization_the_lstm_reads_the_subsampled_frames():
    torch.manual_seed(0)
    encoder = ConvRnnt(ConvRnntConfig(**TINY)).encoder.eval()
    x = torch.randn(2, 43, 80)
    with torch.no_grad():
        local, global_in, _ = encoder.frontend(x)
        merged = encoder.merge_branches(local, encoder.global_cnn(global_in))
        sub = encoder.subsampling((x - encoder.feature_mean) * encoder.feature_inv_std)
    assert local.shape[-1] == encoder.cfg.local_width == 16 + 6
    torch.testing.assert_close(merged, encoder.merge_norm(sub))


def test_a_trained_merge_adds_both_branches():
    torch.manual_seed(0)
    encoder = ConvRnnt(ConvRnntConfig(**TINY)).encoder.eval()
    with torch.no_grad():
        torch.nn.init.normal_(encoder.merge.weight)
        x = torch.randn(1, 43, 80)
        local, global_in, _ = encoder.frontend(x)
        global_out = encoder.global_cnn(global_in)
        base = encoder.merge_branches(local, global_out)
        local_changed = local.clone()
        local_changed[..., 16:] += 1.0 + torch.randn_like(local_changed[..., 16:])
        assert (encoder.merge_branches(local_changed, global_out) - base).abs().max() > 1e-3
        assert (encoder.merge_branches(local, global_out + torch.randn_like(global_out)) - base).abs().max() > 1e-3


def test_front_end_width_other_than_d_model_is_refused():
    with pytest.raises(ValueError, match="frontend_dim"):
        ConvRnntConfig(**{**TINY, "frontend_dim": 12}).validate()
