"""dtype="auto": float16 on CUDA, bfloat16 on a CPU with native bf16 (AMX or AVX512-BF16), else float32."""

from __future__ import annotations

import torch

import lama.inpainter as inp
from lama.generator import FFCResNetGenerator
from lama.testing import SMALL_GENERATOR

CPUINFO = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512f {extra}\n\n"


def _cpuinfo(tmp_path, extra: str) -> str:
    path = tmp_path / f"cpuinfo-{extra or 'none'}"
    path.write_text(CPUINFO.format(extra=extra))
    return str(path)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    assert inp.native_bf16_cpu(_cpuinfo(tmp_path, "amx_bf16 amx_tile"))
    assert inp.native_bf16_cpu(_cpuinfo(tmp_path, "avx512_bf16"))
    assert not inp.native_bf16_cpu(_cpuinfo(tmp_path, "avx512_vnni"))  # AVX-512 without bf16: emulated
    assert not inp.native_bf16_cpu(str(tmp_path / "missing"))  # not Linux: no claim


def test_auto_picks_per_device(monkeypatch):
    assert inp.auto_dtype(torch.device("cuda")) == torch.float16
    assert inp.auto_dtype(torch.device("mps")) == torch.float32
    monkeypatch.setattr(inp, "native_bf16_cpu", lambda: True)
    assert inp.auto_dtype(torch.device("cpu")) == torch.bfloat16
    small = FFCResNetGenerator(**{k: v for k, v in SMALL_GENERATOR.items() if k != "kind"})
    assert inp.Inpainter(small, device="cpu", dtype="auto").dtype == torch.bfloat16
    monkeypatch.setattr(inp, "native_bf16_cpu", lambda: False)
    assert inp.auto_dtype(torch.device("cpu")) == torch.float32
    assert inp.Inpainter(small, device="cpu", dtype="auto").dtype == torch.float32


def test_the_cli_and_the_demo_take_auto():
    from demo.backend import Settings
    from lama.__main__ import build_parser

    args = build_parser().parse_args(["predict", "--input", "x", "--output", "y", "--dtype", "auto"])
    assert args.dtype == "auto"
    assert build_parser().parse_args(["predict", "--input", "x", "--output", "y"]).dtype == "float32"
    assert Settings().dtype == "auto"
