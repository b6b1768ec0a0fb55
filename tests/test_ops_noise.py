"""Gaussian and Poisson noise (esrcli.ops.noise)."""

from __future__ import annotations

import pytest
import torch

from esrcli.ops.noise import add_gaussian_noise, add_poisson_noise, gaussian_noise, poisson_noise


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("sigma", [2.0, 10.0, 25.0])
def test_gaussian_sigma_on_flat_image(sigma):
    img = torch.full((2, 3, 128, 128), 0.5)
    out = add_gaussian_noise(img, sigma, False, _gen(), clip=True)
    measured = float((out - img).std() * 255)
    assert measured == pytest.approx(sigma, rel=0.05)
    assert abs(float((out - img).mean())) < 0.002
    assert out.dtype == torch.float32 and out.shape == img.shape


def test_gaussian_per_sample_sigma_and_gray():
    img = torch.full((3, 3, 96, 96), 0.5)
    n = gaussian_noise(img, torch.tensor([5.0, 15.0, 30.0]), torch.tensor([True, False, True]), _gen(1))
    for i, s in enumerate((5.0, 15.0, 30.0)):
        assert float(n[i].std() * 255) == pytest.approx(s, rel=0.05)
    # gray samples: the same field in every channel; colour samples: independent channels
    assert torch.equal(n[0, 0], n[0, 1]) and torch.equal(n[0, 1], n[0, 2])
    assert not torch.equal(n[1, 0], n[1, 1])
    corr = torch.corrcoef(torch.stack([n[1, 0].flatten(), n[1, 1].flatten()]))[0, 1]
    assert abs(float(corr)) < 0.05


def test_gaussian_clip_and_determinism():
    img = torch.rand(2, 3, 32, 32, generator=_gen(2))
    a = add_gaussian_noise(img, 30.0, False, _gen(7))
    b = add_gaussian_noise(img, 30.0, False, _gen(7))
    c = add_gaussian_noise(img, 30.0, False, _gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert float(add_gaussian_noise(img, 30.0, False, _gen(7), clip=False).max()) > 1


def test_poisson_variance_is_proportional_to_intensity():
    levels = torch.tensor([20.0, 60.0, 120.0, 240.0]) / 255
    img = levels.view(4, 1, 1, 1).expand(4, 3, 96, 96).contiguous()
    # one sample per intensity: each flat image has a single level -> vals = 1; use 2 levels per image instead
    img[:, :, :, :48] = 0.0  # two distinct levels per image -> vals = 2 ** ceil(log2(2)) = 2
    noise = poisson_noise(img, 1.0, False, _gen(3))
    var = torch.stack([noise[i, :, :, 48:].var() for i in range(4)])
    # Poisson: Var[count / vals] = level / vals -> variance / level is constant (= 1 / vals)
    ratio = var / levels
    assert torch.allclose(ratio, torch.full_like(ratio, 0.5), rtol=0.08)
    assert float(noise[:, :, :, :48].abs().max()) == 0.0  # zero intensity, zero shot noise
    # scale multiplies the noise
    n2 = poisson_noise(img, 2.0, False, _gen(3))
    torch.testing.assert_close(n2, 2 * noise)


def test_poisson_uses_256_counts_for_natural_images_and_gray_is_shared():
    img = torch.rand(2, 3, 64, 64, generator=_gen(4))
    n = poisson_noise(img, 1.0, torch.tensor([True, False]), _gen(5))
    assert torch.equal(n[0, 0], n[0, 1]) and not torch.equal(n[1, 0], n[1, 1])
    # ~256 levels -> vals 256: the noise variance at level L is about L/256
    v = float(n[1].var())
    expected = float((img[1] * 255).round().mean() / 255 / 256)
    assert v == pytest.approx(expected, rel=0.1)
    out = add_poisson_noise(img, 3.0, False, _gen(5))
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_noise_errors():
    with pytest.raises(ValueError):
        gaussian_noise(torch.rand(3, 8, 8), 1.0)
    with pytest.raises(ValueError):
        gaussian_noise(torch.rand(2, 3, 8, 8), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError):
        poisson_noise(torch.rand(1, 1, 8, 8), 1.0, True)
