"""Feed the lama.metrics objects a saved set of images in batches of 2, each process the batches
``lama.dist.shard`` gives it, and write the synced ``compute()`` values (rank 0). Run as a plain script
(one process) or under ``torchrun`` by tests/test_metric_objects.py."""

import json
import sys

import torch

from lama import dist
from lama.metrics import FID, LPIPS, PSNR, SSIM

if __name__ == "__main__":
    images, out = sys.argv[1], sys.argv[2]
    rank, world = dist.init_from_env()
    data = torch.load(images, weights_only=True)
    metrics = {"fid": FID(), "lpips": LPIPS(), "ssim": SSIM(), "psnr": PSNR()}
    batches = [slice(i, i + 2) for i in range(0, len(data["pred"]), 2)]
    for b in dist.shard(batches, rank, world):
        for m in metrics.values():
            m.update(data["pred"][b], data["target"][b])
    values = {name: m.compute().item() for name, m in metrics.items()}  # synced across processes
    values["n_lpips"] = len(metrics["lpips"].per_image())
    if rank == 0:
        with open(out, "w") as f:
            json.dump(values, f)
    dist.shutdown()
