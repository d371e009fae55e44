"""The pix2pixHD patch discriminator LaMa trains against (``pix2pixhd_nlayer``, ``ndf=64, n_layers=4``)."""

from __future__ import annotations

import torch
from torch import nn


class NLayerDiscriminator(nn.Module):
    """4x4 strided convs with LeakyReLU(0.2); returns patch logits and every intermediate activation.

    The intermediate activations feed LaMa's discriminator feature-matching loss. Sub-modules are
    named ``model0`` ... ``model{n_layers+1}`` as in the official checkpoints.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 4,
                 norm_layer: type[nn.Module] = nn.BatchNorm2d):
        super().__init__()
        self.n_layers = n_layers
        kw, padw = 4, 2
        stages: list[list[nn.Module]] = [
            [nn.Conv2d(input_nc, ndf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]]
        nf = ndf
        for _ in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stages.append([nn.Conv2d(nf_prev, nf, kw, stride=2, padding=padw), norm_layer(nf),
                           nn.LeakyReLU(0.2, True)])
        nf_prev, nf = nf, min(nf * 2, 512)
        stages.append([nn.Conv2d(nf_prev, nf, kw, stride=1, padding=padw), norm_layer(nf),
                       nn.LeakyReLU(0.2, True)])
        stages.append([nn.Conv2d(nf, 1, kw, stride=1, padding=padw)])
        for i, stage in enumerate(stages):
            setattr(self, f"model{i}", nn.Sequential(*stage))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for i in range(self.n_layers + 2):
            x = getattr(self, f"model{i}")(x)
            feats.append(x)
        return feats[-1], feats[:-1]
