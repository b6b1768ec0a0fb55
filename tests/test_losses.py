"""Pixel, GAN and perceptual losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from esrcli.archs import VGG19FeatureExtractor
from esrcli.errors import TrainingError
from esrcli.losses import discriminator_gan_loss, feature_matching_loss, gan_target_loss, generator_gan_loss, phase_loss, pixel_loss, texture_loss
from esrcli.losses.perceptual import PerceptualLoss
from esrcli.losses.texture import random_texture_filters

LAYERS = ("conv1_2", "conv2_2")


def test_pixel_losses():
    sr, gt = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert pixel_loss(sr, gt, "l1").item() == pytest.approx(0.5)
    assert pixel_loss(sr, gt, "l2").item() == pytest.approx(0.25)
    assert pixel_loss(sr, gt, "charbonnier").item() == pytest.approx(0.5, abs=1e-5)
    assert pixel_loss(sr.bfloat16(), gt.bfloat16()).dtype == torch.float32
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_loss(sr, gt[..., :1])
    with pytest.raises(ValueError, match="criterion"):
        pixel_loss(sr, gt, "l3")


def test_gan_target_losses():
    x = torch.tensor([[0.3], [-1.2]])
    assert gan_target_loss(x, True, "vanilla").item() == pytest.approx(F.softplus(-x).mean().item())
    assert gan_target_loss(x, False, "vanilla").item() == pytest.approx(F.softplus(x).mean().item())
    assert gan_target_loss(x, True, "lsgan").item() == pytest.approx(((x - 1) ** 2).mean().item())
    assert gan_target_loss(x, False, "lsgan").item() == pytest.approx((x**2).mean().item())
    assert gan_target_loss(x, True, "hinge").item() == pytest.approx(torch.relu(1 - x).mean().item())
    assert gan_target_loss(x, False, "hinge").item() == pytest.approx(torch.relu(1 + x).mean().item())
    assert gan_target_loss(x, True, "hinge", is_disc=False).item() == pytest.approx(-x.mean().item())
    with pytest.raises(ValueError, match="gan_type"):
        gan_target_loss(x, True, "wgan")


def test_ragan_is_relative():
    real, fake = torch.tensor([2.0, 1.0]), torch.tensor([0.0, -1.0])
    bce = lambda z, t: F.binary_cross_entropy_with_logits(z, torch.full_like(z, t)).item()  # noqa: E731
    g = generator_gan_loss(fake, real, "ragan").item()
    assert g == pytest.approx((bce(real - fake.mean(), 0.0) + bce(fake - real.mean(), 1.0)) / 2)
    d_real, d_fake = discriminator_gan_loss(real, fake, "ragan")
    assert d_real.item() == pytest.approx(bce(real - fake.mean(), 1.0) / 2)
    assert d_fake.item() == pytest.approx(bce(fake - real.mean(), 0.0) / 2)
    # Shifting both logits by a constant changes nothing: only differences matter.
    assert generator_gan_loss(fake + 5, real + 5, "ragan").item() == pytest.approx(g)
    with pytest.raises(ValueError, match="needs real_pred"):
        generator_gan_loss(fake, None, "ragan")


def test_gan_gradients_push_the_right_way():
    fake = torch.zeros(4, 1, requires_grad=True)
    generator_gan_loss(fake, None, "vanilla").backward()
    assert (fake.grad < 0).all()  # descending raises the "real" logit of fakes


@pytest.fixture
def vgg_file(tmp_path):
    """A VGG19 file holding only features.0..7 (enough for conv1_2 and conv2_2)."""
    torch.manual_seed(0)
    net = VGG19FeatureExtractor(LAYERS)
    sd = net.state_dict()
    assert sorted(sd) == sorted(f"features.{i}.{k}" for i in (0, 2, 5, 7) for k in ("weight", "bias"))
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(sd, path)
    return path


def test_perceptual_loss(vgg_file):
    loss = PerceptualLoss(vgg_file, LAYERS, (0.1, 1.0))
    torch.manual_seed(1)
    gt = torch.rand(2, 3, 16, 16)
    sr = gt.clone().requires_grad_(True)
    assert loss(sr, gt).item() == 0.0
    noisy = (gt + 0.1 * torch.randn_like(gt)).requires_grad_(True)
    value = loss(noisy, gt)
    assert value.item() > 0 and math.isfinite(value.item())
    value.backward()
    assert noisy.grad is not None and noisy.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in loss.parameters())
    # The weighting is linear in the layer weights.
    double = PerceptualLoss(vgg_file, LAYERS, (0.2, 2.0))
    assert double(noisy.detach(), gt).item() == pytest.approx(2 * value.item(), rel=1e-5)


def test_perceptual_loss_without_weights_stops(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.raises(TrainingError) as exc:
        PerceptualLoss(None, LAYERS, (0.1, 1.0))
    assert "VGG19 weights for the perceptual loss not found" in str(exc.value)
    assert "vgg19-dcbb9e9d.pth" in exc.value.hint and "loss.vgg_weights" in exc.value.hint
    with pytest.raises(TrainingError, match="loss.vgg_weights"):
        PerceptualLoss(tmp_path / "nope.pth", LAYERS, (0.1, 1.0))


def test_perceptual_loss_rejects_a_foreign_file(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, path)
    with pytest.raises(TrainingError, match="features.0"):
        PerceptualLoss(path, LAYERS, (0.1, 1.0))


def test_feature_matching_loss_hand_computed():
    """Mean over layers of each layer's mean |fake - real|: (0.5 + (0 + 2) / 2) / 2 = 0.75."""
    fake = [torch.full((1, 1, 2, 2), 0.5, requires_grad=True), torch.tensor([[1.0, 2.0]], requires_grad=True)]
    real = [torch.zeros(1, 1, 2, 2, requires_grad=True), torch.tensor([[1.0, 4.0]], requires_grad=True)]
    loss = feature_matching_loss(fake, real)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(0.75)
    loss.backward()
    # d/dfake: sign(fake - real) / numel / layers; real is a target (detached, no gradient)
    assert torch.allclose(fake[0].grad, torch.full((1, 1, 2, 2), 1 / 4 / 2))
    assert torch.allclose(fake[1].grad, torch.tensor([[0.0, -1 / 2 / 2]]))
    assert real[0].grad is None and real[1].grad is None
    assert feature_matching_loss([torch.ones(3)], [torch.ones(3)]).item() == 0.0
    with pytest.raises(ValueError, match="equal, non-empty"):
        feature_matching_loss([torch.ones(1)], [])
    with pytest.raises(ValueError, match="layer 0 shapes differ"):
        feature_matching_loss([torch.ones(2)], [torch.ones(3)])


def test_phase_loss_hand_computed():
    """One phase of four brighter by a: phase means (a, 0, 0, 0), minus their mean a/4:
    |3a/4| + 3 |a/4| over 4 phases = 3a/8, per channel and sample alike."""
    a = 0.2
    gt = torch.rand(2, 3, 6, 8, generator=torch.Generator().manual_seed(0))
    grid = torch.zeros(1, 1, 6, 8)
    grid[..., 0::2, 0::2] = a
    sr = (gt + grid).requires_grad_(True)
    loss = phase_loss(sr, gt, 2)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(3 * a / 8, rel=1e-5)
    loss.backward()
    # d/dm_q = sum_p sign(c_p) (delta_pq - 1/4) / (B C phases): +1.5 at (0, 0), -0.5 at the
    # others; each pixel carries 1/12 of its phase mean (12 pixels a phase)
    per = 1 / 12 / (2 * 3 * 4)
    assert torch.allclose(sr.grad[..., 0::2, 0::2], torch.full_like(sr.grad[..., 0::2, 0::2], 1.5 * per))
    assert torch.allclose(sr.grad[..., 1::2, :], torch.full_like(sr.grad[..., 1::2, :], -0.5 * per))
    # a colour shift or per-pixel error with equal phase means is not a grid
    assert phase_loss(gt + 0.3, gt, 2).item() == pytest.approx(0.0, abs=1e-7)
    cells = torch.tensor([1.0, 1.0, -1.0, -1.0]).repeat(6, 2)  # +-1 by 2x2 cell: each phase mean 0
    assert phase_loss(gt + 0.1 * cells, gt, 2).item() == pytest.approx(0.0, abs=1e-7)
    assert phase_loss(gt + 0.1 * cells, gt, 4).item() > 0.04  # ... but a grid of period 4
    # rows and columns past the last whole period are left out
    assert phase_loss(sr[..., :5, :7], gt[..., :5, :7], 2).item() == pytest.approx(3 * a / 8, rel=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        phase_loss(sr, gt[..., :4], 2)
    with pytest.raises(ValueError, match="period 8 does not fit images of 8x6"):
        phase_loss(sr, gt, 8)


def test_phase_loss_descent_removes_a_pixel_shuffle_grid():
    """Gradient descent on the phase loss alone takes a x4 grid out and leaves the rest."""
    gen = torch.Generator().manual_seed(1)
    gt = torch.rand(1, 3, 32, 32, generator=gen)
    noise = 0.05 * torch.randn(1, 3, 32, 32, generator=gen)
    grid = torch.nn.functional.pixel_shuffle(0.02 * torch.randn(1, 48, 1, 1, generator=gen).expand(1, 48, 8, 8), 4)
    sr = (gt + noise + grid).requires_grad_(True)
    start = phase_loss(sr, gt, 4).item()
    opt = torch.optim.SGD([sr], lr=0.002 * 64 * 3 * 16)  # steps of about 0.002 on a phase mean
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / 300)
    for _ in range(300):
        opt.zero_grad()
        phase_loss(sr, gt, 4).backward()
        opt.step()
        sched.step()
    assert phase_loss(sr, gt, 4).item() < 0.05 * start
    # what moved is the phase pattern: the per-pixel error without it is unchanged
    moved = (sr.detach() - (gt + noise + grid))
    means = moved.reshape(1, 3, 8, 4, 8, 4).mean((2, 4), keepdim=True)
    assert torch.allclose(moved.reshape(1, 3, 8, 4, 8, 4), means.expand(1, 3, 8, 4, 8, 4), atol=1e-6)


def test_texture_loss_hand_computed():
    """One 1x1 filter of weight 1 on one channel: each window's Gram matrix is the mean of
    relu(x)^2 over the window, and the loss the mean |difference| over windows and samples."""
    bank = [torch.ones(1, 1, 1, 1)]
    sr = torch.tensor([[1.0, 2.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 4.0]]).view(1, 1, 2, 4)
    gt = torch.zeros(1, 1, 2, 4)
    # windows 2x2: [1, 2, -1, 0] -> (1 + 4 + 0 + 0) / 4 = 1.25; [0, 0, 0, 4] -> 16 / 4 = 4
    assert texture_loss(sr, gt, bank, patch=2).item() == pytest.approx((1.25 + 4.0) / 2)
    # two banks: the mean of their losses; a column past the last whole window is left out
    sr5, gt5 = F.pad(sr, (0, 1), value=9.0), F.pad(gt, (0, 1))
    two = [torch.ones(1, 1, 1, 1), 2 * torch.ones(1, 1, 1, 1)]
    assert texture_loss(sr5, gt5, two, patch=2).item() == pytest.approx((2.625 + 4 * 2.625) / 2)
    with pytest.raises(ValueError, match="differ in shape"):
        texture_loss(sr, gt[..., :3], bank, patch=2)
    with pytest.raises(ValueError, match="at least 16x16"):
        texture_loss(sr, gt)


def test_texture_loss_rewards_texture_not_its_place():
    """A texture moved inside the windows costs little, its flat average (what L1 prefers)
    much more, and bf16 autocast does not change the value."""
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 64, 64, generator=gen)
    moved = torch.roll(gt, shifts=(3, 5), dims=(2, 3))
    flat = F.avg_pool2d(F.pad(gt, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    assert pixel_loss(flat, gt).item() < pixel_loss(moved, gt).item()  # L1 prefers the blur
    assert texture_loss(moved, gt).item() < 0.2 * texture_loss(flat, gt).item()
    assert texture_loss(gt, gt).item() == 0.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_bf16 = texture_loss(flat, gt)
    assert in_bf16.dtype == torch.float32 and in_bf16.item() == pytest.approx(texture_loss(flat, gt).item(), rel=1e-6)
    # gray images get one-channel filters; a brightness change is invisible to zero-mean filters
    assert texture_loss(moved[:, :1], gt[:, :1]).item() < 0.2 * texture_loss(flat[:, :1], gt[:, :1]).item()
    assert texture_loss(gt + 0.1, gt).item() < 1e-4 * texture_loss(flat, gt).item()


def test_random_texture_filters():
    banks = random_texture_filters((3, 5), per_size=4, in_ch=2, seed=3)
    assert [tuple(b.shape) for b in banks] == [(4, 2, 3, 3), (4, 2, 5, 5)]
    for b in banks:
        assert torch.allclose(b.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-6)
        assert torch.allclose(b.flatten(1).norm(dim=1), torch.ones(4), atol=1e-6)
    again = random_texture_filters((3, 5), per_size=4, in_ch=2, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(banks, again))
    with pytest.raises(ValueError, match="odd sizes"):
        random_texture_filters((4,))
