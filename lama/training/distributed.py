"""What data-parallel training needs beyond :mod:`lama.dist`: gradient averaging and synchronised BatchNorm.

Gradients are averaged by hand after each backward (one flat all-reduce per optimiser) instead of through
``DistributedDataParallel``: LaMa's step runs the discriminator twice before one backward, differentiates its R1
penalty twice and freezes one network while the other learns, all of which DDP's reducer does not allow.

BatchNorm statistics are synchronised with :class:`SyncBatchNorm2d`, which works with every backend (gloo on the
CPU too, where ``torch.nn.SyncBatchNorm`` refuses to run): the batch mean and variance are all-reduced through
``torch.distributed.nn`` so that gradients flow through them as in one big batch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..dist import is_distributed


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Replace every gradient by its mean over the processes (no-op in one process)."""
    if not is_distributed():
        return
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _all_reduce_sum(t: Tensor) -> Tensor:
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t)  # differentiable: its backward all-reduces the gradient


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the batch over all processes.

    The mean and the (biased) variance are computed in two all-reduced passes (sum, then sum of squared
    deviations), in float32, and the running statistics are updated with the unbiased variance, exactly as
    ``nn.BatchNorm2d`` does on the concatenated batch. In eval mode, or in one process, it is ``nn.BatchNorm2d``.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        xf = x.float()
        count = _all_reduce_sum(torch.tensor([float(x.numel() // x.shape[1])], device=x.device))
        mean = _all_reduce_sum(xf.sum(dim=(0, 2, 3))) / count
        centred = xf - mean[None, :, None, None]
        var = _all_reduce_sum(centred.pow(2).sum(dim=(0, 2, 3))) / count
        if self.track_running_stats:
            with torch.no_grad():
                n = float(count)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
                self.num_batches_tracked += 1
                self.running_mean.mul_(1 - m).add_(mean.detach() * m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)) * m)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every ``nn.BatchNorm2d`` of ``module`` for :class:`SyncBatchNorm2d` (same parameters and buffers)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = SyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats, device=child.weight.device if child.affine else None)
            new.load_state_dict(child.state_dict())
            for p_new, p_old in zip(new.parameters(), child.parameters(), strict=True):
                p_new.requires_grad_(p_old.requires_grad)
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_sync_batchnorm(child)
    return module
