"""Read the generator section of an official LaMa ``config.yaml`` without OmegaConf.

The published configs use OmegaConf interpolations (``${generator.init_conv_kwargs.ratio_gout}``)
and resolvers whose inputs will not exist on a user's machine (``${env:USER}``). Only the generator
section matters for inference, so only it is resolved; everything else is left as written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import LamaError

_REF = re.compile(r"\$\{([^}]*)\}")


def _lookup(root: dict, dotted: str, seen: tuple[str, ...], budget: list[int]) -> Any:
    if ":" in dotted:
        raise LamaError(f"config value '${{{dotted}}}' uses a resolver; the generator section cannot use one")
    if dotted in seen:
        raise LamaError(f"circular interpolation in config: {' -> '.join((*seen, dotted))}")
    node: Any = root
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise LamaError(f"config interpolation '${{{dotted}}}' points to a missing key")
        node = node[part]
    return _resolve(node, root, (*seen, dotted), budget)


MAX_NODES = 10_000  # the generator section has a few dozen; YAML aliases can make billions


def _resolve(value: Any, root: dict, seen: tuple[str, ...] = (), budget: list[int] | None = None) -> Any:
    budget = budget if budget is not None else [MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise LamaError(f"config generator section is too large (over {MAX_NODES} values); is it a LaMa config?")
    if isinstance(value, dict):
        return {k: _resolve(v, root, seen, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, root, seen, budget) for v in value]
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole:  # a lone reference keeps the referenced value's type (0.75 stays a float)
            return _lookup(root, whole.group(1).strip(), seen, budget)
        return _REF.sub(lambda m: str(_lookup(root, m.group(1).strip(), seen, budget)), value)
    return value


def generator_section(config: dict[str, Any], origin: str = "config") -> dict[str, Any]:
    """The ``generator`` section of a full training config, with its interpolations resolved."""
    if not isinstance(config, dict) or not isinstance(config.get("generator"), dict):
        raise LamaError(f"{origin} has no 'generator' section; is it a LaMa training config.yaml?")
    return _resolve(config["generator"], config)


def load_config_text(text: str, origin: str = "config.yaml") -> dict[str, Any]:
    """Parse YAML text of a LaMa config into a dict (``LamaError`` if it is not YAML)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise LamaError(f"{origin} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise LamaError(f"{origin} does not hold a mapping; is it a LaMa config.yaml?")
    return data


def load_config(path: str | Path) -> dict[str, Any]:
    """Parse a ``config.yaml`` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LamaError(f"cannot read config {path}: {e}") from e
    return load_config_text(text, str(path))
