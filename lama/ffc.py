"""Fast Fourier Convolution (Chi et al., NeurIPS 2020) as LaMa uses it.

Module and parameter names follow the official LaMa code so that its checkpoints load with
``strict=True``: an FFC splits channels into a *local* part (ordinary convolutions) and a *global*
part whose g2g path is a :class:`SpectralTransform`, a 1x1 convolution applied in the frequency
domain, which gives every layer a receptive field covering the whole image.

Tensors travel between FFC layers as ``(x_local, x_global)`` pairs; a missing part is the
integer ``0`` (never an empty tensor), as in the official code.
"""

from __future__ import annotations

import torch
from torch import nn

Pair = tuple[torch.Tensor | int, torch.Tensor | int]


class FourierUnit(nn.Module):
    """1x1 conv + BN + ReLU on the real 2-D spectrum (``rfftn``, ``norm='ortho'``).

    The real and imaginary parts of each channel are interleaved as channels ``2c`` and ``2c+1``,
    which is the order the official weights expect.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int = 1, fft_norm: str = "ortho"):
        super().__init__()
        self.conv_layer = nn.Conv2d(in_channels * 2, out_channels * 2, kernel_size=1, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels * 2)
        self.relu = nn.ReLU(inplace=True)
        self.fft_norm = fft_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        dtype = x.dtype  # FFTs run in float32 for half/bfloat16 networks (no half FFT; fp16 overflows)
        fft_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        spec = torch.fft.rfftn(x.to(fft_dtype), dim=(-2, -1), norm=self.fft_norm)  # [b, c, h, w//2+1]
        spec = torch.stack((spec.real, spec.imag), dim=2)  # [b, c, 2, h, w']
        spec = spec.reshape(b, -1, *spec.shape[3:]).to(dtype)  # channels: c0.re, c0.im, c1.re, ...
        spec = self.relu(self.bn(self.conv_layer(spec)))
        spec = spec.reshape(b, -1, 2, *spec.shape[2:]).to(fft_dtype)
        spec = torch.complex(spec[:, :, 0], spec[:, :, 1])
        return torch.fft.irfftn(spec, s=(h, w), dim=(-2, -1), norm=self.fft_norm).to(dtype)


class SpectralTransform(nn.Module):
    """The global-to-global path: 1x1 conv halves channels, Fourier unit(s), 1x1 conv back."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, groups: int = 1,
                 enable_lfu: bool = True, fft_norm: str = "ortho"):
        super().__init__()
        self.enable_lfu = enable_lfu
        self.downsample = nn.AvgPool2d(kernel_size=2, stride=2) if stride == 2 else nn.Identity()
        half = out_channels // 2
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, half, kernel_size=1, groups=groups, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
        )
        self.fu = FourierUnit(half, half, groups, fft_norm=fft_norm)
        if enable_lfu:
            self.lfu = FourierUnit(half, half, groups)
        self.conv2 = nn.Conv2d(half, out_channels, kernel_size=1, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.downsample(x))
        out = x + self.fu(x)
        if self.enable_lfu:
            # Local Fourier unit: the first quarter of the channels, cut into 2x2 spatial tiles
            # stacked along channels, transformed, and tiled back over the image. As in the
            # official code both axes are cut every h // 2 pixels (square feature maps).
            c, h = x.shape[1:3]
            tiles = torch.cat(torch.split(x[:, : c // 4], h // 2, dim=-2), dim=1)
            tiles = torch.cat(torch.split(tiles, h // 2, dim=-1), dim=1)
            out = out + self.lfu(tiles).repeat(1, 1, 2, 2)
        return self.conv2(out)


def _conv_or_none(cin: int, cout: int, **kw) -> nn.Module:
    """A conv, or an Identity placeholder when either side has no channels (official naming)."""
    return nn.Conv2d(cin, cout, **kw) if cin > 0 and cout > 0 else nn.Identity()


class FFC(nn.Module):
    """Four paths between local and global channels: l2l, g2l, l2g convs and the g2g spectral transform."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, ratio_gin: float,
                 ratio_gout: float, stride: int = 1, padding: int = 0, dilation: int = 1, groups: int = 1,
                 bias: bool = False, enable_lfu: bool = True, padding_type: str = "reflect"):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError("FFC stride must be 1 or 2")
        in_cg = int(in_channels * ratio_gin)
        in_cl = in_channels - in_cg
        out_cg = int(out_channels * ratio_gout)
        out_cl = out_channels - out_cg
        self.ratio_gin, self.ratio_gout = ratio_gin, ratio_gout
        self.global_in_num = in_cg
        conv = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                    groups=groups, bias=bias, padding_mode=padding_type)
        self.convl2l = _conv_or_none(in_cl, out_cl, **conv)
        self.convl2g = _conv_or_none(in_cl, out_cg, **conv)
        self.convg2l = _conv_or_none(in_cg, out_cl, **conv)
        if in_cg > 0 and out_cg > 0:
            self.convg2g = SpectralTransform(in_cg, out_cg, stride, 1 if groups == 1 else groups // 2, enable_lfu)
        else:
            self.convg2g = nn.Identity()

    def forward(self, x: torch.Tensor | Pair) -> Pair:
        x_l, x_g = x if isinstance(x, tuple) else (x, 0)
        out_l: torch.Tensor | int = 0
        out_g: torch.Tensor | int = 0
        if self.ratio_gout != 1:
            out_l = self.convl2l(x_l)
            if self.global_in_num:
                out_l = out_l + self.convg2l(x_g)
        if self.ratio_gout != 0:
            out_g = self.convl2g(x_l)
            if self.global_in_num:
                out_g = out_g + self.convg2g(x_g)
        return out_l, out_g


class FFC_BN_ACT(nn.Module):  # noqa: N801 (official name, kept so checkpoints and readers match)
    """FFC followed by BatchNorm and activation on each non-empty part."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, ratio_gin: float = 0,
                 ratio_gout: float = 0, stride: int = 1, padding: int = 0, dilation: int = 1, groups: int = 1,
                 bias: bool = False, norm_layer: type[nn.Module] = nn.BatchNorm2d,
                 activation_layer: type[nn.Module] = nn.Identity, padding_type: str = "reflect",
                 enable_lfu: bool = True):
        super().__init__()
        self.ffc = FFC(in_channels, out_channels, kernel_size, ratio_gin, ratio_gout, stride, padding,
                       dilation, groups, bias, enable_lfu, padding_type=padding_type)
        global_channels = int(out_channels * ratio_gout)
        has_l, has_g = ratio_gout != 1, ratio_gout != 0
        self.bn_l = norm_layer(out_channels - global_channels) if has_l else nn.Identity()
        self.bn_g = norm_layer(global_channels) if has_g else nn.Identity()
        self.act_l = activation_layer(inplace=True) if has_l else nn.Identity()
        self.act_g = activation_layer(inplace=True) if has_g else nn.Identity()

    def forward(self, x: torch.Tensor | Pair) -> Pair:
        x_l, x_g = self.ffc(x)
        if not isinstance(x_l, int):
            x_l = self.act_l(self.bn_l(x_l))
        if not isinstance(x_g, int):
            x_g = self.act_g(self.bn_g(x_g))
        return x_l, x_g


class FFCResnetBlock(nn.Module):
    """Two 3x3 FFC+BN+ReLU layers with a residual connection on both parts."""

    def __init__(self, dim: int, padding_type: str = "reflect", norm_layer: type[nn.Module] = nn.BatchNorm2d,
                 activation_layer: type[nn.Module] = nn.ReLU, dilation: int = 1, **conv_kwargs):
        super().__init__()
        kw = dict(kernel_size=3, padding=dilation, dilation=dilation, norm_layer=norm_layer,
                  activation_layer=activation_layer, padding_type=padding_type, **conv_kwargs)
        self.conv1 = FFC_BN_ACT(dim, dim, **kw)
        self.conv2 = FFC_BN_ACT(dim, dim, **kw)

    def forward(self, x: Pair) -> Pair:
        id_l, id_g = x if isinstance(x, tuple) else (x, 0)
        x_l, x_g = self.conv2(self.conv1((id_l, id_g)))
        return id_l + x_l, id_g + x_g


class ConcatTupleLayer(nn.Module):
    """Joins the (local, global) pair back into one tensor along channels."""

    def forward(self, x: Pair) -> torch.Tensor:
        x_l, x_g = x
        if isinstance(x_g, int):
            return x_l
        if isinstance(x_l, int):
            return x_g
        return torch.cat((x_l, x_g), dim=1)

