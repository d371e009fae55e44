"""Training checkpoints in the official layout, and the weights a fine-tuning run starts from.

A run folder holds ``config.yaml`` and ``models/last.ckpt`` / ``models/best.ckpt``, each a ``torch.save``'d dict
with ``state_dict`` (``generator.*``, ``discriminator.*`` and, with ResNetPL, ``loss_resnet_pl.impl.*`` keys, as
Lightning wrote them), the optimiser states, the step, the epoch and every RNG state: so
:func:`lama.load_model` reads a run folder as it reads the released ``big-lama`` folder, and ``--resume``
continues exactly where the run stopped. Files are written atomically (a crash leaves the previous file).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import LamaError
from ..io import atomic_write

FORMAT = "lama-training-checkpoint/1"
GENERATOR, DISCRIMINATOR, RESNET_PL = "generator.", "discriminator.", "loss_resnet_pl.impl."
# Metric networks of the official trainer's evaluators: rebuilt here from lama.metrics, never loaded.
_SKIPPED_PREFIXES = ("val_evaluator.", "test_evaluator.", "extra_evaluators.")


def rng_states() -> dict[str, Any]:
    """Every RNG the loop may touch, as plain tensors and lists (safe to load with ``weights_only``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, state, pygauss = random.getstate()
    out = {"torch": torch.get_rng_state(),
           "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                     "has_gauss": int(has_gauss), "gauss": float(gauss)},
           "python": {"version": version, "state": list(state), "gauss": pygauss}}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in states and torch.cuda.is_available():  # a machine with fewer GPUs restores what it has
        for i, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, i)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    with atomic_write(path) as f:
        torch.save({"format": FORMAT, **payload}, f)


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint this trainer wrote (``weights_only`` loading: plain tensors and containers only)."""
    if not path.is_file():
        raise LamaError(f"no checkpoint to resume from: {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise LamaError(f"cannot read {path} ({type(e).__name__}: {e}); it is not a checkpoint of this trainer") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise LamaError(f"{path} was not written by this trainer; to start from other weights use --init-from")
    return ckpt


def split_state(tensors: Mapping[str, Any], origin: str) -> dict[str, dict[str, torch.Tensor]]:
    """A Lightning-style state_dict split by network; keys of no known network are an error naming them."""
    parts: dict[str, dict[str, torch.Tensor]] = {"generator": {}, "discriminator": {}, "resnet_pl": {}}
    unknown = []
    for key, value in tensors.items():
        for name, prefix in (("generator", GENERATOR), ("discriminator", DISCRIMINATOR), ("resnet_pl", RESNET_PL)):
            if key.startswith(prefix):
                parts[name][key[len(prefix):]] = value
                break
        else:
            if not key.startswith(_SKIPPED_PREFIXES):
                unknown.append(key)
    if unknown:
        raise LamaError(f"{origin} holds keys of no network this trainer knows: {_listing(unknown)} (expected "
                        f"{GENERATOR}*, {DISCRIMINATOR}* and {RESNET_PL}*)")
    return parts


def _listing(names: list[str], limit: int = 5) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > limit else f" ({len(names)})"
    return ", ".join(names[:limit]) + more


def key_problems(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> list[str]:
    """What keeps ``state`` from filling ``own`` exactly: missing keys (``num_batches_tracked`` may be absent, as
    in older files), unexpected keys, shape mismatches; each named."""
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    return [f"{label}: {_listing(keys)}" for label, keys in
            (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)) if keys]


def load_exact(module: nn.Module, state: Mapping[str, torch.Tensor], what: str, origin: str) -> None:
    """``load_state_dict`` that names every key that does not fit (see :func:`key_problems`)."""
    problems = key_problems(module.state_dict(), state)
    if problems:
        raise LamaError(f"the {what} weights in {origin} do not fit the {what} of the config: " + "; ".join(problems)
                        + ". Use the config the weights were trained with (e.g. --config big-lama).")
    module.load_state_dict(dict(state), strict=False)


def read_init_weights(source: str) -> tuple[dict[str, dict[str, torch.Tensor]], str]:
    """The networks' weights a fine-tuning run starts from, split by network.

    A Lightning-style checkpoint (a ``.ckpt`` file, or a folder with ``models/best.ckpt`` such as the unpacked
    ``big-lama-with-discr``) gives every network it holds; any other published format (``big-lama.zip``,
    safetensors, TorchScript, a Hub reference, a preset) gives the generator only, and the discriminator starts
    fresh.
    """
    from ..checkpoint import load_generator
    from ..safe_pickle import inert_to_plain, load_checkpoint

    path = Path(source)
    ckpt_file = path
    if path.is_dir():  # a released folder has best.ckpt; a run of this trainer may only have last.ckpt so far
        ckpt_file = next((p for p in (path / "models" / "best.ckpt", path / "models" / "last.ckpt") if p.is_file()),
                         path / "models" / "best.ckpt")
    if ckpt_file.is_file() and ckpt_file.suffix == ".ckpt":
        ckpt = load_checkpoint(ckpt_file)
        tensors = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
        if isinstance(tensors, Mapping) and any(str(k).startswith(GENERATOR) for k in tensors):
            tensors = {str(k): v for k, v in inert_to_plain(dict(tensors)).items()}
            return split_state(tensors, str(ckpt_file)), str(ckpt_file)
    loaded = load_generator(source)
    return {"generator": loaded.generator.state_dict(), "discriminator": {}, "resnet_pl": {}}, loaded.source
