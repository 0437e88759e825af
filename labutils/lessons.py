"""The lessons' code that other labs, the tests and the benchmarks reuse: GENERATED from the notebooks' `#@save`
cells by `python -m labs.lessons`; do not edit here, edit the notebook that teaches it (and documents it: its
docstrings are there) and run that command. Each definition is the notebook's own, in the notebooks' order."""

import torch
from torch import nn


# --- from notebooks/01_mnist_mlp.ipynb

ACTIVATION_LAYERS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
                     "gelu": nn.GELU, "elu": nn.ELU}


def mlp(hidden=(1024, 1024, 1024), in_features=784, n_classes=10, activation="relu", dropout=0.0,
        batch_norm=False) -> nn.Sequential:
    layers = [nn.Flatten()]
    for width in hidden:
        layers.append(nn.Linear(in_features, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(ACTIVATION_LAYERS[activation]())
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_features = width
    layers.append(nn.Linear(in_features, n_classes))
    return nn.Sequential(*layers)


def init_weights(model: nn.Module, scheme: str = "he", std: float = 0.01, bias: float = 0.0) -> nn.Module:
    if scheme == "default":
        return model
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            if scheme == "he":          # std = √(2 / fan-in): ReLU keeps the signal's variance from layer to layer
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif scheme == "xavier":    # std = √(2 / (fan-in + fan-out)): made for tanh and sigmoid
                nn.init.xavier_normal_(m.weight)
            elif scheme == "normal":    # one fixed std for every layer, whatever its size
                nn.init.normal_(m.weight, 0.0, std)
            else:
                raise ValueError(f"unknown init {scheme!r}: he, xavier, normal or default")
            if m.bias is not None:
                nn.init.constant_(m.bias, bias)
    return model


# --- from notebooks/02_fashion_fcn_vs_lenet.ipynb

def fcn(in_features=784, width=512, n_classes=10) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.BatchNorm1d(width), nn.ReLU(),
                         nn.Linear(width, n_classes))


def lenet5(in_channels=1, padding=2, n_classes=10, modified=False, dropout=0.0) -> nn.Sequential:
    act = nn.ReLU if modified else nn.Tanh
    pool = nn.MaxPool2d if modified else nn.AvgPool2d

    def conv(c_in, c_out, pad=0):
        return [nn.Conv2d(c_in, c_out, 5, padding=pad)] + ([nn.BatchNorm2d(c_out)] if modified else []) + [act()]

    return nn.Sequential(
        *conv(in_channels, 6, padding), pool(2), *conv(6, 16), pool(2), *conv(16, 120), nn.Flatten(),
        nn.Linear(120, 84), act(), *([nn.Dropout(dropout)] if dropout else []), nn.Linear(84, n_classes))


# --- from notebooks/03_cifar10_cnn.ipynb

def model2(n_classes=10, dropout=0.5) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
        nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 8 * 128, 1024), nn.ReLU(), nn.Dropout(dropout), nn.Linear(1024, n_classes))


def cnn(widths=(64, 128, 256), blocks=2, batch_norm=True, pool="max", dropout=0.0, in_channels=3,
        n_classes=10) -> nn.Sequential:
    layers, channels = [], in_channels
    for width in widths:
        for _ in range(blocks):
            layers.append(nn.Conv2d(channels, width, 3, padding=1, bias=not batch_norm))
            layers += [nn.BatchNorm2d(width)] if batch_norm else []
            layers.append(nn.ReLU())
            channels = width
        layers.append(POOL_LAYERS[pool](2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()] + ([nn.Dropout(dropout)] if dropout else [])
    return nn.Sequential(*layers, nn.Linear(channels, n_classes))


# --- from notebooks/04_mnist_cnn_ensemble.ipynb

class MixedPool2d(nn.Module):

    def __init__(self, kernel_size: int = 2, ceil_mode: bool = False):
        super().__init__()
        self.kernel_size, self.ceil_mode = kernel_size, ceil_mode

    def forward(self, x):
        return 0.5 * (nn.functional.max_pool2d(x, self.kernel_size, ceil_mode=self.ceil_mode)
                      + nn.functional.avg_pool2d(x, self.kernel_size, ceil_mode=self.ceil_mode))


POOL_LAYERS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d, "mixed": MixedPool2d}


def ensemble_cnn(pool: str = "mixed", dropout: float = 0.5, slope: float = 0.2, in_channels: int = 1,
                 n_classes: int = 10) -> nn.Sequential:
    def conv(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), POOL_LAYERS[pool](2, ceil_mode=True)]

    def dense(f_in, f_out):
        return [nn.Linear(f_in, f_out), nn.LeakyReLU(slope), nn.Dropout(dropout)]

    return nn.Sequential(*conv(in_channels, 32), *conv(32, 64), *conv(64, 128), nn.Flatten(),
                         *dense(4 * 4 * 128, 1024), *dense(1024, 512), nn.Linear(512, n_classes))


def l2_penalty(model: nn.Module) -> torch.Tensor:
    return sum(p.pow(2).mean() for p in model.parameters() if p.dim() > 1)
