"""Loading every published weight format, safely."""

import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import OFFICIAL, SMALL_GENERATOR, randomize_bn

import lama
from lama.checkpoint import parse_hub_reference
from lama.generator import generator_from_config
from lama.safe_pickle import UnsafePickleError, load_checkpoint
from lama.testing import config_text, write_folder, write_release_zip, write_safetensors, write_torchscript

NGF, N_BLOCKS = SMALL_GENERATOR["ngf"], SMALL_GENERATOR["n_blocks"]


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(3)
    return randomize_bn(generator_from_config(SMALL_GENERATOR), seed=3).eval()


@pytest.fixture(scope="module")
def probe():
    g = torch.Generator().manual_seed(7)
    return torch.rand(2, 3, 40, 56, generator=g), (torch.rand(2, 1, 40, 56, generator=g) > 0.6).float()


@pytest.fixture(scope="module")
def files(tmp_path_factory, reference):
    root = tmp_path_factory.mktemp("formats")
    cfg = config_text(NGF, N_BLOCKS)
    folder = write_folder(root / "big-lama", reference, cfg)
    return {
        "folder": folder,
        "zip": write_release_zip(root / "big-lama.zip", folder),
        "ckpt_beside_config": folder / "models" / "best.ckpt",
        "safetensors": write_safetensors(root / "g.safetensors", reference, SMALL_GENERATOR),
        "torchscript": write_torchscript(root / "big-lama.pt", reference),
    }


def _raw(model, probe):
    """The loaded generator's own output: weight loading is checked exactly, apart from the fast path."""
    image, mask = probe
    with torch.no_grad():
        return model.generator(torch.cat([image * (1 - mask), mask], 1))


def _expected(reference, probe):
    image, mask = probe
    with torch.no_grad():
        return reference(torch.cat([image * (1 - mask), mask], 1))


@pytest.mark.parametrize("kind", ["folder", "zip", "ckpt_beside_config", "safetensors", "torchscript"])
def test_every_format_loads_to_identical_outputs(files, kind, reference, probe):
    model = lama.load_model(files[kind])
    assert model.config["n_blocks"] == N_BLOCKS and model.config["ngf"] == NGF
    assert torch.equal(_raw(model, probe), _expected(reference, probe))
    assert torch.allclose(model.predict_raw(*probe), _expected(reference, probe), atol=1e-5)  # fast path


def test_bare_ckpt_uses_the_lightning_hyper_parameters(tmp_path, files, reference, probe):
    bare = tmp_path / "weights.ckpt"
    bare.write_bytes(files["ckpt_beside_config"].read_bytes())
    assert torch.equal(_raw(lama.load_model(bare), probe), _expected(reference, probe))


def test_ckpt_with_a_preset_name(tmp_path, reference):
    torch.save({"state_dict": {f"generator.{k}": v for k, v in reference.state_dict().items()}},
               tmp_path / "w.ckpt")
    with pytest.raises(lama.LamaError, match=r"n_blocks=18 but the weights have 2"):
        lama.load_model(tmp_path / "w.ckpt", preset="big-lama")


def test_convert_round_trips_through_safetensors(tmp_path, files, reference, probe):
    from lama.__main__ import main

    out = tmp_path / "converted.safetensors"
    assert main(["convert", str(files["zip"]), str(out)]) == 0
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:
        assert not any(k.startswith(("generator.", "discriminator.")) for k in f.keys())  # noqa: SIM118
        assert f.metadata()["format"] == "lama-generator"
    assert torch.equal(_raw(lama.load_model(out), probe), _expected(reference, probe))


def test_official_checkpoint_loads_through_the_safe_unpickler():
    model = lama.load_model(OFFICIAL)
    ref = torch.load(OFFICIAL / "expected.pt", weights_only=True)
    assert (model.predict_batch(ref["image"], ref["mask"]) - ref["inpainted"]).abs().max() <= 1e-5
    with pytest.raises(pickle.UnpicklingError):  # the stock safe loader refuses this file, as the real one
        torch.load(OFFICIAL / "models" / "best.ckpt", weights_only=True)


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalExploit:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    if legacy:  # a plain (pre-zip) pickle file
        with open(path, "wb") as f:
            pickle.dump({"epoch": 1, "x": _Exploit(marker)}, f, protocol=2)
    else:
        torch.save({"state_dict": {"generator.model.1.ffc.convl2l.weight": torch.zeros(1)}, "x": _Exploit(marker)},
                   path)
    # zip format: refused at the call; the pre-zip format: refused before unpickling starts
    with pytest.raises(lama.LamaError, match="not a zip-format" if legacy else "system"):
        load_checkpoint(path)
    with pytest.raises(lama.LamaError):
        lama.load_model(path)
    assert not marker.exists()


def _torch_zip_with_pickle(tmp_path: Path, payload: bytes) -> Path:
    """A torch.save zip archive whose data.pkl is replaced by hand-made pickle bytes."""
    good = tmp_path / "good.ckpt"
    torch.save({"x": torch.zeros(2)}, good)
    evil = tmp_path / "crafted.ckpt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, payload if item.filename.endswith("/data.pkl") else src.read(item.filename))
    return evil


def test_build_cannot_set_attributes_of_allowed_functions(tmp_path):
    """BUILD on an allowed global would set e.g. ``dump_patches``, which makes torch write files."""
    import lama.safe_pickle as sp

    payload = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x0c\x00\x00\x00dump_patchesq\x00\x88sb.")
    with pytest.raises(UnsafePickleError, match="sets the state"):
        load_checkpoint(_torch_zip_with_pickle(tmp_path, payload))
    assert not hasattr(sp._rebuild_tensor, "dump_patches")


def test_numpy_arrays_are_refused(tmp_path):
    """numpy's unpickling can build object arrays over raw bytes (pointer forgery): never allowed."""
    import numpy as np

    torch.save({"callbacks": {"history": np.array([1, None], dtype=object)}}, tmp_path / "np.ckpt")
    with pytest.raises(UnsafePickleError):
        load_checkpoint(tmp_path / "np.ckpt")


def test_builtins_eval_in_a_pickle_is_refused(tmp_path):
    torch.save({"a": _EvalExploit()}, tmp_path / "evil.ckpt")
    with pytest.raises(UnsafePickleError, match="eval"):
        load_checkpoint(tmp_path / "evil.ckpt")


def test_torchscript_archive_with_malicious_pickle_is_refused(tmp_path, files):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(files["torchscript"]) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps(_Exploit(marker), protocol=2)
            dst.writestr(item, data)
    with pytest.raises(UnsafePickleError):
        lama.load_model(evil)
    assert not marker.exists()


def test_corrupt_zip_gives_a_clear_error(tmp_path, files):
    data = bytearray(files["zip"].read_bytes())
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(lama.LamaError, match="corrupt|not a|could not"):
        lama.load_model(truncated)
    flipped = tmp_path / "flipped.zip"
    mid = len(data) // 2
    data[mid: mid + 64] = bytes(64)
    flipped.write_bytes(data)
    with pytest.raises(lama.LamaError, match="corrupt"):
        lama.load_model(flipped)


def test_config_with_other_n_blocks_than_the_weights_names_both(tmp_path, reference):
    folder = write_folder(tmp_path / "m", reference, config_text(NGF, N_BLOCKS))
    (folder / "config.yaml").write_text(config_text(NGF, 5))
    with pytest.raises(lama.LamaError, match=r"n_blocks=5 but the weights have 2"):
        lama.load_model(folder)


def test_corrupt_member_of_a_checkpoint_is_detected(tmp_path, files):
    data = bytearray(files["ckpt_beside_config"].read_bytes())
    with zipfile.ZipFile(files["ckpt_beside_config"]) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)  # the largest tensor
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 100
    data[start: start + 16] = bytes(16)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(data)
    with pytest.raises(lama.LamaError, match="corrupt"):
        lama.load_model(bad, preset="big-lama")


def test_yaml_alias_bomb_is_refused_quickly(tmp_path, reference):
    folder = write_folder(tmp_path / "m", reference, config_text(NGF, N_BLOCKS))
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 40)]
    lines += ["generator:", "  kind: ffc_resnet", "  n_blocks: 2", "  extra: *a39"]
    (folder / "config.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(lama.LamaError, match="too large"):
        lama.load_model(folder)


@pytest.mark.parametrize(("key", "value", "match"), [
    ("ngf", "abc", "ngf must be an integer"), ("n_blocks", 2.5, "n_blocks must be an integer"),
    ("add_out_act", "softmax", "add_out_act"),
])
def test_config_values_of_the_wrong_type_are_clear_errors(tmp_path, reference, key, value, match):
    from lama.generator import generator_from_config

    cfg = dict(SMALL_GENERATOR, **{key: value})
    with pytest.raises(lama.LamaError, match=match):
        generator_from_config(cfg)
    bad_ratio = dict(SMALL_GENERATOR, resnet_conv_kwargs={"ratio_gin": 2, "ratio_gout": 2, "enable_lfu": False})
    with pytest.raises(lama.LamaError, match="ratio_gin must be a number in"):
        generator_from_config(bad_ratio)


def test_non_utf8_config_and_odd_safetensors_metadata(tmp_path, reference):
    folder = write_folder(tmp_path / "m", reference, config_text(NGF, N_BLOCKS))
    (folder / "config.yaml").write_bytes(b"generator: \xff\xfe\n")
    with pytest.raises(lama.LamaError, match="cannot read config|not valid YAML"):
        lama.load_model(folder)
    st = write_safetensors(tmp_path / "x.safetensors", reference, None)
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(st)), str(tmp_path / "y.safetensors"), metadata={"lama_config": "[1, 2]"})
    with pytest.raises(lama.LamaError, match="not a mapping"):
        lama.load_model(tmp_path / "y.safetensors")


def test_unknown_source_says_what_was_tried():
    with pytest.raises(lama.LamaError, match="not an existing file or folder"):
        lama.load_model("./no/such/thing.ckpt")


def test_not_a_weight_file(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"hello")
    with pytest.raises(lama.LamaError, match="safetensors"):
        lama.load_model(tmp_path / "x.safetensors")
    (tmp_path / "y.ckpt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(lama.LamaError):
        lama.load_model(tmp_path / "y.ckpt")


def test_hub_reference_parsing():
    assert parse_hub_reference("smartywu/big-lama") == ("smartywu/big-lama", None, None)
    assert parse_hub_reference("hf://a/b/sub/w.safetensors@v1") == ("a/b", "sub/w.safetensors", "v1")
    assert parse_hub_reference("big-lama") is None


def _fill_hub_cache(cache: Path, repo: str, files: dict[str, Path]) -> None:
    """The standard huggingface_hub cache layout: refs/main -> snapshots/<commit>/<file>."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    base = cache / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    for name, src in files.items():
        dst = base / "snapshots" / commit / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())


def _load_in_subprocess(source: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    env.pop("LAMA_MODEL", None)
    code = "import sys, lama; m = lama.load_model(sys.argv[1]); print('OK', m.config['n_blocks'], m.source)"
    return subprocess.run([sys.executable, "-c", code, source], env=env, capture_output=True, text=True,
                          timeout=300)


def test_hub_references_and_the_big_lama_preset_load_from_the_standard_cache(tmp_path, files):
    cache = tmp_path / "hub"
    _fill_hub_cache(cache, "smartywu/big-lama", {"big-lama.zip": files["zip"]})
    _fill_hub_cache(cache, "someone/lama-st", {"model.safetensors": files["safetensors"]})
    for source in ("big-lama", "smartywu/big-lama/big-lama.zip", "someone/lama-st"):
        r = _load_in_subprocess(source, cache)
        assert r.returncode == 0 and r.stdout.startswith(f"OK {N_BLOCKS}"), r.stderr


def test_missing_weights_offline_says_where_it_looked_and_what_to_do(tmp_path):
    cache = tmp_path / "empty-cache"
    r = _load_in_subprocess("big-lama", cache)
    assert r.returncode != 0
    assert "LaMa weights not found" in r.stderr and "LAMA_MODEL" in r.stderr and "--model" in r.stderr
    assert str(cache) in r.stderr
    # The CLI prints the same message as one clean error line, no traceback.
    (tmp_path / "in.png").write_bytes((OFFICIAL.parent / "tiny.png").read_bytes())
    (tmp_path / "in_mask.png").write_bytes((OFFICIAL.parent / "tiny_mask.png").read_bytes())
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    env.pop("LAMA_MODEL", None)
    cli = subprocess.run([sys.executable, "-m", "lama", "predict", "--input", str(tmp_path / "in.png"),
                          "--output", str(tmp_path / "out"), "--quiet"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert cli.returncode == 2
    assert cli.stderr.startswith("error: LaMa weights not found") and "Traceback" not in cli.stderr


def test_lama_model_environment_variable_is_the_default(tmp_path, files, monkeypatch, reference, probe):
    monkeypatch.setenv("LAMA_MODEL", str(files["folder"]))
    assert torch.equal(_raw(lama.load_model(), probe), _expected(reference, probe))
