"""Image backbones in plain torch: ResNet-18, DenseNet-161 and the pre-activation stacks of MANs-n.

torchvision cannot be installed beside the project's CPU torch, so the two standard ImageNet
architectures that MANs (Xie et al., IJCAI 2018, Sec. 3.1) uses in its STCM are written here,
layer for layer as published:

* ResNet-18: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
  Table 1 (7x7/2 stem, 3x3/2 max-pool, four stages of two basic blocks, 64-512 channels);
  11,689,512 parameters with 1000 classes, the torchvision count.
* DenseNet-161: Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional
  Networks", CVPR 2017 (DenseNet-BC, growth rate 48, blocks of 6/12/36/24 layers, 96 stem
  features, bottleneck 4k, compression 0.5); 28,681,000 parameters with 1000 classes.
* :class:`PreActStack`: the "MANs-n" STCM of Table 2 (5x5/2 convolution, two stages of
  pre-activation BN-ReLU-Conv basic blocks at 64 and 128 channels, global average pooling, FC);
  ``n`` counts the 3x3 and 5x5 convolutions (1 + 4 x blocks per stage).

Every backbone maps ``(N, C, H, W)`` images to ``(N, num_classes)`` logits and works at any input
size that survives its down-sampling (global average pooling at the end). Not a model family: the
registry skips this module.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# --- ResNet-18 -----------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN and ReLU and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))
            if stride != 1 or in_channels != channels
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with basic blocks (``layers`` blocks per stage); ``resnet18`` is ``[2, 2, 2, 2]``."""

    def __init__(self, layers: tuple[int, ...], *, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages: list[nn.Module] = []
        channels = 64
        for i, blocks in enumerate(layers):
            out = 64 * 2**i
            stage = [BasicBlock(channels, out, 1 if i == 0 else 2)]
            stage += [BasicBlock(out, out) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        _init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


def resnet18(*, num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNet-18 (He et al. 2016, Table 1)."""
    return ResNet((2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels)


# --- DenseNet-161 ----------------------------------------------------------------------------------------


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 (bottleneck to ``bn_size * growth``) then BN-ReLU-Conv3x3 (``growth``)."""

    def __init__(self, in_channels: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, bn_size * growth, 1, bias=False),
            nn.BatchNorm2d(bn_size * growth),
            nn.ReLU(inplace=True),
            nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False),
        )

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.body(torch.cat(features, dim=1))


class DenseBlock(nn.Module):
    """Each layer reads the concatenation of the block input and every earlier layer's output."""

    def __init__(self, num_layers: int, in_channels: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(in_channels + i * growth, growth, bn_size) for i in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, dim=1)


class DenseNet(nn.Module):
    """DenseNet-BC: stem, dense blocks separated by BN-ReLU-Conv1x1-AvgPool transitions (compression 0.5)."""

    def __init__(
        self,
        *,
        growth: int,
        blocks: tuple[int, ...],
        init_features: int,
        bn_size: int = 4,
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, init_features, 7, 2, 3, bias=False),
            nn.BatchNorm2d(init_features),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        ]
        channels = init_features
        for i, num_layers in enumerate(blocks):
            layers.append(DenseBlock(num_layers, channels, growth, bn_size))
            channels += num_layers * growth
            if i != len(blocks) - 1:
                layers += [
                    nn.BatchNorm2d(channels),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(channels, channels // 2, 1, bias=False),
                    nn.AvgPool2d(2, 2),
                ]
                channels //= 2
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        _init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def densenet161(*, num_classes: int = 1000, in_channels: int = 3) -> DenseNet:
    """DenseNet-161 (Huang et al. 2017): growth 48, blocks (6, 12, 36, 24), 96 stem features."""
    return DenseNet(
        growth=48, blocks=(6, 12, 36, 24), init_features=96, num_classes=num_classes, in_channels=in_channels
    )


# --- MANs-n: stacked BN-ReLU-Conv blocks (Table 2) -------------------------------------------------------


class PreActBlock(nn.Module):
    """BN-ReLU-Conv3x3, BN-ReLU-Conv3x3 plus a shortcut (a 1x1 projection of the block input when
    the shape changes). ``preactivate=False`` drops the first BN-ReLU (the first block after the
    stem, whose output is already BN-ReLU'd), as the pre-activation ResNet does."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1, *, preactivate: bool = True) -> None:
        super().__init__()
        self.pre = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU()) if preactivate else nn.Identity()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.relu = nn.ReLU()
        self.shortcut = (
            nn.Conv2d(in_channels, channels, 1, stride, bias=False) if stride != 1 or in_channels != channels else None
        )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.conv1(self.pre(x))
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity


class PreActStack(nn.Module):
    """The STCM of MANs-n (Table 2): Conv5x5/2 (64) with BN-ReLU, ``blocks`` pre-activation blocks
    at 64 channels, ``blocks`` at 128 (the first with stride 2), BN-ReLU, global average pooling, FC.

    ``depth`` n = 1 + 4 * blocks convolutions: 9, 33 and 61 give the paper's 2, 8 and 15 blocks.
    The layout follows the authors' Keras code (``MANs_9.py``): the 5x5 convolution reads the
    recalibrated image directly and is followed by BN-ReLU, so the first block skips its own
    pre-activation (eq. 9 writes a BN-ReLU in front of the first convolution instead, which would
    clip every negative coordinate).
    """

    def __init__(self, depth: int, *, num_classes: int, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        if depth < 5 or (depth - 1) % 4:
            raise ValueError(f"MANs-n depth must be 1 + 4 * blocks (9, 33, 61, ...), got {depth}")
        blocks = (depth - 1) // 4
        self.depth = depth
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 5, 2, 2, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stage1 = [PreActBlock(width, width, preactivate=i > 0) for i in range(blocks)]
        stage2 = [PreActBlock(width, 2 * width, 2)] + [PreActBlock(2 * width, 2 * width) for _ in range(blocks - 1)]
        self.stages = nn.Sequential(*stage1, *stage2)
        self.head = nn.Sequential(nn.BatchNorm2d(2 * width), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(2 * width, num_classes)
        _init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.head(self.stages(self.stem(x))).flatten(1))


def _init_conv_bn(module: nn.Module) -> None:
    """He-normal convolutions (fan-out), BN weight 1 / bias 0, as torchvision initialises these nets."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


#: STCM names -> (builder, default scale)
STCM_SCALES = {"mans9": "small", "mans33": "small", "mans61": "small", "resnet18": "large", "densenet161": "large"}


def build_stcm(name: str, *, num_classes: int, in_channels: int = 3) -> nn.Module:
    """The STCM backbone ``name``: ``mans9`` / ``mans33`` / ``mans61`` / ``resnet18`` / ``densenet161``."""
    if name == "resnet18":
        return resnet18(num_classes=num_classes, in_channels=in_channels)
    if name == "densenet161":
        return densenet161(num_classes=num_classes, in_channels=in_channels)
    if name.startswith("mans") and name[4:].isdigit():
        return PreActStack(int(name[4:]), num_classes=num_classes, in_channels=in_channels)
    raise ValueError(f"unknown STCM backbone {name!r}; known: {sorted(STCM_SCALES)} (or mans<1+4k>)")
