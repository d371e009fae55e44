"""Each loss term against the official trainer's values (tests/data/official_losses, see its README)."""

from __future__ import annotations

import pytest
import torch
from official_losses import expected, formula_state, tolerance

from lama.discriminator import NLayerDiscriminator
from lama.training.losses import NonSaturatingWithR1, feature_matching_loss, masked_l1_loss, r1_penalty

EXP = expected()
IMG, MASK, PRED = EXP["inputs/img"], EXP["inputs/mask"], EXP["inputs/predicted_image"]
ADV = NonSaturatingWithR1(weight=10, gp_coef=0.001, mask_as_fake_target=True)


def fresh_discriminator(mode: str) -> NLayerDiscriminator:
    d = NLayerDiscriminator(3, 64, 4)
    d.load_state_dict(formula_state(d.state_dict(), conv_gain=6.0))
    return d.train(mode == "train")


def close(value: torch.Tensor, key: str, rel: float = 1e-5) -> None:
    exp = EXP[key]
    if exp.numel() == 1:
        assert float(value.detach()) == pytest.approx(float(exp), rel=rel), key
    else:
        err = float((value.detach() - exp).abs().max())
        assert err <= tolerance(EXP, key), (key, err, tolerance(EXP, key))


def generator_terms(mode: str) -> dict[str, torch.Tensor]:
    """The generator step's terms, D frozen, called in the official order (real first, then predicted)."""
    d = fresh_discriminator(mode).requires_grad_(False)
    pred = PRED.clone().requires_grad_(True)
    real_logits, real_feats = d(IMG)
    fake_logits, fake_feats = d(pred)
    terms = {"gen_l1": masked_l1_loss(pred, IMG, MASK, 10, 0), "gen_adv": ADV.generator_loss(fake_logits),
             "gen_fm": feature_matching_loss(fake_feats, real_feats) * 100}
    terms["pred"] = pred
    terms["real_logits"], terms["fake_logits"] = real_logits, fake_logits
    return terms


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_generator_terms_equal_the_official_values(mode):
    t = generator_terms(mode)
    for name in ("gen_l1", "gen_adv", "gen_fm"):
        close(t[name], f"{mode}/{name}")
    close(t["real_logits"], f"{mode}/disc_real_logits")
    close(t["fake_logits"], f"{mode}/disc_fake_logits")


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", ["gen_l1", "gen_adv", "gen_fm"])
def test_generator_gradients_equal_the_official_ones(mode, name):
    t = generator_terms(mode)
    (grad,) = torch.autograd.grad(t[name], t["pred"])
    close(grad, f"{mode}/grad_wrt_pred/{name}")


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_discriminator_loss_with_r1_and_its_gradient_equal_the_official_values(mode):
    d = fresh_discriminator(mode)
    real = IMG.clone().requires_grad_(True)
    real_logits, _ = d(real)
    fake_logits, _ = d(PRED.detach())
    loss, metrics = ADV.discriminator_loss(real, real_logits, fake_logits, MASK)
    close(loss, f"{mode}/discr_adv")
    for name in ("discr_real_out", "discr_fake_out", "discr_real_gp"):
        close(metrics[name], f"{mode}/{name}")
    close(metrics["discr_real_gp"] / 0.001, f"{mode}/r1_penalty_raw")
    loss.backward()
    close(d.model0[0].weight.grad, f"{mode}/discr_grad_model0_conv_weight")
    close(d.model0[0].bias.grad, f"{mode}/discr_grad_model0_conv_bias")


def test_the_mask_on_the_logit_grid_is_the_official_nearest_resize():
    from lama.training.losses import mask_to_logits

    got = mask_to_logits(MASK, (7, 7))
    assert torch.equal(got, EXP["train/disc_mask_resized"])
    # not what max-pooling would give: the legacy rule samples rows/columns floor(i * 64 / 7)
    assert not torch.equal(got, torch.nn.functional.adaptive_max_pool2d(MASK, 7))


def test_the_discriminator_loss_is_not_multiplied_by_the_adversarial_weight():
    d = fresh_discriminator("eval")
    real = IMG.clone().requires_grad_(True)
    heavy = NonSaturatingWithR1(weight=1000, gp_coef=0.001)
    loss, _ = heavy.discriminator_loss(real, d(real)[0], d(PRED)[0], MASK)
    close(loss, "eval/discr_adv")


def test_r1_equals_the_squared_norm_of_a_finite_difference_gradient():
    """R1 against a gradient taken without autograd: central differences in float64 on a small D."""
    torch.manual_seed(0)
    d = NLayerDiscriminator(3, 8, 2).double().eval()
    x = torch.rand(2, 3, 10, 10, dtype=torch.float64)
    real = x.clone().requires_grad_(True)
    got = r1_penalty(d(real)[0], real)

    flat = x.reshape(-1)
    grad = torch.empty_like(flat)
    h = 1e-6
    with torch.no_grad():
        for i in range(flat.numel()):
            up, down = flat.clone(), flat.clone()
            up[i] += h
            down[i] -= h
            grad[i] = (d(up.view_as(x))[0].sum() - d(down.view_as(x))[0].sum()) / (2 * h)
    by_hand = grad.view(2, -1).pow(2).sum(dim=1).mean()
    assert float(got.detach()) == pytest.approx(float(by_hand), rel=1e-7)
    assert float(by_hand) > 0


def test_without_grad_r1_is_zero_as_in_validation():
    d = fresh_discriminator("eval")
    with torch.no_grad():
        _, metrics = ADV.discriminator_loss(IMG, d(IMG)[0], d(PRED)[0], MASK)
    assert float(metrics["discr_real_gp"]) == 0.0
