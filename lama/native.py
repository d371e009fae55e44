"""The compiled kernels of the fast path, loaded with ctypes: the fused Winograd transforms (``winograd_native.c``,
also the ReLU pass), the Fourier unit's FFTs (``fft_native.c``) and the output convolution (``conv_native.c``).

The C files are compiled with the system's C compiler (``cc``, or ``$CC``) for the CPU it runs on
(``-O3 -march=native``, about a second) into one library in the cache (``~/.cache/lama/native``, see
:mod:`lama.machine`), under a name that hashes the sources, the compiler, the flags and the CPU's model and
features, so that a cache shared between machines never runs code built for another CPU. Where that fails (no
compiler, another OS) :func:`library` returns None once with a logged reason, and :mod:`lama.winograd` keeps its
PyTorch transforms and :mod:`lama.fast` its DFT products or pocketfft, which compute the same values.
``LAMA_NATIVE=0`` turns the compiled path off.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import threading
from pathlib import Path

import torch

from .machine import cache_dir, cpu_features, cpu_model

SOURCES = tuple(Path(__file__).with_name(name) for name in ("winograd_native.c", "fft_native.c", "conv_native.c"))
HEADERS = (Path(__file__).with_name("native_vec.h"),)  # included by the sources: part of the build's hash
FLAGS = ("-O3", "-march=native", "-std=c11", "-shared", "-fPIC")
LIBS = ("-lm",)
# On x86 gcc and clang vectorise with 256-bit registers even where the CPU has AVX-512; 512-bit ones made the
# bfloat16 transforms 20-27% faster on an AMX Xeon (the whole 512x512 pass 4%). Other architectures lack the option.
X86_FLAGS = ("-mprefer-vector-width=512",)
OPENMP = "-fopenmp"  # tried first; a compiler without OpenMP builds a single-threaded library
ENV = "LAMA_NATIVE"
DTYPES = {torch.float32: 0, torch.bfloat16: 1}
log = logging.getLogger(__name__)

_lock = threading.Lock()
_state: dict[str, object] = {}  # "lib": the loaded library or None, once tried


def compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


def library() -> ctypes.CDLL | None:
    """The compiled kernels, built on first use; None where they cannot be built or are turned off."""
    if not enabled():
        return None
    if "lib" in _state:  # the hot path: called for every band of every layer
        return _state["lib"]  # type: ignore[return-value]
    with _lock:
        if "lib" not in _state:
            try:
                _state["lib"] = _load(_build())
            except (OSError, subprocess.SubprocessError) as e:
                log.warning("compiled kernels: using PyTorch's, the C ones did not build: %s", e)
                _state["lib"] = None
        return _state["lib"]  # type: ignore[return-value]


def build_id() -> str:
    """Which transforms run: the compiled library's file name, which hashes its source, compiler, flags and CPU (a
    new version measures the kernels again, :mod:`lama.kernel_choice`), or "torch"."""
    lib = library()
    return "torch" if lib is None else Path(lib._name).stem


def reset() -> None:
    """Forget the loaded library (tests: a changed compiler or cache directory is then used)."""
    with _lock:
        _state.clear()


def flags() -> tuple[str, ...]:
    """The compiler flags for this machine (without OpenMP's)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    return FLAGS + X86_FLAGS if x86 else FLAGS


def _build() -> Path:
    cc = compiler()
    if cc is None:
        raise OSError("no C compiler on PATH (cc, gcc or clang; or set CC)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    parts = [*(src.read_text() for src in SOURCES + HEADERS), cc, version, " ".join(flags()), OPENMP, cpu_model(),
             cpu_features(), platform.machine()]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    out = cache_dir() / "native" / f"native-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        for attempt in ((*flags(), OPENMP), flags()):
            done = subprocess.run([cc, *attempt, *map(str, SOURCES), "-o", str(tmp), *LIBS], capture_output=True,
                                  text=True, timeout=300)
            if done.returncode == 0:
                break
        else:
            raise OSError(f"{cc} failed: {done.stderr.strip()[-2000:]}")
        os.replace(tmp, out)  # whole or absent: another process may be loading it
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    p, i, n = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    lib.lama_winograd_input.argtypes = [p, p, p, p, n, i, n, n, n, n, n, n, n, i]
    lib.lama_winograd_output.argtypes = [p, p, p, p, i, i, i, n, n, n, n, n, n, n, n, n, i]
    lib.lama_relu_add.argtypes = [p, p, p, n, n, n, n, i, i]
    lib.lama_winograd_input.restype = lib.lama_winograd_output.restype = lib.lama_relu_add.restype = None
    f = ctypes.c_float
    lib.lama_fft_rows.argtypes = lib.lama_ifft_rows_add.argtypes = [p, p, n, n, n, f, i]
    lib.lama_fft_cols.argtypes = [p, p, p, n, n, n, n, n, n, n, i, f, i]
    lib.lama_fft_rows.restype = lib.lama_ifft_rows_add.restype = lib.lama_fft_cols.restype = ctypes.c_int
    lib.lama_out_conv.argtypes = [p, p, p, p, p, n, n, n, n, n, i]
    lib.lama_out_conv.restype = ctypes.c_int
    return lib


def supports(*tensors: torch.Tensor) -> bool:
    """Whether the compiled transforms take these tensors (CPU, float32 or bfloat16, one dtype)."""
    first = tensors[0]
    return all(t.device.type == "cpu" and t.dtype == first.dtype for t in tensors) and first.dtype in DTYPES


def input_tiles(lib: ctypes.CDLL, x: torch.Tensor, v: torch.Tensor, top: int, tr: int,
                halo: torch.Tensor | None, v_lo: torch.Tensor | None = None) -> None:
    """``v`` [36, B tr tw, C] <- transformed tiles of the band of ``tr`` tile rows of ``x`` [B, H, W, C] whose
    first input row is ``top`` (reflect padding by one pixel, zeros past it), ``halo`` [B, W, C] standing for
    row ``top``; ``v_lo`` [36, B tr tw, C_lo], if given, gets the first ``C_lo`` channels once more."""
    b, h, w, c = x.shape
    tw = -(-w // 4)
    parts = [t for t in (x, v, halo, v_lo) if t is not None]
    if not (supports(*parts) and all(t.is_contiguous() for t in parts) and h >= 2 and w >= 2
            and tuple(v.shape) == (36, b * tr * tw, c) and -1 <= top < h
            and (halo is None or tuple(halo.shape) == (b, w, c))
            and (v_lo is None or (v_lo.shape[:2] == v.shape[:2] and v_lo.shape[2] <= c))):
        raise ValueError(f"Winograd input transform: map {tuple(x.shape)} and tiles {tuple(v.shape)} do not fit")
    lib.lama_winograd_input(x.data_ptr(), None if halo is None else halo.data_ptr(), v.data_ptr(),
                            None if v_lo is None else v_lo.data_ptr(), 0 if v_lo is None else v_lo.shape[2],
                            DTYPES[x.dtype], b, h, w, c, top, tr, tw, torch.get_num_threads())


def output_tiles(lib: ctypes.CDLL, m: torch.Tensor, dst: torch.Tensor, bias: torch.Tensor | None, relu: bool,
                 residual: torch.Tensor | None = None, accumulate: bool = False) -> None:
    """``dst`` [B, tr, 4, tw, 4, C] (any strides, channels contiguous) <- output pixels of products ``m``
    [36, B tr tw, C] (contiguous), plus ``bias`` [C], plus ``dst``'s own values if ``accumulate``, then ReLU if
    asked, then plus ``residual`` (a view with ``dst``'s shape and strides)."""
    b, tr, _, tw, _, c = dst.shape
    parts = [m, dst] + [t for t in (bias, residual) if t is not None]
    if not (supports(*parts) and m.is_contiguous() and dst.stride(-1) == 1 and dst.shape[2] == dst.shape[4] == 4
            and tuple(m.shape) == (36, b * tr * tw, c) and (bias is None or (bias.is_contiguous()
                                                                          and tuple(bias.shape) == (c,)))
            and (residual is None or (residual.shape == dst.shape and residual.stride() == dst.stride()))):
        raise ValueError(f"Winograd output transform: products {tuple(m.shape)} and pixels {tuple(dst.shape)} "
                         "do not fit")
    sb, sr, sp, sq, ss, _ = dst.stride()
    lib.lama_winograd_output(m.data_ptr(), dst.data_ptr(), None if bias is None else bias.data_ptr(),
                             None if residual is None else residual.data_ptr(), DTYPES[m.dtype], int(relu),
                             int(accumulate), b, tr, tw, c, sb, sr, sp, sq, ss, torch.get_num_threads())


def relu_add(lib: ctypes.CDLL, y: torch.Tensor, x: torch.Tensor | None, bias: torch.Tensor | None = None) -> None:
    """``y = relu(y + bias) + x`` in place (``bias``, ``x`` optional), on 2-D views whose rows are contiguous;
    ``bias`` has a value per column."""
    parts = [y] + [t for t in (x, bias) if t is not None]
    if not (supports(*parts) and y.dim() == 2 and y.stride(1) == 1
            and (x is None or (x.shape == y.shape and x.stride(1) == 1))
            and (bias is None or (bias.is_contiguous() and tuple(bias.shape) == (y.shape[1],)))):
        raise ValueError(f"relu_add: {tuple(y.shape)}, {None if x is None else tuple(x.shape)} and "
                         f"{None if bias is None else tuple(bias.shape)} do not fit")
    lib.lama_relu_add(y.data_ptr(), None if x is None else x.data_ptr(), None if bias is None else bias.data_ptr(),
                      y.shape[0], y.shape[1], y.stride(0), 0 if x is None else x.stride(0), DTYPES[y.dtype],
                      torch.get_num_threads())


FFT_RADICES = (2, 3, 5, 7)  # fft_native.c's butterflies


def fft_size_ok(n: int) -> bool:
    """Whether the compiled FFTs take a transform of ``n`` points: no prime factor but 2, 3, 5 and 7."""
    for p in FFT_RADICES:
        while n > 1 and n % p == 0:
            n //= p
    return n == 1


def _check_float32(ok: bool, what: str, *tensors: torch.Tensor) -> None:
    if not (ok and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)):
        raise ValueError(f"{what}: {', '.join(str(tuple(t.shape)) for t in tensors)} do not fit")


def _done(rc: int, what: str) -> None:
    if rc:
        raise MemoryError(f"{what}: no memory for its scratch")


def _along_w(fn, what: str, src: torch.Tensor, dst: torch.Tensor, x: torch.Tensor, rows: torch.Tensor,
             scale: float) -> None:
    """A pass along W between a map ``x`` [H, W, C] and its rows' half spectra ``rows`` [H, 2, W // 2 + 1, C]."""
    h, w, c = x.shape
    _check_float32(x.is_contiguous() and rows.is_contiguous() and tuple(rows.shape) == (h, 2, w // 2 + 1, c)
                   and fft_size_ok(w), what, src, dst)
    _done(fn(src.data_ptr(), dst.data_ptr(), h, w, c, scale, torch.get_num_threads()), what)


def fft_rows(lib: ctypes.CDLL, x: torch.Tensor, rows: torch.Tensor, scale: float) -> None:
    """``rows`` [H, 2, W // 2 + 1, C] <- ``scale`` times the FFT along W of each row of ``x`` [H, W, C] (real):
    real parts, then imaginary ones. float32, both contiguous."""
    _along_w(lib.lama_fft_rows, "fft_rows", x, rows, x, rows, scale)


def ifft_rows_add(lib: ctypes.CDLL, rows: torch.Tensor, x: torch.Tensor, scale: float) -> None:
    """``x`` [H, W, C] += ``scale`` times the inverse real FFT along W of ``rows`` [H, 2, W // 2 + 1, C], as
    ``irfft`` (the imaginary parts of the zero and the Nyquist frequency ignored)."""
    _along_w(lib.lama_ifft_rows_add, "ifft_rows_add", rows, x, x, rows, scale)


def fft_cols(lib: ctypes.CDLL, src: torch.Tensor, dst: torch.Tensor, inverse: bool, scale: float,
             relu_bias: torch.Tensor | None = None) -> None:
    """``dst`` <- ``scale`` times the FFT (``inverse``: with e^{+i..}) along H of ``src``, or of
    ``relu(src + relu_bias)`` where ``relu_bias`` [2, C] (real parts', imaginary parts') is given; ``src``, ``dst``:
    [H, 2, Q, C] views (row, real/imaginary part, column, channel) with any strides on the first two dimensions
    and contiguous columns of channels."""
    h, _, q, c = src.shape
    tensors = [src, dst] + ([] if relu_bias is None else [relu_bias])
    _check_float32(src.shape == dst.shape and src.shape[1] == 2 and all(t.stride()[2:] == (c, 1) for t in (src, dst))
                   and (relu_bias is None or (relu_bias.is_contiguous() and tuple(relu_bias.shape) == (2, c)))
                   and fft_size_ok(h), "fft_cols", *tensors)
    (srs, sps), (drs, dps) = src.stride()[:2], dst.stride()[:2]
    _done(lib.lama_fft_cols(src.data_ptr(), dst.data_ptr(), None if relu_bias is None else relu_bias.data_ptr(),
                            h, q, c, srs, sps, drs, dps, int(inverse), scale, torch.get_num_threads()), "fft_cols")


OUT_K, OUT_C = 7, 3  # conv_native.c's kernel size and output channels: LaMa's output conv


def out_conv(lib: ctypes.CDLL, y: torch.Tensor, wv: torch.Tensor, bias: torch.Tensor, out: torch.Tensor,
             v: torch.Tensor) -> None:
    """``out`` [3, R, W] (rows contiguous) <- the 7x7 convolution (C -> 3, plus ``bias``) of ``y`` [C, R + 6, W], a
    band of a channels-last map that is already reflect-padded by 3 rows above and below (its columns are reflected
    here); ``wv`` [7, C, 21] holds weight [o, c, ky, kx] at [ky, c, kx * 3 + o]; ``v``: scratch of R * 21 * W values
    or more. float32."""
    c, rp, w = y.shape
    r = rp - (OUT_K - 1)
    _check_float32(r >= 1 and w > OUT_K // 2 and (c == 1 or y.stride(0) == 1) and y.stride()[1:] == (w * c, c)
                   and tuple(wv.shape) == (OUT_K, c, OUT_K * OUT_C) and wv.is_contiguous()
                   and tuple(bias.shape) == (OUT_C,) and bias.is_contiguous()
                   and tuple(out.shape) == (OUT_C, r, w) and out.stride(2) == 1
                   and v.is_contiguous() and v.numel() >= r * OUT_K * OUT_C * w, "out_conv", y, wv, bias, out, v)
    _done(lib.lama_out_conv(y.data_ptr(), wv.data_ptr(), bias.data_ptr(), v.data_ptr(), out.data_ptr(), r, w, c,
                            out.stride(1), out.stride(0), torch.get_num_threads()), "out_conv")
