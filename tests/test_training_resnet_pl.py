"""ResNetPL (lama.training.resnet_pl) against the official loss fixture, and its weight loader."""

from __future__ import annotations

from pathlib import Path

import official_losses as ol
import pytest
import torch
from torch import nn

from lama.errors import LamaError
from lama.testing import write_resnet_pl_weights
from lama.training.resnet_pl import (
    ENCODER_FILE,
    ENCODER_URL,
    ResNet50Dilated,
    ResNetPL,
    find_encoder_weights,
    load_encoder,
)

MODES = [("train", True), ("eval", False)]


@pytest.fixture(scope="module")
def exp() -> dict[str, torch.Tensor]:
    return ol.expected()


@pytest.fixture(scope="module")
def formula() -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        template = ResNet50Dilated().state_dict()
    return ol.formula_state({k: torch.empty(v.shape, dtype=v.dtype) for k, v in template.items()}, conv_gain=3.0)


def fresh_loss(formula: dict[str, torch.Tensor], batch_stats: bool) -> ResNetPL:
    """A ResNetPL with the fixture's weights AND running stats (train-mode forwards change the latter)."""
    with torch.device("meta"):  # every entry is overwritten: skip the slow random init
        encoder = ResNet50Dilated()
    encoder.to_empty(device="cpu").load_state_dict(formula)
    return ResNetPL(encoder, weight=30.0, batch_stats=batch_stats).train()


def rel_max(mine: torch.Tensor, ref: torch.Tensor) -> float:
    return float((mine.detach() - ref).abs().max() / ref.abs().max())


def test_key_layout_equals_published_encoder():
    sd = ResNet50Dilated().state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == ol.recorded_keys("encoder_keys.txt")
    assert len(sd) == 330
    assert sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked")) == 23_685_312


def test_formula_weights_reproduce_recorded_sha256(formula):
    assert ol.state_sha256(formula) == ol.recorded_sha256("encoder_keys.txt")


def test_feature_shapes():
    enc = ResNet50Dilated().eval()
    with torch.no_grad():
        feats = enc(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(1, 256, 16, 24), (1, 512, 8, 12), (1, 1024, 8, 12), (1, 2048, 8, 12)]


@pytest.mark.parametrize("mode,batch_stats", MODES)
def test_loss_and_gradient_match_official(exp, formula, mode, batch_stats):
    loss_fn = fresh_loss(formula, batch_stats)
    assert loss_fn.impl.training is batch_stats  # .train() was called: the encoder follows only with batch_stats
    pred = exp["inputs/predicted_image"].clone().requires_grad_(True)
    loss = loss_fn(pred, exp["inputs/img"])
    value = float(loss.detach())
    ref = exp[f"{mode}/gen_resnet_pl"]
    assert loss.shape == ref.shape == ()
    assert abs(value - float(ref)) <= 1e-5 * abs(float(ref)), (value, float(ref))
    loss.backward()
    key = f"{mode}/grad_wrt_pred/gen_resnet_pl"
    assert float((pred.grad - exp[key]).abs().max()) <= ol.tolerance(exp, key)
    assert all(p.grad is None and not p.requires_grad for p in loss_fn.parameters())


def test_train_and_eval_values_really_differ(exp):
    # guards the two tests above against a mode mix-up: the fixture's two values are far apart
    assert float(exp["train/gen_resnet_pl"]) > 100 * float(exp["eval/gen_resnet_pl"])


@pytest.mark.parametrize("mode,batch_stats", MODES)
def test_layer_features_match_official(exp, formula, mode, batch_stats):
    loss_fn = fresh_loss(formula, batch_stats)
    with torch.no_grad():
        pred_feats = loss_fn.features(exp["inputs/predicted_image"])
        target_feats = loss_fn.features(exp["inputs/img"])
    for i, (fp, ft) in enumerate(zip(pred_feats, target_feats, strict=True), 1):
        for which, f in (("pred", fp), ("target", ft)):
            key = f"{mode}/resnet_feat_layer{i}_{which}_channel_mean"
            mine = f.mean(dim=(2, 3))
            assert mine.shape == exp[key].shape
            assert float((mine - exp[key]).abs().max()) <= ol.tolerance(exp, key), key
        key = f"{mode}/helper/resnet_pl_layer{i}_mse"
        mse = torch.nn.functional.mse_loss(fp, ft)
        assert float((mse - exp[key]).abs()) <= ol.tolerance(exp, key), key


def test_running_stats_drift_only_with_batch_stats(exp, formula):
    pred, img = exp["inputs/predicted_image"], exp["inputs/img"]
    bn = "layer4.2.bn3"

    drifting = fresh_loss(formula, batch_stats=True)
    with torch.no_grad():
        drifting(pred, img)
    sd = drifting.impl.state_dict()
    assert int(sd[f"{bn}.num_batches_tracked"]) == 2  # pred and target: two separate encoder calls
    assert float((sd[f"{bn}.running_mean"] - formula[f"{bn}.running_mean"]).abs().max()) > 1e-3

    # the same module in eval mode (validation) uses and keeps the running stats
    before = {k: v.clone() for k, v in drifting.impl.state_dict().items()}
    drifting.eval()
    with torch.no_grad():
        drifting(pred, img)
    assert all(torch.equal(v, drifting.impl.state_dict()[k]) for k, v in before.items())

    frozen = fresh_loss(formula, batch_stats=False)
    parent = nn.ModuleDict({"loss_resnet_pl": frozen})
    parent.train()
    assert frozen.training and not frozen.impl.training
    assert not any(m.training for m in frozen.impl.modules())
    with torch.no_grad():
        frozen(pred, img)
    assert all(torch.equal(v, formula[k]) for k, v in frozen.impl.state_dict().items())


def test_batch_stats_encoder_follows_parent_mode(formula):
    loss_fn = fresh_loss(formula, batch_stats=True)
    parent = nn.ModuleDict({"loss_resnet_pl": loss_fn})
    parent.eval()
    assert not loss_fn.impl.training
    parent.train()
    assert all(m.training for m in loss_fn.impl.modules())
    assert list(parent.state_dict())[0] == "loss_resnet_pl.impl.conv1.weight"  # official checkpoint naming


def test_identical_images_give_zero_loss(exp, formula):
    loss_fn = fresh_loss(formula, batch_stats=False)
    with torch.no_grad():
        assert float(loss_fn(exp["inputs/img"], exp["inputs/img"])) == 0.0


# ---------------------------------------------------------------------------------------------- finding / loading


def save_state(tmp_path: Path, state: dict) -> Path:
    path = tmp_path / ENCODER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def plain_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return ResNet50Dilated().state_dict()


def test_missing_file_message(tmp_path):
    with pytest.raises(LamaError) as info:
        find_encoder_weights(tmp_path)
    msg = str(info.value)
    assert str(tmp_path / ENCODER_FILE) in msg
    assert ENCODER_URL in msg
    assert str((tmp_path / ENCODER_FILE).parent) in msg
    assert "losses.resnet_pl.weight: 0" in msg


def test_default_folder_is_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(LamaError, match="looked at " + str(tmp_path)):
        find_encoder_weights()
    monkeypatch.delenv("TORCH_HOME")
    with pytest.raises(LamaError) as info:
        find_encoder_weights()
    assert str(Path.home() / ".cache" / "torch" / ENCODER_FILE) in str(info.value)


def test_write_weights_round_trip(tmp_path, monkeypatch):
    path = write_resnet_pl_weights(tmp_path, seed=3)
    assert path == tmp_path / ENCODER_FILE
    assert find_encoder_weights(tmp_path) == path
    assert find_encoder_weights(path) == path
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert find_encoder_weights() == path

    saved = torch.load(path, weights_only=True)
    assert [(k, tuple(v.shape)) for k, v in saved.items()] == ol.recorded_keys("encoder_keys.txt")
    encoder = load_encoder(path)
    assert not encoder.training
    loaded = encoder.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    other = torch.load(write_resnet_pl_weights(tmp_path / "other", seed=4), weights_only=True)
    assert not torch.equal(saved["conv1.weight"], other["conv1.weight"])

    loss_fn = ResNetPL.from_path(tmp_path, weight=2.0, batch_stats=False)
    assert loss_fn.weight == 2.0 and not loss_fn.batch_stats
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        loss = loss_fn(x, x.flip(-1))
    assert torch.isfinite(loss) and float(loss) > 0


def test_renamed_key_is_named(tmp_path, plain_state):
    state = dict(plain_state)
    state["layer2.1.conv_2.weight"] = state.pop("layer2.1.conv2.weight")
    with pytest.raises(LamaError) as info:
        load_encoder(save_state(tmp_path, state))
    msg = str(info.value)
    assert "missing keys: layer2.1.conv2.weight (1)" in msg
    assert "unexpected keys: layer2.1.conv_2.weight (1)" in msg
    assert ENCODER_URL in msg


def test_extra_key_is_named(tmp_path, plain_state):
    state = dict(plain_state)
    state["fc.weight"] = torch.zeros(150, 2048)
    with pytest.raises(LamaError, match=r"unexpected keys: fc\.weight \(1\)") as info:
        load_encoder(save_state(tmp_path, state))
    assert "missing" not in str(info.value)


def test_shape_mismatch_and_many_missing(tmp_path, plain_state):
    state = {k: v for k, v in plain_state.items() if not k.startswith("layer4.")}
    state["bn1.weight"] = torch.ones(65)
    with pytest.raises(LamaError) as info:
        load_encoder(save_state(tmp_path, state))
    msg = str(info.value)
    assert "bn1.weight (65,) != (64,)" in msg
    n_missing = sum(1 for k in plain_state if k.startswith("layer4.") and not k.endswith("num_batches_tracked"))
    assert f"({n_missing} in all)" in msg and "layer4.0.conv1.weight" in msg


def test_missing_num_batches_tracked_and_wrapped_checkpoint(tmp_path, plain_state):
    state = {k: v for k, v in plain_state.items() if not k.endswith("num_batches_tracked")}
    assert len(state) == 330 - 55  # 3 stem + 16 x 3 block + 4 downsample BatchNorms
    encoder = load_encoder(save_state(tmp_path, state))
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in state.items())

    wrapped = {"epoch": 20, "state_dict": {"module." + k: v for k, v in plain_state.items()}}
    encoder = load_encoder(save_state(tmp_path / "wrapped", wrapped))
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in plain_state.items())


class _NotATensor:
    pass


def test_unreadable_and_unsafe_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(LamaError, match="cannot read the ResNetPL encoder weights"):
        load_encoder(garbage)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"conv1.weight": _NotATensor()}, unsafe)
    with pytest.raises(LamaError, match="cannot read"):
        load_encoder(unsafe)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(LamaError, match="not a state_dict"):
        load_encoder(listed)
