"""ResNetPL: LaMa's "high receptive field" perceptual loss on a frozen ADE20k segmentation encoder.

The loss compares the features of the predicted and the real image in the four stages of the ``resnet50dilated``
encoder of the CSAIL ADE20k scene-parsing model (ResNet-50 with a three-conv stem, the strides of layer3 and layer4
replaced by dilations 2 and 4, so the last three stages all work at 1/8 of the input size):

    loss = weight * sum_(l=1..4) mean((E_l(n(pred)) - E_l(n(target)))**2),   n = ImageNet normalisation.

The encoder weights are the published ``encoder_epoch_20.pth`` (about 94 MB), which LaMa reads from
``$TORCH_HOME/ade20k/ade20k-resnet50dilated-ppm_deepsup/encoder_epoch_20.pth``; :func:`find_encoder_weights`
says where to get it when it is missing. Unlike the official loader (``strict=False``, so a wrong or renamed file
silently leaves random weights), :func:`load_encoder` insists that every weight of the file arrives.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LamaError
from .checkpoint import key_problems

ENCODER_FILE = "ade20k/ade20k-resnet50dilated-ppm_deepsup/encoder_epoch_20.pth"
ENCODER_URL = "http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet50dilated-ppm_deepsup/encoder_epoch_20.pth"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = [
    "ENCODER_FILE", "ENCODER_URL", "IMAGENET_MEAN", "IMAGENET_STD", "ResNet50Dilated", "ResNetPL",
    "find_encoder_weights", "load_encoder",
]


class _Bottleneck(nn.Module):
    """ResNet-50 bottleneck (1x1, 3x3, 1x1, expansion 4); the stride sits on the 3x3 conv as in the CSAIL model."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet50Dilated(nn.Module):
    """The ADE20k ``resnet50dilated`` encoder (dilate_scale 8); returns the outputs of layer1..layer4.

    Parameter names, order and shapes are those of ``encoder_epoch_20.pth``. The stride-2 convs of layer3 and
    layer4 run with stride 1; in each of these two stages the first block's 3x3 conv gets half the stage's dilation
    (1 in layer3, 2 in layer4) and the other blocks the full dilation (2 and 4), with padding equal to the dilation,
    so the feature maps have 1/4, 1/8, 1/8 and 1/8 of the input size (256, 512, 1024 and 2048 channels).
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 128, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._inplanes = 128
        self.layer1 = self._stage(64, 3, stride=1, dilation=1)
        self.layer2 = self._stage(128, 4, stride=2, dilation=1)
        self.layer3 = self._stage(256, 6, stride=1, dilation=2)
        self.layer4 = self._stage(512, 3, stride=1, dilation=4)

    def _stage(self, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
        out_planes = planes * _Bottleneck.expansion
        # every stage of ResNet-50 starts with a projection shortcut (channels change; in layer3/4 the stride was
        # removed by the dilation, but the 1x1 projection stays, with stride 1)
        downsample = nn.Sequential(
            nn.Conv2d(self._inplanes, out_planes, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_planes),
        )
        first_dilation = max(dilation // 2, 1)
        layers = [_Bottleneck(self._inplanes, planes, stride, first_dilation, downsample)]
        self._inplanes = out_planes
        layers += [_Bottleneck(out_planes, planes, 1, dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.maxpool(x)
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


def _uninitialised_encoder() -> ResNet50Dilated:
    """The encoder with allocated but unset weights (skips the random init, ~1 s, when all weights get loaded);
    ``num_batches_tracked`` is zeroed, as the file may lack it."""
    with torch.device("meta"):
        encoder = ResNet50Dilated()
    encoder.to_empty(device="cpu")
    for name, buf in encoder.named_buffers():
        if name.endswith("num_batches_tracked"):
            buf.zero_()
    return encoder


def _default_weights_folder() -> Path:
    torch_home = os.environ.get("TORCH_HOME")
    return Path(torch_home) if torch_home else Path.home() / ".cache" / "torch"


def find_encoder_weights(weights_path: str | os.PathLike | None = None) -> Path:
    """Where the ADE20k encoder weights are: ``<weights_path>/`` + :data:`ENCODER_FILE`.

    ``weights_path`` is a folder, as the official config's ``losses.resnet_pl.weights_path`` (which is
    ``${env:TORCH_HOME}``); default ``$TORCH_HOME``, else ``~/.cache/torch``. A path to the ``.pth`` file itself is
    accepted too. Raises :class:`LamaError` saying what to download and where when the file is not there.
    """
    folder = _default_weights_folder() if weights_path is None else Path(weights_path).expanduser()
    if folder.is_file():
        return folder
    path = folder / ENCODER_FILE
    if path.is_file():
        return path
    raise LamaError(
        f"ResNetPL encoder weights not found: looked at {path}. Download them from {ENCODER_URL} "
        f"and put encoder_epoch_20.pth in the folder {path.parent} (e.g. wget -P {path.parent} {ENCODER_URL}), "
        f"or point weights_path / $TORCH_HOME at the folder that holds {ENCODER_FILE}. "
        "To train without this loss, set losses.resnet_pl.weight: 0 in the training config."
    )


def load_encoder(path: str | os.PathLike) -> ResNet50Dilated:
    """Read ``encoder_epoch_20.pth`` (or a file in its layout) into a :class:`ResNet50Dilated`, in eval mode.

    Loads with ``torch.load(weights_only=True)`` (no pickled code runs). A checkpoint dict that wraps the weights
    under ``'state_dict'`` and a ``'module.'`` prefix (DataParallel) are accepted. Every weight must arrive: missing
    keys (``num_batches_tracked`` may be absent), unexpected keys and shape mismatches raise :class:`LamaError`.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any failure to read is a problem of the file
        raise LamaError(
            f"cannot read the ResNetPL encoder weights {path}: {type(e).__name__}: {e}. The file should be "
            f"{ENCODER_FILE} as downloaded from {ENCODER_URL} (a torch.save'd state_dict); download it again."
        ) from e
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LamaError(f"{path} is not a state_dict of tensors (got {type(obj).__name__}); expected the ADE20k "
                        f"resnet50dilated encoder weights from {ENCODER_URL}")
    return encoder_from_state({str(k): v for k, v in obj.items()}, str(path))


def encoder_from_state(state: Mapping[str, torch.Tensor], origin: str) -> ResNet50Dilated:
    """The encoder with ``state``'s weights, in eval mode; every weight must be there (see :func:`load_encoder`).
    Also reads the ``loss_resnet_pl.impl.*`` weights that the official ``big-lama-with-discr`` checkpoint carries."""
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}

    encoder = _uninitialised_encoder()
    problems = key_problems(encoder.state_dict(), state)
    if problems:
        raise LamaError(
            f"{origin} is not the ADE20k resnet50dilated encoder ({ENCODER_FILE}): " + "; ".join(problems)
            + f". Download the right file from {ENCODER_URL}."
        )
    encoder.load_state_dict(state, strict=False)  # strict=False only for an absent num_batches_tracked
    return encoder.eval()


class ResNetPL(nn.Module):
    """LaMa's ResNetPL loss: ``weight * sum over layer1..4 of mse(E(n(pred)), E(n(target)))``.

    ``pred`` and ``target`` are [B,3,H,W] images in [0,1]; both are ImageNet-normalised and run through the encoder
    in two separate calls (pred first), as the official code does. No mask is used. The encoder's parameters are
    frozen (``requires_grad=False``); the gradient flows to ``pred``.

    ``batch_stats`` chooses what the encoder's BatchNorm layers do:

    - ``True`` (default) reproduces the official trainer: the official ``ResNetPL`` puts its encoder in eval mode
      once, but Lightning's ``model.train()`` switches the whole training module, encoder included, back to train
      mode. So while this module is in train mode, each encoder call (pred, then target) is normalised with its own
      batch statistics and the running statistics drift (momentum 0.1) on every call; in eval mode (validation)
      the running statistics are used. The encoder simply follows this module's ``train()``/``eval()``.
    - ``False`` keeps the encoder in eval mode always, also when ``.train()`` is called on a parent module: the
      features use the published running statistics, which never change (arguably the intended behaviour, but not
      what the released LaMa models were trained with).

    The encoder is registered as ``impl``, the official attribute name, so the state_dict keys of a training
    module read ``loss_resnet_pl.impl.*`` as in the official checkpoints.
    """

    def __init__(self, encoder: nn.Module, weight: float = 30.0, batch_stats: bool = True):
        super().__init__()
        self.impl = encoder
        for p in self.impl.parameters():
            p.requires_grad_(False)
        self.weight = float(weight)
        self.batch_stats = bool(batch_stats)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.train(self.training)

    @property
    def encoder(self) -> nn.Module:
        return self.impl

    @classmethod
    def from_path(cls, weights_path: str | os.PathLike | None = None, weight: float = 30.0,
                  batch_stats: bool = True) -> ResNetPL:
        """Find (:func:`find_encoder_weights`) and load (:func:`load_encoder`) the encoder, then wrap it."""
        return cls(load_encoder(find_encoder_weights(weights_path)), weight=weight, batch_stats=batch_stats)

    def train(self, mode: bool = True) -> ResNetPL:
        super().train(mode)
        if not self.batch_stats:
            self.impl.eval()
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four encoder feature maps of an image in [0,1] (one encoder call; updates running stats in train
        mode when ``batch_stats``)."""
        x = (x - self.mean.to(x)) / self.std.to(x)
        return self.impl(x)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred_feats = self.features(pred)
        target_feats = self.features(target)
        per_layer = torch.stack([F.mse_loss(p, t) for p, t in zip(pred_feats, target_feats, strict=True)])
        return per_layer.sum() * self.weight
