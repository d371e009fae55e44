"""Every published LaMa weight format -> a generator, loaded without running code from the file.

Formats (see :func:`load_generator`): the ``big-lama.zip`` release and its unpacked folder
(``config.yaml`` + ``models/best.ckpt``), a Lightning ``.ckpt``, a ``.safetensors`` file, a TorchScript
``big-lama.pt`` (as IOPaint and simple-lama-inpainting publish it), a Hugging Face Hub reference, and
the preset names. Pickles go through :mod:`lama.safe_pickle`; TorchScript code never runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import generator_section, load_config, load_config_text
from .errors import LamaError
from .generator import PRESETS, FFCResNetGenerator, generator_from_config, preset_config
from .safe_pickle import inert_to_plain, load_checkpoint, load_torchscript_tensors, verify_zip

#: Where the ``big-lama`` preset comes from: the official release, linked from the official README.
HUB_PRESETS = {"big-lama": ("smartywu/big-lama", "big-lama.zip")}
DEFAULT_MODEL = "big-lama"
ENV_VAR = "LAMA_MODEL"
SAFETENSORS_FORMAT = "lama-generator"
# Files looked for, in order, in a Hub repository given without a file name.
_HUB_CANDIDATES = ("big-lama.zip", "model.safetensors", "big-lama.safetensors", "best.ckpt", "big-lama.pt")
_ANCHOR = "model.1.ffc.convl2l.weight"  # first conv of every LaMa generator; locates the key prefix


@dataclass
class LoadedGenerator:
    """A generator in eval mode, the config section it was built from, and where it came from."""

    generator: FFCResNetGenerator
    config: dict[str, Any]
    source: str


def default_source() -> str:
    """``$LAMA_MODEL`` if set, else the ``big-lama`` preset."""
    return os.environ.get(ENV_VAR) or DEFAULT_MODEL


# ---------------------------------------------------------------------------------------------
# State dicts and configs


def generator_state_dict(tensors: Mapping[str, Any], origin: str) -> dict[str, torch.Tensor]:
    """The generator's own keys (``model.N...``) out of a checkpoint's tensors, whatever the prefix.

    Lightning checkpoints use ``generator.``, TorchScript exports ``model.generator.``, and our own
    safetensors none; discriminator and loss keys are dropped.
    """
    anchors = [k for k in tensors if isinstance(k, str) and k.endswith(_ANCHOR)]
    if not anchors:
        raise LamaError(f"{origin} holds no LaMa generator weights (no key ending in '{_ANCHOR}')")
    # Prefer a key under "generator" over any other network that might share the layout.
    prefix = min(anchors, key=lambda k: ("generator" not in k, len(k)))[: -len(_ANCHOR)]
    out = {k[len(prefix):]: v for k, v in tensors.items() if isinstance(k, str) and k.startswith(prefix)}
    out = {k: v for k, v in out.items() if k.startswith("model.") and isinstance(v, torch.Tensor)}
    return out


def _block_indices(sd: Mapping[str, torch.Tensor]) -> set[int]:
    return {int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.conv1\.", k))}


def infer_config(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The generator section that matches a state dict's shapes (big-lama family structure)."""
    cfg = preset_config("big-lama")
    w = sd.get(_ANCHOR)
    if w is None or w.ndim != 4:
        raise LamaError("cannot infer the generator structure: its first convolution is missing or not 4-D")
    cfg["ngf"], cfg["input_nc"] = int(w.shape[0]), int(w.shape[1])
    cfg["n_blocks"] = len(_block_indices(sd))
    out_w = [k for k in sd if k.endswith(".weight") and sd[k].ndim == 4 and sd[k].shape[-1] == 7]
    if out_w:
        cfg["output_nc"] = int(sd[max(out_w, key=lambda k: int(k.split(".")[1]))].shape[0])
    return cfg


def build_generator(config: Mapping[str, Any], sd: Mapping[str, torch.Tensor], origin: str) -> FFCResNetGenerator:
    """Build from a config section and load the weights with ``strict=True``; clear errors on mismatch."""
    cfg = dict(config)
    weights_blocks = len(_block_indices(sd))
    nb = cfg.get("n_blocks")
    if type(nb) is int and nb != weights_blocks:  # other types: generator_from_config says what is wrong
        raise LamaError(f"{origin}: the config says n_blocks={cfg['n_blocks']} but the weights have "
                        f"{weights_blocks} resnet blocks; use the config.yaml that came with these weights")
    gen = generator_from_config(cfg)
    try:
        gen.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()
        detail = "; ".join(line.strip() for line in first[1:4]) or first[0]
        raise LamaError(f"{origin}: the weights do not fit the config (ngf={cfg.get('ngf')}, "
                        f"n_blocks={cfg.get('n_blocks')}): {detail}") from None
    return gen.eval()


def _config_from_hparams(ckpt: Mapping[str, Any]) -> dict[str, Any] | None:
    hp = ckpt.get("hyper_parameters")
    if hp is None:
        return None
    try:
        plain = inert_to_plain(hp)
    except RecursionError:
        return None  # not a config we can read; fall back to config.yaml, a preset or the weights' shapes
    if isinstance(plain, dict) and isinstance(plain.get("generator"), dict):
        return generator_section(plain, "the checkpoint's hyper_parameters")
    return None


# ---------------------------------------------------------------------------------------------
# Formats


def _load_ckpt(path: Path, config: dict[str, Any] | None, origin: str) -> LoadedGenerator:
    ckpt = load_checkpoint(path)
    if isinstance(ckpt, Mapping) and isinstance(ckpt.get("state_dict"), Mapping):
        tensors = ckpt["state_dict"]
        config = config or _config_from_hparams(ckpt)
    elif isinstance(ckpt, Mapping):
        tensors = ckpt
    else:
        raise LamaError(f"{origin} is not a LaMa checkpoint (it holds a {type(ckpt).__name__})")
    sd = generator_state_dict(tensors, origin)
    config = config or infer_config(sd)
    return LoadedGenerator(build_generator(config, sd, origin), config, origin)


def _load_folder(path: Path, config: dict[str, Any] | None) -> LoadedGenerator:
    ckpts = [path / "models" / "best.ckpt"] + sorted((path / "models").glob("*.ckpt")) + sorted(path.glob("*.ckpt"))
    ckpt = next((c for c in ckpts if c.is_file()), None)
    if ckpt is None:
        raise LamaError(f"{path} is a folder without models/best.ckpt; expected the big-lama.zip layout "
                        "(config.yaml + models/best.ckpt)")
    if config is None and (path / "config.yaml").is_file():
        config = generator_section(load_config(path / "config.yaml"), str(path / "config.yaml"))
    return _load_ckpt(ckpt, config, str(path))


def _load_release_zip(path: Path, zf: zipfile.ZipFile, config: dict[str, Any] | None) -> LoadedGenerator:
    names = zf.namelist()
    ckpt_name = next((n for n in names if n.endswith("models/best.ckpt")), None) or \
        next((n for n in names if n.endswith(".ckpt")), None)
    if ckpt_name is None:
        raise LamaError(f"{path} holds no .ckpt file; expected big-lama.zip's big-lama/models/best.ckpt")
    root = ckpt_name[: -len("models/best.ckpt")] if ckpt_name.endswith("models/best.ckpt") else ""
    cfg_name = root + "config.yaml"
    if config is None and cfg_name in names:
        config = generator_section(load_config_text(zf.read(cfg_name).decode("utf-8"), f"{path}:{cfg_name}"),
                                   f"{path}:{cfg_name}")
    with tempfile.TemporaryDirectory(prefix="lama-") as tmp:
        target = Path(tmp) / "best.ckpt"
        with zf.open(ckpt_name) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
        return _load_ckpt(target, config, f"{path}:{ckpt_name}")


def _load_safetensors(path: Path, config: dict[str, Any] | None) -> LoadedGenerator:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as e:
        raise LamaError(f"{path} is not a readable safetensors file: {e}") from e
    if config is None and meta.get("lama_config"):
        try:
            config = json.loads(meta["lama_config"])
        except json.JSONDecodeError as e:
            raise LamaError(f"{path}: its 'lama_config' metadata is not JSON: {e}") from e
        if not isinstance(config, dict):
            raise LamaError(f"{path}: its 'lama_config' metadata is not a mapping")
    sd = generator_state_dict(tensors, str(path))
    config = config or infer_config(sd)
    return LoadedGenerator(build_generator(config, sd, str(path)), config, str(path))


def _load_torchscript(path: Path, config: dict[str, Any] | None) -> LoadedGenerator:
    sd = generator_state_dict(load_torchscript_tensors(path), str(path))
    config = config or infer_config(sd)
    return LoadedGenerator(build_generator(config, sd, str(path)), config, str(path))


def _is_torchscript(names: list[str]) -> bool:
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _load_file(path: Path, config: dict[str, Any] | None) -> LoadedGenerator:
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix == ".safetensors":
        return _load_safetensors(path, config)
    if path.suffix == ".yaml":
        raise LamaError(f"{path} is a config; pass the folder that holds it and models/best.ckpt")
    if head.startswith(b"PK"):
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile as e:
            raise LamaError(f"{path} is a corrupt zip file ({e}); download it again") from e
        with zf:
            names = zf.namelist()
            if path.suffix == ".zip":  # .ckpt and .pt archives are checked by their own loaders
                verify_zip(path)
            if any(n.endswith("config.yaml") for n in names) or any(n.endswith(".ckpt") for n in names):
                return _load_release_zip(path, zf, config)
            if _is_torchscript(names):
                pass  # read below, after the zip is closed
            elif any(n.endswith("/data.pkl") for n in names):
                return _load_ckpt(path, config, str(path))
            else:
                raise LamaError(f"{path} is a zip without config.yaml, a .ckpt or weights")
        return _load_torchscript(path, config)
    if path.suffix in (".ckpt", ".pth", ".pt", ".bin"):  # legacy (pre-zip) torch.save files
        return _load_ckpt(path, config, str(path))
    raise LamaError(f"{path}: unrecognised weight file; expected big-lama.zip, a folder with config.yaml + "
                    "models/best.ckpt, .ckpt, .safetensors or a TorchScript .pt")


# ---------------------------------------------------------------------------------------------
# The Hub


_HUB_REF = re.compile(r"^(?:hf://|hf:)?(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:/(?P<file>[^@]+))?(?:@(?P<rev>[\w./-]+))?$")


def parse_hub_reference(source: str) -> tuple[str, str | None, str | None] | None:
    """``[hf://]owner/repo[/path/in/repo][@revision]`` -> (repo, file, revision); None if not one."""
    m = _HUB_REF.match(source)
    if not m:
        return None
    return m.group("repo"), m.group("file"), m.group("rev")


def hub_download(repo: str, filename: str | None, revision: str | None = None) -> Path:
    """Find one file of a Hub model repository in the standard Hugging Face cache, else download it.

    Without ``filename`` the first of the usual weight file names that the repository has is used.
    The cache is looked at first and the Hub only when it answers, so an offline start fails in
    seconds instead of retrying DNS look-ups for half a minute.
    """
    from huggingface_hub import hf_hub_download, list_repo_files
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    candidates = [filename] if filename is not None else list(_HUB_CANDIDATES)
    for name in candidates:  # the cache first: no network at all when the weights are there
        try:
            return Path(hf_hub_download(repo, name, revision=revision, local_files_only=True))
        except (LocalEntryNotFoundError, EntryNotFoundError, FileNotFoundError):
            pass
    if not hub_reachable():
        raise LamaError(_missing_weights_message(f"{repo}/{filename or '|'.join(candidates)}",
                                                 ConnectionError("the Hugging Face Hub cannot be reached")))
    if filename is None:
        try:
            files = set(list_repo_files(repo, revision=revision))
        except Exception as e:  # unknown repo, private repo, network trouble
            raise LamaError(_missing_weights_message(repo, e)) from e
        candidates = [c for c in _HUB_CANDIDATES if c in files]
        if not candidates:
            raise LamaError(f"Hub repo {repo} has none of {', '.join(_HUB_CANDIDATES)}; name the file: {repo}/FILE")
    try:
        return Path(hf_hub_download(repo, candidates[0], revision=revision))
    except (LocalEntryNotFoundError, EntryNotFoundError, HfHubHTTPError, OSError, ValueError) as e:
        raise LamaError(_missing_weights_message(f"{repo}/{candidates[0]}", e)) from e


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when offline mode is set or the Hub's host does not answer within ``timeout`` seconds."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _missing_weights_message(what: str, err: Exception | None) -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    why = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}" if err else "not found"
    return (f"LaMa weights not found: could not download {what} from the Hugging Face Hub and it is not in "
            f"the cache ({HF_HUB_CACHE}): {why}\n"
            f"Supply weights with --model PATH or {ENV_VAR}=PATH (a big-lama.zip, its unpacked folder, a .ckpt, "
            f".safetensors or TorchScript .pt), or connect to the internet once to fill the cache.")


# ---------------------------------------------------------------------------------------------
# The one entry point


def load_generator(source: str | os.PathLike | None = None, preset: str | None = None) -> LoadedGenerator:
    """Resolve ``source`` (path, Hub reference or preset name; default ``$LAMA_MODEL`` or big-lama).

    ``preset`` names the structure for weight files that carry no config (a bare ``.ckpt``).
    """
    try:
        return _load_generator(source, preset)
    except OSError as e:  # unreadable file, permissions, disk errors
        raise LamaError(f"cannot read {source}: {e}") from e


def _load_generator(source: str | os.PathLike | None, preset: str | None) -> LoadedGenerator:
    source = default_source() if source is None else source
    config = preset_config(preset) if preset else None
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        return _load_folder(path, config)
    if path.is_file():
        return _load_file(path, config)
    if text in HUB_PRESETS:
        repo, filename = HUB_PRESETS[text]
        return _load_file(hub_download(repo, filename), config)  # the release carries its config.yaml
    if text in PRESETS:
        raise LamaError(f"preset {text!r} has no published download; pass weights with --model PATH or "
                        f"{ENV_VAR}=PATH (build_preset({text!r}) gives random weights for experiments)")
    hub = parse_hub_reference(text)
    if hub and not text.startswith((".", "/", "~")):
        repo, filename, revision = hub
        return _load_file(hub_download(repo, filename, revision), config)
    raise LamaError(f"cannot load {text!r}: it is not an existing file or folder, a preset "
                    f"({', '.join(sorted(set(PRESETS) | set(HUB_PRESETS)))}) or a Hub reference (owner/repo[/file])")


def save_safetensors(loaded: LoadedGenerator, out: str | os.PathLike) -> Path:
    """Write generator-only safetensors with the config in its metadata (atomically)."""
    from safetensors.torch import save

    from .io import atomic_write

    out = Path(out)
    sd = {k: v.detach().contiguous().cpu() for k, v in loaded.generator.state_dict().items()}
    meta = {"format": SAFETENSORS_FORMAT, "lama_config": json.dumps(loaded.config), "source": loaded.source}
    try:
        with atomic_write(out) as f:
            f.write(save(sd, metadata=meta))
    except Exception as e:  # OSError, SafetensorError: unwritable place, full disk
        raise LamaError(f"cannot write {out}: {e}") from e
    return out
