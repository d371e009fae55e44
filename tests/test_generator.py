"""The generator against the official implementation's structure and outputs."""

import pytest
import torch
from conftest import OFFICIAL, SMALL_GENERATOR, randomize_bn

from lama.config import generator_section, load_config
from lama.discriminator import NLayerDiscriminator
from lama.ffc import FFCResnetBlock, FourierUnit, SpectralTransform
from lama.generator import build_preset, generator_from_config
from lama.safe_pickle import load_checkpoint


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(("preset", "expected"), [("lama-fourier", 27_048_835), ("big-lama", 50_975_875)])
def test_parameter_counts_match_the_paper_models(preset, expected):
    assert n_params(build_preset(preset)) == expected


def test_discriminator_parameter_count():
    assert n_params(NLayerDiscriminator(input_nc=3, ndf=64, n_layers=4)) == 6_962_369


def test_discriminator_returns_logits_and_features():
    d = NLayerDiscriminator(input_nc=3, ndf=8, n_layers=4).eval()
    logits, feats = d(torch.rand(1, 3, 64, 64))
    assert logits.shape[:2] == (1, 1)
    assert len(feats) == 5 and feats[0].shape[1] == 8


def _big_lama_layout() -> dict[str, tuple[int, ...]]:
    """Key -> shape of the official big-lama generator, derived from its published structure."""
    s: dict[str, tuple[int, ...]] = {}

    def bn(p, n):
        for k in ("weight", "bias", "running_mean", "running_var"):
            s[f"{p}.{k}"] = (n,)
        s[f"{p}.num_batches_tracked"] = ()

    s["model.1.ffc.convl2l.weight"] = (64, 4, 7, 7)
    bn("model.1.bn_l", 64)
    s["model.2.ffc.convl2l.weight"] = (128, 64, 3, 3)
    bn("model.2.bn_l", 128)
    s["model.3.ffc.convl2l.weight"] = (256, 128, 3, 3)
    bn("model.3.bn_l", 256)
    s["model.4.ffc.convl2l.weight"] = (128, 256, 3, 3)  # 25 % local of 512
    s["model.4.ffc.convl2g.weight"] = (384, 256, 3, 3)
    bn("model.4.bn_l", 128)
    bn("model.4.bn_g", 384)
    for b in range(5, 23):
        for c in ("conv1", "conv2"):
            p = f"model.{b}.{c}"
            s[f"{p}.ffc.convl2l.weight"] = (128, 128, 3, 3)
            s[f"{p}.ffc.convl2g.weight"] = (384, 128, 3, 3)
            s[f"{p}.ffc.convg2l.weight"] = (128, 384, 3, 3)
            s[f"{p}.ffc.convg2g.conv1.0.weight"] = (192, 384, 1, 1)
            bn(f"{p}.ffc.convg2g.conv1.1", 192)
            s[f"{p}.ffc.convg2g.fu.conv_layer.weight"] = (384, 384, 1, 1)
            bn(f"{p}.ffc.convg2g.fu.bn", 384)
            s[f"{p}.ffc.convg2g.conv2.weight"] = (384, 192, 1, 1)
            bn(f"{p}.bn_l", 128)
            bn(f"{p}.bn_g", 384)
    for i, (cin, cout) in zip((24, 27, 30), ((512, 256), (256, 128), (128, 64)), strict=True):
        s[f"model.{i}.weight"] = (cin, cout, 3, 3)
        s[f"model.{i}.bias"] = (cout,)
        bn(f"model.{i + 1}", cout)
    s["model.34.weight"] = (3, 64, 7, 7)
    s["model.34.bias"] = (3,)
    return s


def test_big_lama_state_dict_layout_is_the_official_one():
    sd = build_preset("big-lama").state_dict()
    expected = _big_lama_layout()
    assert set(sd) == set(expected)
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k


def test_official_reference_checkpoint_reproduces_official_outputs():
    cfg = generator_section(load_config(OFFICIAL / "config.yaml"))
    g = generator_from_config(cfg).eval()
    sd = load_checkpoint(OFFICIAL / "models" / "best.ckpt")["state_dict"]
    g.load_state_dict({k.removeprefix("generator."): v for k, v in sd.items() if k.startswith("generator.")})
    ref = torch.load(OFFICIAL / "expected.pt", weights_only=True)
    with torch.no_grad():
        pred = g(torch.cat([ref["image"] * (1 - ref["mask"]), ref["mask"]], 1))
    assert (pred - ref["predicted_image"]).abs().max() <= 1e-5
    inpainted = ref["mask"] * pred + (1 - ref["mask"]) * ref["image"]
    assert (inpainted - ref["inpainted"]).abs().max() <= 1e-5


def test_fourier_unit_matches_a_hand_written_dft():
    """With an identity 1x1 conv and BN, the unit is ReLU in the frequency domain, then the inverse DFT."""
    torch.manual_seed(1)
    c, h, w = 2, 6, 5
    fu = FourierUnit(c, c).eval()
    with torch.no_grad():
        fu.conv_layer.weight.copy_(torch.eye(2 * c).view(2 * c, 2 * c, 1, 1))
        fu.bn.running_var.fill_(1 - fu.bn.eps)  # so that eval-mode BN is exactly the identity
    x = torch.randn(1, c, h, w, dtype=torch.float64)
    fu = fu.double()
    # Hand-written orthonormal 2-D DFT, keeping the non-negative half of the last axis.
    f64 = dict(dtype=torch.float64)
    yy, xx = torch.meshgrid(torch.arange(h, **f64), torch.arange(w, **f64), indexing="ij")
    out = torch.zeros(1, c, h, w, dtype=torch.float64)
    half = w // 2 + 1
    spec = torch.zeros(c, h, half, dtype=torch.complex128)
    for u in range(h):
        for v in range(half):
            phase = torch.exp(-2j * torch.pi * (u * yy / h + v * xx / w))
            spec[:, u, v] = (x[0] * phase).sum(dim=(-2, -1)) / (h * w) ** 0.5
    spec = torch.complex(spec.real.clamp(min=0), spec.imag.clamp(min=0))
    # Inverse of a real signal's half spectrum: Hermitian-symmetric completion.
    full = torch.zeros(c, h, w, dtype=torch.complex128)
    full[:, :, :half] = spec
    for v in range(half, w):
        full[:, :, v] = spec[:, (-torch.arange(h)) % h, w - v].conj()
    for y in range(h):
        for xk in range(w):
            uu, vv = torch.meshgrid(torch.arange(h, **f64), torch.arange(w, **f64), indexing="ij")
            phase = torch.exp(2j * torch.pi * (uu * y / h + vv * xk / w))
            out[0, :, y, xk] = ((full * phase).sum(dim=(-2, -1)) / (h * w) ** 0.5).real
    with torch.no_grad():
        got = fu(x)
    assert torch.allclose(got, out, atol=1e-10)


def test_local_fourier_unit_works_on_the_2x2_tiles_of_the_first_quarter_of_channels():
    st = randomize_bn(SpectralTransform(16, 16, enable_lfu=True)).eval()
    x = torch.rand(1, 16, 12, 12)
    with torch.no_grad():
        z = st.conv1(x)
        q = z[:, : z.shape[1] // 4]
        tiles = torch.cat([q[..., :6, :6], q[..., 6:, :6], q[..., :6, 6:], q[..., 6:, 6:]], dim=1)
        expected = st.conv2(z + st.fu(z) + st.lfu(tiles).repeat(1, 1, 2, 2))
        assert torch.allclose(st(x), expected, atol=1e-6)
        st.enable_lfu = False
        assert not torch.allclose(st(x), expected, atol=1e-3)


def _resnet_block(ratio: float) -> torch.nn.Module:
    """An FFC resnet block; with ratio 0 it is two plain 3x3 conv+BN+ReLU layers of the same depth."""
    return randomize_bn(FFCResnetBlock(16, ratio_gin=ratio, ratio_gout=ratio, enable_lfu=False)).eval()


def _corner_effect(block: torch.nn.Module, n_global: int) -> float:
    """Largest change at the bottom-right pixel when the top-left input pixel changes."""
    x = torch.rand(1, 16, 32, 32)
    y = x.clone()
    y[..., 0, 0] += 1.0

    def run(t):
        pair = (t[:, : 16 - n_global], t[:, 16 - n_global:] if n_global else 0)
        return torch.cat([o for o in block(pair) if not isinstance(o, int)], dim=1)

    with torch.no_grad():
        return (run(x) - run(y))[..., -1, -1].abs().max().item()


def test_ffc_has_a_global_receptive_field_and_plain_convs_do_not():
    assert _corner_effect(_resnet_block(0.75), n_global=12) > 1e-6
    assert _corner_effect(_resnet_block(0.0), n_global=0) == 0.0


@pytest.mark.parametrize(("h", "w"), [(256, 256), (264, 264), (512, 768)])
def test_sizes_that_are_multiples_of_8_round_trip(h, w):
    g = randomize_bn(generator_from_config(SMALL_GENERATOR)).eval()
    with torch.no_grad():
        out = g(torch.rand(1, 4, h, w))
    assert out.shape == (1, 3, h, w)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
