"""The fast path's per-machine kernel choice: measured once, cached per CPU model / torch / dtype / threads / shape,
forced by LAMA_FAST_KERNEL; either kernel computes the same function."""

from __future__ import annotations

import json

import pytest
import torch

import lama.kernel_choice as kc
from lama.errors import LamaError
from lama.fast import FastGenerator
from lama.generator import FFCResNetGenerator
from lama.inpainter import Inpainter
from lama.testing import SMALL_GENERATOR, randomize_bn


@pytest.fixture
def small():
    gen = FFCResNetGenerator(**{k: v for k, v in SMALL_GENERATOR.items() if k != "kind"})
    return randomize_bn(gen).eval()


@pytest.fixture
def measuring(tmp_path, monkeypatch):
    """auto mode with a fresh cache; records which kernels were timed."""
    monkeypatch.setenv("LAMA_FAST_KERNEL", "auto")
    monkeypatch.setenv("LAMA_CACHE_DIR", str(tmp_path))
    timed = []

    def fake_seconds(gen, kernel, dtype, repeats=2, blocks=None):
        timed.append(kernel)
        return {"winograd": 2.0, "direct": 1.0}[kernel]

    monkeypatch.setattr(kc, "_seconds", fake_seconds)
    return tmp_path / "fast_kernels.json", timed


def test_the_faster_kernel_is_chosen_once_and_remembered(small, measuring):
    cache, timed = measuring
    assert kc.choose_kernel(small, torch.float32) == "direct"
    assert sorted(set(timed)) == ["direct", "winograd"]
    assert json.loads(cache.read_text()) == {kc.machine_key(small, torch.float32): "direct"}
    assert kc.choose_kernel(small, torch.float32) == "direct"
    assert len(timed) == 2 * kc.ROUNDS  # from the cache, not measured again
    assert kc.choose_kernel(small, torch.bfloat16) == "direct" and len(timed) == 4 * kc.ROUNDS  # other dtype


def test_another_cpu_or_torch_version_measures_again(small, measuring, monkeypatch):
    cache, timed = measuring
    kc.choose_kernel(small, torch.float32)
    monkeypatch.setattr(kc, "cpu_model", lambda: "Another CPU")
    kc.choose_kernel(small, torch.float32)
    assert len(timed) == 4 * kc.ROUNDS
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    kc.choose_kernel(small, torch.float32)
    assert len(timed) == 6 * kc.ROUNDS and len(json.loads(cache.read_text())) == 3


def test_same_model_name_other_instruction_sets_measures_again(small, measuring, monkeypatch):
    """VMs report generic model names ("Intel(R) Xeon(R) Processor") for CPUs with and without AMX, and oneDNN can
    be held to fewer instruction sets (ONEDNN_MAX_CPU_ISA); neither may reuse the other's choice, also where no
    compiled transforms put the CPU's flags into the key."""
    cache, timed = measuring
    monkeypatch.setenv("LAMA_NATIVE", "0")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(kc, "cpu_features", lambda: "fpu avx512f avx512_bf16 amx_bf16 amx_tile", raising=False)
    kc.choose_kernel(small, torch.float32)
    kc.choose_kernel(small, torch.float32)
    assert len(timed) == 2 * kc.ROUNDS
    monkeypatch.setattr(kc, "cpu_features", lambda: "fpu avx512f avx512_bf16", raising=False)
    kc.choose_kernel(small, torch.float32)
    assert len(timed) == 4 * kc.ROUNDS
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    kc.choose_kernel(small, torch.float32)
    assert len(timed) == 6 * kc.ROUNDS and len(json.loads(cache.read_text())) == 3


def test_new_winograd_transforms_measure_again(small, measuring, monkeypatch):
    """Another build of the compiled transforms (a new source or compiler flags) may change which kernel is faster."""
    cache, timed = measuring
    monkeypatch.setattr(kc.native, "build_id", lambda: "native-0123456789abcdef")
    kc.choose_kernel(small, torch.float32)
    monkeypatch.setattr(kc.native, "build_id", lambda: "native-fedcba9876543210")
    kc.choose_kernel(small, torch.float32)
    assert len(timed) == 4 * kc.ROUNDS and len(json.loads(cache.read_text())) == 2


def test_a_corrupt_cache_is_ignored_and_rewritten(small, measuring):
    cache, timed = measuring
    cache.write_text("{not json")
    assert kc.choose_kernel(small, torch.float32) == "direct"
    assert json.loads(cache.read_text()) == {kc.machine_key(small, torch.float32): "direct"}
    cache.write_text(json.dumps({kc.machine_key(small, torch.float32): "bogus"}))
    assert kc.choose_kernel(small, torch.float32) == "direct" and len(timed) == 4 * kc.ROUNDS


def test_forcing_a_kernel_and_bad_values(small, monkeypatch):
    monkeypatch.setenv("LAMA_FAST_KERNEL", "direct")
    assert kc.choose_kernel(small, torch.float32) == "direct"
    assert "fast=direct" in repr(Inpainter(small, device="cpu"))
    monkeypatch.setenv("LAMA_FAST_KERNEL", "winograd")
    assert "fast=winograd" in repr(Inpainter(small, device="cpu"))
    monkeypatch.setenv("LAMA_FAST_KERNEL", "fastest")
    with pytest.raises(LamaError, match="LAMA_FAST_KERNEL"):
        kc.choose_kernel(small, torch.float32)


def test_the_inpainter_uses_the_measured_choice(small, measuring):
    inp = Inpainter(small, device="cpu")
    assert inp.fast.kernel == "direct" and "kernel=direct" in repr(inp.fast)


def test_a_kernel_timed_in_a_busy_moment_is_timed_again(small, measuring, monkeypatch):
    """Winograd's first time is slow (another process ran then); its later ones are the faster."""
    times = {"winograd": [5.0, 1.0, 1.0], "direct": [2.0, 2.0, 2.0]}
    monkeypatch.setattr(kc, "_seconds", lambda gen, kernel, dtype, repeats=2, blocks=None: times[kernel].pop(0))
    assert kc.choose_kernel(small, torch.float32) == "winograd"


def test_a_real_measurement_picks_one_of_the_kernels_and_both_compute_the_same(small, tmp_path, monkeypatch):
    monkeypatch.setenv("LAMA_FAST_KERNEL", "auto")
    monkeypatch.setenv("LAMA_CACHE_DIR", str(tmp_path))
    assert kc.choose_kernel(small, torch.float32) in kc.KERNELS
    x = torch.rand(1, 4, 72, 120)
    ref = small(x)
    for kernel in kc.KERNELS:
        assert (FastGenerator(small, kernel=kernel)(x) - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("kernel", ["winograd", "direct"])
def test_measuring_times_one_block_not_a_second_generator(small, kernel, monkeypatch):
    """A whole second fast generator per kernel raised the first load's peak memory by ~300 MB (Big LaMa, bf16)."""
    def no_generator(*args, **kwargs):
        raise AssertionError("the measurement built a whole fast generator")

    monkeypatch.setattr("lama.fast.FastGenerator.__init__", no_generator)
    for dtype in (torch.float32, torch.bfloat16):
        assert 0 < kc._seconds(small, kernel, dtype) < 10
