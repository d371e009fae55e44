"""Load pickled checkpoints without executing code that the file names.

A PyTorch Lightning ``best.ckpt`` holds, beside the weights, objects such as OmegaConf's
``DictConfig``. ``torch.load(weights_only=True)`` refuses those; ``weights_only=False`` would import
and call whatever the pickle names (``os.system`` included). This unpickler sits between the two:

* tensors, storages, numbers, strings and plain containers are rebuilt as usual;
* any other *class* becomes an :class:`Inert` record of its name and pickled state (nothing of its
  module is imported, none of its methods run);
* any *call* of something not on the short allow-list (a ``REDUCE`` of ``os.system``,
  ``builtins.eval``, or of one of those inert classes) raises :class:`UnsafePickleError` before
  anything runs.

The same unpickler reads the ``data.pkl`` of a TorchScript archive, so weights can be taken out of a
``.pt`` without ``torch.jit.load`` running its code.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from typing import Any

import torch

from .errors import LamaError


class UnsafePickleError(LamaError):
    """The pickle tried to call something other than a tensor or container constructor."""


class _InertMeta(type):
    """Metaclass of the stand-ins: *calling* a stand-in (pickle REDUCE) is refused."""

    def __call__(cls, *args, **kwargs):
        raise UnsafePickleError(
            f"refusing to load: the file tries to call {cls.__qualname__!r}. Only tensors and plain "
            "data are loaded from checkpoints; this file may be malicious or is not a LaMa checkpoint")


class Inert(metaclass=_InertMeta):
    """An object of a class that was not imported: its class name and pickled state, nothing more."""

    __qualname__ = "Inert"

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def __setitem__(self, key, value):  # SETITEMS on a dict subclass stand-in
        self.__dict__.setdefault("_items", {})[key] = value

    def append(self, value):  # APPENDS on a list subclass stand-in
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values):
        self.__dict__.setdefault("_list", []).extend(values)

    @property
    def state(self) -> Any:
        return self.__dict__.get("_state")

    def __repr__(self) -> str:
        return f"<inert {type(self).__qualname__}>"


_stand_ins: dict[str, type] = {}


def _stand_in(module: str, name: str) -> type:
    qualname = f"{module}.{name}"
    if qualname not in _stand_ins:
        _stand_ins[qualname] = _InertMeta(name, (Inert,), {"__qualname__": qualname, "__module__": module})
    return _stand_ins[qualname]


def _plain_dict(*_args) -> dict:
    """``collections.defaultdict(factory)`` rebuilt as a plain dict: the factory is never called."""
    return {}


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` restricted to what pickle protocol 2 emits (no codec look-up by name)."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickleError(f"refusing to load: the file asks for the {encoding!r} codec")
    return text.encode("latin1")


def _identity(x, *_args):
    return x


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, *_rest) -> torch.Tensor:
    """Like ``torch._utils._rebuild_tensor_v2``, but never calls backward hooks named by the file."""
    if isinstance(storage, torch.Tensor):  # flat tensor made by our own persistent_load
        base = storage
    else:
        base = torch.empty(0, dtype=storage.dtype).set_(storage)
    return base.as_strided(tuple(size), tuple(stride), storage_offset).detach()


def _rebuild_parameter(data, requires_grad=False, *_rest) -> torch.Tensor:
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): _plain_dict,
    ("builtins", "set"): set, ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset, ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("torch", "Size"): torch.Size,
    ("_codecs", "encode"): _latin1_bytes,  # how pickle protocol 2 stores bytes
    ("torch.jit._pickle", "restore_type_tag"): _identity,
    ("torch.jit._pickle", "build_intlist"): _identity,
    ("torch.jit._pickle", "build_doublelist"): _identity,
    ("torch.jit._pickle", "build_boollist"): _identity,
    ("torch.jit._pickle", "build_tensorlist"): _identity,
    ("torch.jit._pickle", "build_genericlist"): _identity,
}


def _find_class(module: str, name: str) -> Any:
    if module == "__builtin__":
        module = "builtins"
    if (module, name) in _ALLOWED:
        return _ALLOWED[(module, name)]
    if module == "torch" and hasattr(torch, name) and isinstance(getattr(torch, name), torch.dtype):
        return getattr(torch, name)
    # Everything else, ``builtins.dict`` used as data in OmegaConf metadata included, is a stand-in.
    return _stand_in(module, name)


class RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler whose ``find_class`` never imports anything that can run code, and whose
    BUILD only fills inert records and a state dict's ``_metadata`` (never attributes of real objects:
    setting e.g. ``dump_patches`` on an allowed function would make torch write files)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        return _find_class(module, name)

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, Inert):
            inst.__setstate__(state)
        elif type(inst) is collections.OrderedDict and isinstance(state, dict) and set(state) <= {"_metadata"}:
            inst.__dict__.update(state)
        else:
            raise UnsafePickleError(f"refusing to load: the file sets the state of a {type(inst).__name__!r}, "
                                    "which checkpoints never do")

    dispatch[pickle.BUILD[0]] = load_build


class AllowListUnpickler(pickle.Unpickler):
    """Rebuilds only the globals in ``allowed`` ((module, name) -> object); any other one is refused before it
    is imported. For files that hold plain data of a known kind (see :func:`load_numpy_pickle`)."""

    def __init__(self, file: Any, allowed: dict[tuple[str, str], Any]) -> None:
        super().__init__(file)
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        if (module, name) not in self.allowed:
            raise UnsafePickleError(f"refusing to load {module}.{name} from a data file")
        return self.allowed[(module, name)]


def load_numpy_pickle(path) -> Any:
    """A pickle of numpy arrays in plain containers (no code runs from the file)."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    allowed = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    with open(path, "rb") as f:
        return AllowListUnpickler(f, allowed).load()


class _PickleModule:
    """Stand-in for the ``pickle`` module, passed to ``torch.load(pickle_module=...)``."""

    Unpickler = RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError
    load = staticmethod(lambda f, **kw: RestrictedUnpickler(f, **kw).load())


def load_checkpoint(path, map_location: str | torch.device = "cpu") -> Any:
    """Load a ``torch.save``/Lightning checkpoint (zip format) with the restricted unpickler.

    The pre-1.6 (non-zip) format is refused: torch's loader for it acts on ids inside the pickle
    (it can write files), and no LaMa release uses it.
    """
    if not zipfile.is_zipfile(path):
        raise LamaError(f"{path} is not a zip-format PyTorch checkpoint (torch>=1.6); older pickles are "
                        "refused because loading them can run code. If you trust the file, re-save it with a "
                        "current PyTorch.")
    verify_zip(path)
    try:
        return torch.load(path, map_location=map_location, pickle_module=_PickleModule, weights_only=False)
    except UnsafePickleError:
        raise
    except Exception as e:  # any failure inside torch or pickle means a corrupt or hostile file
        raise LamaError(f"could not read checkpoint {path}: {type(e).__name__}: {e}") from e


def verify_zip(path) -> None:
    """Check every member's CRC, so that a damaged download is reported instead of loading garbage."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise LamaError(f"{path} is a corrupt zip file ({e}); download it again") from e
    if bad:
        raise LamaError(f"{path} is corrupt (member {bad} fails its CRC check); download it again")


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _storage_dtype(storage_type: Any) -> torch.dtype:
    if isinstance(storage_type, torch.dtype):
        return storage_type
    name = getattr(storage_type, "__name__", str(storage_type)).rsplit(".", 1)[-1]
    if name not in _STORAGE_DTYPES:
        raise LamaError(f"unsupported storage type {name} in TorchScript archive")
    return _STORAGE_DTYPES[name]


def load_torchscript_tensors(path) -> dict[str, torch.Tensor]:
    """Tensors of a TorchScript archive, keyed by attribute path (``model.generator.model.1...``).

    Reads the archive's ``data.pkl`` with the restricted unpickler; no TorchScript code runs.
    """
    verify_zip(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise LamaError(f"{path} is not a TorchScript archive (not a zip file): {e}") from e
    with zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkl:
            raise LamaError(f"{path} has no data.pkl: not a TorchScript or torch.save archive")
        root = pkl[0].split("/")[0]

        def persistent_load(pid):
            if not isinstance(pid, tuple) or len(pid) < 5:
                raise LamaError(f"unexpected persistent id in {path}")
            kind, storage_type, key, _location, numel = pid[:5]
            if kind != "storage":
                raise LamaError(f"unexpected persistent id {kind!r} in {path}")
            dtype = _storage_dtype(storage_type)
            raw = bytearray(zf.read(f"{root}/data/{key}"))
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            return flat[:numel]

        unpickler = RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])))
        unpickler.persistent_load = persistent_load
        try:
            obj = unpickler.load()
        except LamaError:
            raise
        except Exception as e:  # any failure while unpickling means a corrupt or hostile file
            raise LamaError(f"could not read TorchScript archive {path}: {type(e).__name__}: {e}") from e
    out: dict[str, torch.Tensor] = {}
    _collect_tensors(obj, "", out, set())
    return out


def _collect_tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor], seen: set[int]) -> None:
    if id(obj) in seen:
        return
    if isinstance(obj, torch.Tensor):
        out[prefix.rstrip(".")] = obj
        return
    seen.add(id(obj))
    if isinstance(obj, Inert):
        obj = obj.state
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str):
                _collect_tensors(v, f"{prefix}{k}.", out, seen)


def inert_to_plain(obj: Any) -> Any:
    """Turn an inert OmegaConf ``DictConfig``/``ListConfig`` tree into plain dicts and lists."""
    if isinstance(obj, Inert):
        state = obj.state
        if isinstance(state, dict) and "_content" in state:
            return inert_to_plain(state["_content"])
        if isinstance(state, dict) and "_val" in state:  # AnyNode, ValueNode subclasses
            return inert_to_plain(state["_val"])
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):  # slots state
            return inert_to_plain(state[1].get("_val", state[1]))
        return obj
    if isinstance(obj, dict):
        return {k: inert_to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [inert_to_plain(v) for v in obj]
    return obj
