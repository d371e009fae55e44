"""LaMa's training losses, as the official trainer computes them (``lama-fourier.yaml`` / ``big-lama.yaml``).

Each function matches the official code number for number (``tests/test_training_losses.py`` checks them
against values the official trainer produced). Where the official code differs from a first guess, the
docstring says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_l1_loss(pred: Tensor, target: Tensor, mask: Tensor, weight_known: float = 10.0,
                   weight_missing: float = 0.0) -> Tensor:
    """Per-pixel L1 weighted ``weight_missing`` in the hole (mask 1) and ``weight_known`` outside, averaged over
    all B*C*H*W elements (not over the known pixels only)."""
    weights = mask * weight_missing + (1 - mask) * weight_known
    return (weights * (pred - target).abs()).mean()


def feature_matching_loss(fake_feats: list[Tensor], real_feats: list[Tensor]) -> Tensor:
    """Mean over the discriminator's intermediate layers of the MSE between fake and real activations
    (the logits are not among them; no mask, as in the official configs)."""
    return torch.stack([F.mse_loss(f, r) for f, r in zip(fake_feats, real_feats, strict=True)]).mean()


def r1_penalty(real_logits: Tensor, real: Tensor, grad_scale: float | None = None) -> Tensor:
    """R1: squared L2 norm of d(sum of the batch's real logits)/d(real image), per sample, averaged over the batch.

    ``real`` must require grad and have produced ``real_logits``. The graph is kept so that the penalty is
    differentiated in the discriminator's backward. ``grad_scale``: the fp16 GradScaler's scale, applied to the
    output before ``autograd.grad`` and removed from the gradient after (so small gradients do not underflow).
    """
    out = real_logits.sum()
    if grad_scale is not None:
        out = out * grad_scale
    (grad,) = torch.autograd.grad(out, real, create_graph=True)
    if grad_scale is not None:
        grad = grad / grad_scale
    return (grad.float().reshape(grad.shape[0], -1).norm(2, dim=1) ** 2).mean()


def mask_to_logits(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """The mask on the discriminator's logit grid, with the legacy ``nearest`` rule (source index floor(i*in/out))
    the official ``allow_scale_mask`` uses."""
    return F.interpolate(mask, size=size, mode="nearest")


@dataclass
class NonSaturatingWithR1:
    """The non-saturating GAN loss with an R1 penalty on real images (``kind: r1`` in the official configs).

    ``weight`` scales the generator's term only; the discriminator's loss is not multiplied by it.
    With ``mask_as_fake_target`` the discriminator is taught that only the hole of a generated image is fake:
    outside the mask (resized to its logit grid) the fake patches are labelled real.
    """

    weight: float = 10.0
    gp_coef: float = 0.001
    mask_as_fake_target: bool = True

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        """``weight * mean softplus(-D(fake))``; the mask is not used (as in the official configs)."""
        return F.softplus(-fake_logits).mean() * self.weight

    def discriminator_loss(self, real: Tensor, real_logits: Tensor, fake_logits: Tensor, mask: Tensor,
                           grad_scale: float | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The discriminator's loss and its metrics. R1 is taken while grad is enabled (0 under ``no_grad``),
        then added as a scalar to every element of the per-patch loss before the mean, as the official code does."""
        real_term = F.softplus(-real_logits)
        fake_term = F.softplus(fake_logits)
        if self.mask_as_fake_target:
            m = mask_to_logits(mask.to(fake_logits.dtype), fake_logits.shape[-2:])
            fake_term = m * fake_term + (1 - m) * F.softplus(-fake_logits)
        if torch.is_grad_enabled() and real.requires_grad:
            gp = r1_penalty(real_logits, real, grad_scale) * self.gp_coef
        else:
            gp = real_logits.new_zeros(())
        loss = (real_term + gp + fake_term).mean()
        metrics = {"discr_real_out": real_logits.detach().mean(), "discr_fake_out": fake_logits.detach().mean(),
                   "discr_real_gp": gp.detach()}
        return loss, metrics
