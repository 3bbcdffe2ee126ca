"""PSNR, MS-SSIM, bpp, ratio, PCHIP and BD-rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import gradient
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from aecompress.metrics import bd_rate, bpp, ms_ssim, pchip, psnr, ratio

# ---------------------------------------------------------------- PSNR, bpp, ratio


def test_psnr_of_identical_images_is_inf():
    a = gradient()
    assert psnr(a, a.copy()) == math.inf


def test_psnr_of_a_known_mse():
    a = np.full((10, 20, 3), 100, np.uint8)
    b = a.copy()
    b[:, :10] += 2  # half the values off by 2: MSE = 2
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 2), abs=1e-12)
    assert psnr(b, a) == psnr(a, b)


def test_psnr_has_no_uint8_wraparound():
    a = np.zeros((4, 4, 1), np.uint8)
    b = np.full((4, 4, 1), 255, np.uint8)
    assert psnr(a, b) == pytest.approx(0.0, abs=1e-12)  # MSE = 255²


def test_psnr_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 1), np.uint8))


def test_bpp_and_ratio():
    assert bpp(1000, 100, 80) == pytest.approx(1.0)
    assert ratio(3000, 1000) == 3.0
    assert ratio(3000, 0) == math.inf


# ---------------------------------------------------------------- MS-SSIM


@pytest.mark.parametrize("size", [(256, 256), (200, 300), (64, 64), (12, 40), (8, 8)])
def test_ms_ssim_of_identical_images_is_one(size):
    a = gradient(size[1], size[0], noise=20)
    assert ms_ssim(a, a.copy()) == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_grayscale_and_range():
    a = gradient(256, 256, channels=1, noise=20)[:, :, None]
    rng = np.random.default_rng(0)
    b = np.clip(a.astype(np.int64) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    c = np.clip(a.astype(np.int64) + rng.integers(-5, 6, a.shape), 0, 255).astype(np.uint8)
    noisy, mild = ms_ssim(a, b), ms_ssim(a, c)
    assert 0.0 <= noisy < mild < 1.0  # more noise, lower score


def test_ms_ssim_of_images_too_small_for_one_scale():
    a = gradient(8, 8)
    assert ms_ssim(a, a.copy()) == 1.0


# ---------------------------------------------------------------- PCHIP against SciPy


@pytest.fixture(scope="module")
def scipy_pchip():
    return pytest.importorskip("scipy.interpolate").PchipInterpolator


def _check_pchip(interpolator, x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    at = np.concatenate([np.linspace(x[0], x[-1], 501), x, [x[0] - 0.5, x[-1] + 0.5]])
    expected = interpolator(x, y, extrapolate=True)(at)
    np.testing.assert_allclose(pchip(x, y, at), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([0, 1], [2, 5]),
        ([0, 1, 2], [0, 1, 0]),
        ([28, 30, 33, 35, 38], [-2.0, -1.3, -0.4, 0.1, 0.9]),  # an RD curve: log rate over PSNR
        ([0, 1, 2, 3, 4, 5], [0, 0, 1, 1, 0, 0]),  # flat parts and extrema
        ([0, 0.1, 5, 5.2, 9], [1, -3, 2, 2.5, -1]),  # uneven spacing, sign changes
        ([1, 2, 3, 4], [1, 8, 27, 64]),
    ],
)
def test_pchip_matches_scipy(scipy_pchip, x, y):
    _check_pchip(scipy_pchip, x, y)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.01, 10.0), min_size=1, max_size=10),
    st.lists(st.floats(-100, 100), min_size=11, max_size=11),
)
def test_pchip_matches_scipy_on_random_data(scipy_pchip, gaps, ys):
    x = np.cumsum([0.0, *gaps])
    _check_pchip(scipy_pchip, x, ys[: len(x)])


# ---------------------------------------------------------------- BD-rate

ANCHOR = [(0.1, 27.0), (0.2, 30.1), (0.4, 33.2), (0.8, 36.0), (1.6, 38.5)]


def test_bd_rate_of_a_curve_against_itself_is_zero():
    assert bd_rate(ANCHOR, ANCHOR) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("factor", "expected"), [(0.8, -20.0), (1.25, 25.0), (0.5, -50.0)])
def test_bd_rate_of_scaled_rates(factor, expected):
    test = [(r * factor, q) for r, q in ANCHOR]
    assert bd_rate(ANCHOR, test) == pytest.approx(expected, abs=1e-6)


def test_bd_rate_ignores_point_order():
    test = [(r * 0.8, q) for r, q in ANCHOR]
    assert bd_rate(ANCHOR[::-1], test[::-1]) == pytest.approx(-20.0, abs=1e-6)


def test_bd_rate_without_overlap_is_nan():
    high = [(r, q + 20) for r, q in ANCHOR]
    assert math.isnan(bd_rate(ANCHOR, high))
    assert math.isnan(bd_rate(ANCHOR, ANCHOR[:1]))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(0.05, 1.0), min_size=3, max_size=8),
    st.lists(st.floats(0.2, 3.0), min_size=8, max_size=8),
    st.floats(0.3, 3.0),
)
def test_bd_rate_of_any_scaled_curve(rate_steps, psnr_steps, factor):
    rates = np.exp(np.cumsum(rate_steps)) * 0.05
    psnrs = 25 + np.cumsum(psnr_steps[: len(rates)])
    anchor = list(zip(rates.tolist(), psnrs.tolist(), strict=True))
    assume(len(set(psnrs.tolist())) == len(psnrs))
    test = [(r * factor, q) for r, q in anchor]
    assert bd_rate(anchor, test) == pytest.approx((factor - 1) * 100, rel=1e-6, abs=1e-6)
