"""The one protocol every mask generator follows, and the seeding rule they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


def _check_rng(rng: Any) -> np.random.Generator:
    """Refuse the global numpy state (or a RandomState): only a Generator makes the seed portable."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng)!r}")
    return rng


class MaskGenerator(ABC):
    """A random mask generator: ``gen(height, width, rng, image=None)`` gives one mask, ``get_masks`` the
    per-image variants.

    Every kind takes the same arguments so that callers never branch on the kind: random strokes and boxes
    only need the size and ignore ``image``; segmentation masks are drawn from the photo and require it.
    """

    variants_n: int = 1

    @abstractmethod
    def __call__(self, height: int, width: int, rng: np.random.Generator,
                 image: np.ndarray | None = None) -> np.ndarray | None:
        """One float32 HxW mask in {0, 1} (1 = hole), or None when this photo offers none."""

    def get_masks(self, height: int, width: int, rng: np.random.Generator,
                  image: np.ndarray | None = None) -> list[np.ndarray]:
        """The ``variants_n`` independent masks the official ``MakeManyMasksWrapper`` draws for one image."""
        return [self(height, width, rng, image) for _ in range(self.variants_n)]
