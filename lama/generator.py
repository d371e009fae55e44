"""LaMa's generator: an hourglass ResNet whose bottleneck blocks are Fast Fourier Convolutions.

``FFCResNetGenerator`` reproduces the official module tree (``model.0`` ... ``model.N``) so that the
published weights load one for one. ``PRESETS`` holds the generator sections of the published
configs; ``generator_from_config`` builds one from such a section (a dict).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .errors import LamaError
from .ffc import FFC_BN_ACT, ConcatTupleLayer, FFCResnetBlock

_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class FFCResNetGenerator(nn.Module):
    """ReflectionPad+7x7 FFC, strided FFC downsampling, FFC resnet blocks, transposed-conv upsampling."""

    def __init__(self, input_nc: int = 4, output_nc: int = 3, ngf: int = 64, n_downsampling: int = 3,
                 n_blocks: int = 18, max_features: int = 1024, add_out_act: bool | str = "sigmoid",
                 init_conv_kwargs: dict | None = None, downsample_conv_kwargs: dict | None = None,
                 resnet_conv_kwargs: dict | None = None, padding_type: str = "reflect"):
        super().__init__()
        init_conv_kwargs = dict(init_conv_kwargs or {})
        downsample_conv_kwargs = dict(downsample_conv_kwargs or {})
        resnet_conv_kwargs = dict(resnet_conv_kwargs or {})
        self.n_blocks = n_blocks

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            FFC_BN_ACT(input_nc, ngf, kernel_size=7, activation_layer=nn.ReLU, **init_conv_kwargs),
        ]
        for i in range(n_downsampling):
            kwargs = dict(downsample_conv_kwargs)
            if i == n_downsampling - 1:  # the last one splits channels the way the resnet blocks read them
                kwargs["ratio_gout"] = resnet_conv_kwargs.get("ratio_gin", 0)
            layers.append(FFC_BN_ACT(min(max_features, ngf * 2**i), min(max_features, ngf * 2 ** (i + 1)),
                                     kernel_size=3, stride=2, padding=1, activation_layer=nn.ReLU, **kwargs))
        bottleneck = min(max_features, ngf * 2**n_downsampling)
        for _ in range(n_blocks):
            layers.append(FFCResnetBlock(bottleneck, padding_type=padding_type, activation_layer=nn.ReLU,
                                         **resnet_conv_kwargs))
        layers.append(ConcatTupleLayer())
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            cin, cout = min(max_features, ngf * mult), min(max_features, ngf * mult // 2)
            layers += [nn.ConvTranspose2d(cin, cout, kernel_size=3, stride=2, padding=1, output_padding=1),
                       nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7)]
        if add_out_act:
            layers.append(_ACTIVATIONS["tanh" if add_out_act is True else add_out_act]())
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``cat(image * (1 - mask), mask)``, [B, 4, H, W] with H, W multiples of 8."""
        return self.model(x)


_FFC_075 = {
    "init_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    "downsample_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    "resnet_conv_kwargs": {"ratio_gin": 0.75, "ratio_gout": 0.75, "enable_lfu": False},
}

#: Generator sections of the published configs (``configs/training/*.yaml`` in advimman/lama).
PRESETS: dict[str, dict[str, Any]] = {
    "lama-fourier": {"kind": "ffc_resnet", "input_nc": 4, "output_nc": 3, "ngf": 64, "n_downsampling": 3,
                     "n_blocks": 9, "add_out_act": "sigmoid", **_FFC_075},
    "big-lama": {"kind": "ffc_resnet", "input_nc": 4, "output_nc": 3, "ngf": 64, "n_downsampling": 3,
                 "n_blocks": 18, "add_out_act": "sigmoid", **_FFC_075},
}

_SUPPORTED_KEYS = {"kind", "input_nc", "output_nc", "ngf", "n_downsampling", "n_blocks", "max_features",
                   "add_out_act", "init_conv_kwargs", "downsample_conv_kwargs", "resnet_conv_kwargs",
                   "padding_type"}
# Keys of the official constructor that this package ignores only when they keep their default.
_DEFAULT_ONLY = {"norm_layer": None, "activation_layer": None, "up_norm_layer": None, "up_activation": None,
                 "spatial_transform_layers": None, "spatial_transform_kwargs": {}, "out_ffc": False,
                 "out_ffc_kwargs": {}}
_CONV_KEYS = {"ratio_gin", "ratio_gout", "enable_lfu"}
_INT_RANGES = {"input_nc": (1, 64), "output_nc": (1, 64), "ngf": (1, 1024), "n_downsampling": (0, 8),
               "n_blocks": (0, 200), "max_features": (1, 8192)}


def preset_config(name: str) -> dict[str, Any]:
    """A copy of a preset's generator section; ``LamaError`` for an unknown name."""
    if name not in PRESETS:
        raise LamaError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def generator_from_config(cfg: dict[str, Any]) -> FFCResNetGenerator:
    """Build the generator described by a config's ``generator`` section (interpolations resolved)."""
    if not isinstance(cfg, dict):
        raise LamaError(f"the generator config must be a mapping, got {type(cfg).__name__}")
    kind = cfg.get("kind", "ffc_resnet")
    if kind != "ffc_resnet":
        raise LamaError(f"generator kind {kind!r} is not supported (only LaMa's 'ffc_resnet')")
    for key, default in _DEFAULT_ONLY.items():
        if key in cfg and cfg[key] not in (default, None):
            raise LamaError(f"generator option {key}={cfg[key]!r} is not supported by this package")
    unknown = set(cfg) - _SUPPORTED_KEYS - set(_DEFAULT_ONLY)
    if unknown:
        raise LamaError(f"unknown generator options in config: {', '.join(sorted(unknown))}")
    kwargs = {k: v for k, v in cfg.items() if k in _SUPPORTED_KEYS and k != "kind"}
    for key, (lo, hi) in _INT_RANGES.items():
        v = kwargs.get(key)
        if v is not None and (type(v) is not int or not lo <= v <= hi):
            raise LamaError(f"generator.{key} must be an integer in [{lo}, {hi}], got {v!r}")
    if kwargs.get("add_out_act", "sigmoid") not in (True, False, "sigmoid", "tanh"):
        raise LamaError(f"generator.add_out_act must be sigmoid, tanh, true or false, got {kwargs['add_out_act']!r}")
    if kwargs.get("padding_type", "reflect") not in ("reflect", "zeros", "replicate", "circular"):
        raise LamaError(f"generator.padding_type {kwargs['padding_type']!r} is not a torch padding mode")
    for key in ("init_conv_kwargs", "downsample_conv_kwargs", "resnet_conv_kwargs"):
        conv = kwargs.get(key) or {}
        if not isinstance(conv, dict):
            raise LamaError(f"generator.{key} must be a mapping, got {conv!r}")
        extra = set(conv) - _CONV_KEYS
        if extra:
            raise LamaError(f"unsupported options in generator.{key}: {', '.join(sorted(extra))}")
        for r in ("ratio_gin", "ratio_gout"):
            v = conv.get(r, 0)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                raise LamaError(f"generator.{key}.{r} must be a number in [0, 1], got {v!r}")
        if not isinstance(conv.get("enable_lfu", False), bool):
            raise LamaError(f"generator.{key}.enable_lfu must be true or false")
    try:
        return FFCResNetGenerator(**kwargs)
    except (ValueError, RuntimeError, TypeError) as e:
        raise LamaError(f"cannot build a generator from this config: {e}") from e


def build_preset(name: str) -> FFCResNetGenerator:
    """A generator with the preset's structure and freshly initialised (random) weights."""
    return generator_from_config(preset_config(name))
