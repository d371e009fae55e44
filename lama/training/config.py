"""Training configs: one readable YAML file per recipe (``configs/``), overridden with ``key.sub=value``.

The sections are the official ones (``generator``, ``discriminator``, ``losses``, ``optimizers``, ``data``,
``trainer``, ...), so a run folder's ``config.yaml`` also loads with :func:`lama.load_model`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ..config import load_config
from ..errors import LamaError

CONFIG_DIR = Path(__file__).parent / "configs"
SECTIONS = ("generator", "discriminator", "losses", "optimizers", "data", "trainer")


def config_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_training_config(name_or_path: str | Path, overrides: list[str] = ()) -> dict[str, Any]:
    """A bundled config by name (``big-lama``) or a YAML file, with ``key.sub=value`` overrides applied.

    Overriding a key that does not exist is an error (a typo would otherwise be ignored); prefix it with
    ``+`` to add a new key.
    """
    path = Path(name_or_path)
    if not path.is_file():
        if (CONFIG_DIR / f"{name_or_path}.yaml").is_file():
            path = CONFIG_DIR / f"{name_or_path}.yaml"
        else:
            raise LamaError(f"no training config {str(name_or_path)!r}: not a file, and not one of the bundled "
                            f"configs ({', '.join(config_names())})")
    cfg = load_config(path)
    cfg = apply_overrides(cfg, overrides)
    check_config(cfg, str(path))
    return cfg


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise LamaError(f"override {item!r} is not of the form key.sub=value")
        key, text = item.split("=", 1)
        add = key.startswith("+")
        parts = key.lstrip("+").split(".")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise LamaError(f"override {item!r}: the value is not valid YAML ({e})") from e
        node = cfg
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                if not add:
                    raise LamaError(f"override {item!r}: the config has no section {'.'.join(parts[:i + 1])!r}")
                node[part] = {}
            node = node[part]
        if parts[-1] not in node and not add:
            raise LamaError(f"override {item!r}: the config has no key {key!r} (use +{key}=... to add one)")
        node[parts[-1]] = value
    return cfg


def check_config(cfg: dict[str, Any], origin: str) -> None:
    missing = [s for s in SECTIONS if not isinstance(cfg.get(s), dict)]
    if missing:
        raise LamaError(f"{origin} lacks the section(s) {', '.join(missing)}; start from a bundled config "
                        f"({', '.join(config_names())})")
    precision = str(cfg["trainer"].get("precision", 32))
    if precision not in ("32", "bf16", "16"):
        raise LamaError(f"trainer.precision must be 32, bf16 or 16, not {precision!r}")
    if int(cfg["data"].get("batch_size", 0)) < 1:
        raise LamaError("data.batch_size must be at least 1")
    for dotted in ("data.train", "losses.l1", "losses.adversarial", "optimizers.generator", "optimizers.discriminator"):
        if not isinstance(_get(cfg, dotted), dict):
            raise LamaError(f"{origin} lacks the section {dotted}")
    limit = cfg["trainer"].get("limit_train_batches")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise LamaError(f"trainer.limit_train_batches must be a number of steps (1 or more) or null, not {limit!r}")
    # Options of the official configs that the LaMa recipes leave at one value: only that value is implemented,
    # so a config that asks for another one fails here instead of being silently trained otherwise.
    for dotted, value in _FIXED.items():
        got = _get(cfg, dotted)
        if got is not None and got != value and not (value is None and got == {}):
            raise LamaError(f"{dotted}: {got!r} is not implemented (LaMa's recipes use {value!r})")
    if float(cfg["losses"].get("perceptual", {}).get("weight", 0)) != 0:
        raise LamaError("losses.perceptual.weight > 0 (the VGG loss) is not implemented; LaMa's configs set it to 0")


_FIXED = {
    "losses.adversarial.kind": "r1", "losses.adversarial.allow_scale_mask": True,
    "losses.adversarial.mask_scale_mode": "nearest", "losses.adversarial.extra_mask_weight_for_gen": 0,
    "losses.adversarial.use_unmasked_for_gen": True, "losses.adversarial.use_unmasked_for_discr": True,
    "losses.feature_matching.pass_mask": False, "training_model.kind": "default", "training_model.concat_mask": True,
    "training_model.image_to_discriminator": "predicted_image", "optimizers.generator.kind": "adam",
    "optimizers.discriminator.kind": "adam", "discriminator.kind": "pix2pixhd_nlayer",
    "evaluator.integral_kind": "ssim_fid100_f1", "evaluator.inpainted_key": "inpainted",
    "training_model.average_generator": False, "training_model.add_noise_kwargs": None,
    "training_model.fake_fakes_proba": 0,
}


def _get(cfg: dict[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
