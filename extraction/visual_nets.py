"""The two visual networks of the LLP features, written to load torchvision's weight files as is.

torchvision itself is not imported: PyPI's torchvision is built against CUDA torch and fails to
import beside a CPU-only torch ("operator torchvision::nms does not exist"). These modules
reproduce the parameter and buffer names and shapes of `torchvision.models.resnet152` and
`torchvision.models.video.r2plus1d_18`, so `load_state_dict` of their published files is strict:

- ResNet-152 (ImageNet): resnet152-394f9c45.pth; the frame feature is the 2048-d global average
  pool before `fc`, what AVVP-ECCV20's scripts/extract_rgb_feat.py read (pretrainedmodels'
  resnet152 with `last_linear` replaced by an identity).
- R(2+1)D-18 (Kinetics-400): r2plus1d_18-91a641e6.pth; the clip feature is the 512-d adaptive
  average pool, what scripts/extract_3D_feat.py read (`nn.Sequential(*children[:-1])`, squeezed).

Call `.eval()` before extracting: the features are read with the stored BatchNorm statistics.
"""
from torch import nn

IMAGENET_CLASSES = 1000
KINETICS_CLASSES = 400
RESNET152_BLOCKS = (3, 8, 36, 3)
R2PLUS1D_18_BLOCKS = (2, 2, 2, 2)
# channels of the residual stream entering layer1 and the widths of layers 1..4
STEM_CHANNELS = 64
LAYER_WIDTHS = (64, 128, 256, 512)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block, (B, inplanes, H, W) -> (B, 4 * planes, H/stride, W/stride).

    The stride sits on the 3x3 convolution as in torchvision ("ResNet V1.5"), not on the first
    1x1 as in He et al. 2016; the downsample branch (1x1 conv with the stride, BN) exists when
    the stride or the channel count changes.
    """
    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        outplanes = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, outplanes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(outplanes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != outplanes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, outplanes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(outplanes),
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet152(nn.Module):
    """ImageNet ResNet-152 with torchvision's state-dict layout; images (B, 3, 224, 224)."""

    def __init__(self, num_classes=IMAGENET_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = STEM_CHANNELS
        for index, (planes, blocks) in enumerate(zip(LAYER_WIDTHS, RESNET152_BLOCKS)):
            stride = 1 if index == 0 else 2
            layer = []
            for block in range(blocks):
                layer.append(Bottleneck(inplanes, planes, stride if block == 0 else 1))
                inplanes = planes * Bottleneck.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        self.feature_dim = inplanes

    def features(self, images):
        """(B, 3, H, W) normalised images -> (B, 2048) global average pool, the LLP frame feature."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward(self, images):
        """(B, 3, H, W) -> (B, 1000) ImageNet logits."""
        return self.fc(self.features(images))


def resnet152():
    """ResNet-152, randomly initialised; torchvision's resnet152-394f9c45.pth loads into it strictly
    (extraction/weights.py finds and checks the file, extraction/extractor.py loads it)."""
    return ResNet152()


class Conv2Plus1D(nn.Sequential):
    """(2+1)D convolution: 1x3x3 spatial conv, BN, ReLU, then 3x1x1 temporal conv.

    (B, in_planes, T, H, W) -> (B, out_planes, T/stride, H/stride, W/stride); `midplanes` is the
    width between the two (Tran et al. 2018 choose it so the parameter count matches a 3x3x3 conv).
    """

    def __init__(self, in_planes, out_planes, midplanes, stride=1):
        super().__init__(
            nn.Conv3d(in_planes, midplanes, kernel_size=(1, 3, 3), stride=(1, stride, stride),
                      padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, kernel_size=(3, 1, 1), stride=(stride, 1, 1),
                      padding=(1, 0, 0), bias=False),
        )


class BasicBlock(nn.Module):
    """Two (2+1)D convolutions with a residual, (B, inplanes, T, H, W) -> (B, planes, T/s, H/s, W/s).

    Both convolutions use the midplanes computed from (inplanes, planes), as torchvision does.
    """

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        midplanes = (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)
        self.conv1 = nn.Sequential(Conv2Plus1D(inplanes, planes, midplanes, stride),
                                   nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes, midplanes), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            # the shortcut strides in time too, like the (2+1)D branch
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(planes),
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


class R2Plus1D18(nn.Module):
    """Kinetics-400 R(2+1)D-18 with torchvision's state-dict layout; clips (B, 3, T, 112, 112)."""

    def __init__(self, num_classes=KINETICS_CLASSES):
        super().__init__()
        # spatial 1x7x7 then temporal 3x1x1 stem, with 45 channels between (torchvision's R2Plus1dStem)
        self.stem = nn.Sequential(
            nn.Conv3d(3, 45, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(45),
            nn.ReLU(inplace=True),
            nn.Conv3d(45, STEM_CHANNELS, kernel_size=(3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(STEM_CHANNELS),
            nn.ReLU(inplace=True),
        )
        inplanes = STEM_CHANNELS
        for index, (planes, blocks) in enumerate(zip(LAYER_WIDTHS, R2PLUS1D_18_BLOCKS)):
            stride = 1 if index == 0 else 2
            layer = []
            for block in range(blocks):
                layer.append(BasicBlock(inplanes, planes, stride if block == 0 else 1))
                inplanes = planes
            setattr(self, f"layer{index + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        self.feature_dim = inplanes

    def features(self, clips):
        """(B, 3, T, H, W) normalised clips -> (B, 512) average pool, the LLP 3D feature."""
        x = self.stem(clips)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward(self, clips):
        """(B, 3, T, H, W) -> (B, 400) Kinetics-400 logits."""
        return self.fc(self.features(clips))


def r2plus1d_18():
    """R(2+1)D-18, randomly initialised; torchvision's r2plus1d_18-91a641e6.pth loads into it strictly
    (extraction/weights.py finds and checks the file, extraction/extractor.py loads it)."""
    return R2Plus1D18()
