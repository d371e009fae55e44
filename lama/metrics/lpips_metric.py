"""LPIPS as the LaMa paper computed it: the ``lpips`` package, VGG16 trunk, v0.1 linear layers, [0,1] input."""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import nn

from .weights import assert_pretrained, load_state_dict

_TRUNKS = {"vgg": "vgg16", "alex": "alexnet"}


class LPIPSDistance(nn.Module):
    """Per-image LPIPS distance: forward(img0, img1), both [B,3,H,W] in [0,1] -> [B] float32.

    A thin wrapper so that the result is exactly the ``lpips`` package's (``lpips.LPIPS(net, version='0.1')``
    called with ``normalize=True``); it only provisions the trunk weights first and refuses untrained ones.
    """

    def __init__(self, net: str = "vgg") -> None:
        super().__init__()
        if net not in _TRUNKS:
            raise ValueError(f"net must be one of {sorted(_TRUNKS)}, got {net!r}")
        self.net_name = net
        trunk = load_state_dict(_TRUNKS[net])
        import lpips

        # The trunk is built without weights (pnet_rand: no download) and torchvision's ``features.i`` tensors are
        # loaded into lpips' slices, which keep the torchvision indices as module names. lpips prints its set-up
        # and torchvision warns about its legacy ``pretrained=`` argument: both noise.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            self.model = lpips.LPIPS(net=net, version="0.1", pnet_rand=True, verbose=False)
        slices = {k: "features." + k.split(".", 1)[1] for k in self.model.net.state_dict()}
        self.model.net.load_state_dict({k: trunk[v] for k, v in slices.items()})
        assert_pretrained(self.model.net, f"LPIPS {net} trunk")
        self.model.eval()
        self.model.requires_grad_(False)

    def train(self, mode: bool = True) -> LPIPSDistance:
        """Stays in eval mode: the linear layers' dropout must be off."""
        return super().train(False)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        for img in (img0, img1):
            if img.dim() != 4 or img.shape[1] != 3 or not img.is_floating_point():
                raise ValueError(f"expected float images [B,3,H,W] in [0,1], got {tuple(img.shape)} {img.dtype}")
        if img0.shape != img1.shape:
            raise ValueError(f"image shapes differ: {tuple(img0.shape)} vs {tuple(img1.shape)}")
        return self.model(img0, img1, normalize=True).flatten()
