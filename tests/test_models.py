import math

import pytest
import torch
from torch import nn

from labutils import lessons, models


def test_default_mlp_has_exactly_the_expected_parameters():
    # 784*1024+1024 + 2*(1024*1024+1024) + 1024*10+10
    assert models.count_parameters(lessons.mlp()) == 2_913_290


def test_mlp_depth_width_activation_dropout_and_batch_norm_are_parameters():
    m = lessons.mlp([256, 128, 64, 32], activation="tanh", dropout=0.3, batch_norm=True)
    kinds = [type(layer) for layer in m]
    assert kinds.count(nn.Linear) == 5 and kinds.count(nn.Tanh) == 4
    assert kinds.count(nn.BatchNorm1d) == 4 and kinds.count(nn.Dropout) == 4
    assert all(layer.p == 0.3 for layer in m if isinstance(layer, nn.Dropout))
    linear = 784 * 256 + 256 + 256 * 128 + 128 + 128 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10
    assert models.count_parameters(m) == linear + 2 * (256 + 128 + 64 + 32)
    assert nn.Dropout not in [type(layer) for layer in lessons.mlp([64], dropout=0.0)]


@pytest.mark.parametrize("scheme, expected_std", [
    ("he", math.sqrt(2 / 784)), ("xavier", math.sqrt(2 / (784 + 1024))), ("normal", 0.05)])
def test_init_schemes_draw_weights_at_their_scale_with_zero_biases(scheme, expected_std):
    torch.manual_seed(0)
    m = lessons.init_weights(lessons.mlp(), scheme, std=0.05)
    first = m[1]
    assert first.weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert first.bias.abs().sum().item() == 0


def test_default_init_keeps_pytorchs_weights_and_unknown_init_is_refused():
    torch.manual_seed(0)
    m = lessons.mlp([32])
    before = m[1].weight.clone()
    assert torch.equal(lessons.init_weights(m, "default")[1].weight, before)
    with pytest.raises(ValueError, match="unknown init 'glorot'"):
        lessons.init_weights(m, "glorot")


def test_summary_counts_shapes_parameters_and_macs():
    s = models.summary(lessons.mlp([1024, 1024, 1024]), (1, 28, 28))
    linear = [row for row in s["layers"] if row[1] == "Linear"]
    assert [row[2] for row in linear] == [(1024,), (1024,), (1024,), (10,)]
    assert linear[0][3] == 784 * 1024 + 1024 and linear[0][4] == 784 * 1024
    assert s["parameters"] == 2_913_290 and s["macs"] == 784 * 1024 + 2 * 1024 * 1024 + 1024 * 10
    assert "2,913,290" in models.describe(lessons.mlp(), (1, 28, 28))


def test_conv_macs_count_kernel_times_input_channels_per_output_value():
    conv = nn.Conv2d(3, 8, 5, padding=2)
    out = conv(torch.zeros(1, 3, 32, 32))
    assert models.macs(conv, out) == 8 * 32 * 32 * 3 * 25
