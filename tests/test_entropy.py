"""Entropy coding: integer tables, the range coder with escapes, varints, zigzag."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aecompress.density import FactorizedDensity, build_tables
from aecompress.entropy import (
    MAX_SUPPORT,
    PRECISION,
    FormatError,
    SymbolCoder,
    Tables,
    quantize_pmf,
    read_varint,
    unzigzag,
    write_varint,
    zigzag,
)

CHANNELS = 4


@functools.cache
def density() -> FactorizedDensity:
    torch.manual_seed(0)
    return FactorizedDensity(CHANNELS)


@functools.cache
def tables() -> Tables:
    return build_tables(density())


@functools.cache
def coder() -> SymbolCoder:
    return SymbolCoder(tables(), np.arange(CHANNELS))


def sample_symbols(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Values drawn from each channel's own table (the escape symbol excluded)."""
    t = tables()
    out = np.empty((CHANNELS, *shape), np.int64)
    for c in range(CHANNELS):
        f = t.freqs[c, : t.lengths[c]].astype(np.float64)
        out[c] = rng.choice(t.lengths[c], size=shape, p=f / f.sum()) + t.offsets[c]
    return out


def table_bits(values: np.ndarray) -> float:
    """−Σ log₂ of the table probabilities of in-support values."""
    t = tables()
    bits = 0.0
    for c in range(CHANNELS):
        p = t.freqs[c, : t.lengths[c]].astype(np.float64) / (1 << PRECISION)
        bits -= np.log2(p[values[c].reshape(-1) - t.offsets[c]]).sum()
    return bits


# ---------------------------------------------------------------- tables


def test_built_tables_are_valid_and_normalized():
    t = tables()
    t.validate()
    assert t.freqs.dtype == np.int32 and t.offsets.dtype == np.int32 and t.lengths.dtype == np.int32
    for c in range(CHANNELS):
        row = t.freqs[c, : t.lengths[c] + 1]
        assert int(row.sum()) == 1 << PRECISION
        assert row.min() >= 1
        assert 1 <= t.lengths[c] <= MAX_SUPPORT
        # the table's support covers the density's bulk: zero is inside it
        assert t.offsets[c] <= 0 < t.offsets[c] + t.lengths[c]


def test_tables_survive_tensor_round_trip():
    t = tables()
    back = Tables.from_tensors(t.tensors())
    np.testing.assert_array_equal(back.freqs, t.freqs)
    np.testing.assert_array_equal(back.offsets, t.offsets)
    np.testing.assert_array_equal(back.lengths, t.lengths)


def _broken(kind: str) -> Tables:
    t = tables()
    freqs, offsets, lengths = t.freqs.copy(), t.offsets.copy(), t.lengths.copy()
    if kind == "sum too large":
        freqs[1, 0] += 1
    elif kind == "sum too small":
        freqs[2, int(np.argmax(freqs[2]))] -= 1
    elif kind == "zero frequency":
        k = int(np.argmax(freqs[0]))
        freqs[0, k] += freqs[0, 3]
        freqs[0, 3] = 0  # still sums to 2**16
    elif kind == "negative frequency":
        freqs[3, 0] = -freqs[3, 1]
        freqs[3, 1] *= 2
    elif kind == "escape missing":
        lengths[0] = freqs.shape[1]  # length + 1 columns needed
    elif kind == "zero length":
        lengths[1] = 0
    elif kind == "offsets shape":
        offsets = offsets[:-1]
    elif kind == "lengths shape":
        lengths = np.append(lengths, 5).astype(np.int32)
    return Tables(freqs, offsets, lengths)


@pytest.mark.parametrize(
    "kind",
    [
        "sum too large",
        "sum too small",
        "zero frequency",
        "negative frequency",
        "escape missing",
        "zero length",
        "offsets shape",
        "lengths shape",
    ],
)
def test_validate_rejects_broken_tables(kind):
    broken = _broken(kind)
    with pytest.raises(FormatError) as info:
        broken.validate()
    assert "\n" not in str(info.value)
    with pytest.raises(FormatError):
        Tables.from_tensors(broken.tensors())


# ---------------------------------------------------------------- quantize_pmf

pmfs = st.lists(
    st.one_of(st.floats(0.0, 1.0), st.floats(0.0, 1e6), st.just(0.0), st.floats(0.0, 1e-300)),
    min_size=1,
    max_size=MAX_SUPPORT + 1,
)


@settings(max_examples=300, deadline=None)
@given(pmfs)
def test_quantize_pmf_sums_to_precision_and_keeps_every_symbol(values):
    freqs = quantize_pmf(np.array(values, dtype=np.float64))
    assert freqs.shape == (len(values),)
    assert freqs.dtype == np.int32
    assert int(freqs.sum()) == 1 << PRECISION
    assert int(freqs.min()) >= 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(1e-6, 1.0), min_size=2, max_size=300))
def test_quantize_pmf_is_close_to_the_probabilities(values):
    pmf = np.array(values) / np.sum(values)
    freqs = quantize_pmf(pmf).astype(np.int64)
    # each frequency is within n + 1 counts of its exact share (floor, +1, the remainder on the argmax)
    exact = pmf * (1 << PRECISION)
    assert np.all(np.abs(freqs - exact) <= len(values) + 1)


def test_quantize_pmf_of_all_zeros_is_uniform():
    freqs = quantize_pmf(np.zeros(4))
    assert freqs.tolist() == [16384] * 4


# ---------------------------------------------------------------- varint and zigzag


@given(st.integers(0, 2**70 - 1))
def test_varint_round_trip(n):
    encoded = write_varint(n)
    assert len(encoded) == max(1, math.ceil(n.bit_length() / 7))
    assert read_varint(encoded, 0) == (n, len(encoded))
    # read from an offset, followed by other data
    assert read_varint(b"\x07" + encoded + b"\xff", 1) == (n, 1 + len(encoded))


@given(st.lists(st.integers(0, 2**64), min_size=1, max_size=20))
def test_varints_concatenate(numbers):
    data = b"".join(write_varint(n) for n in numbers)
    pos, out = 0, []
    while pos < len(data):
        n, pos = read_varint(data, pos)
        out.append(n)
    assert out == numbers


@given(st.integers(0, 2**70 - 1))
def test_truncated_varint_is_an_error(n):
    encoded = write_varint(n)
    for cut in range(len(encoded)):
        with pytest.raises(FormatError):
            read_varint(encoded[:cut], 0)


def test_over_long_varint_is_an_error():
    with pytest.raises(FormatError, match="over-long"):
        read_varint(b"\x80" * 10 + b"\x01", 0)
    with pytest.raises(FormatError):
        read_varint(b"\xff" * 11, 0)


@given(st.integers(-(2**64), 2**64))
def test_zigzag_round_trip(v):
    u = zigzag(v)
    assert u >= 0
    assert u in (2 * abs(v), 2 * abs(v) - 1)  # small magnitudes stay small
    assert unzigzag(u) == v


def test_zigzag_order():
    assert [zigzag(v) for v in (0, -1, 1, -2, 2, -3)] == [0, 1, 2, 3, 4, 5]


# ---------------------------------------------------------------- the range coder


def test_round_trip_in_support():
    rng = np.random.default_rng(1)
    values = sample_symbols(rng, (24, 40))
    payload = coder().encode(values)
    out = coder().decode(payload, values.shape)
    assert np.issubdtype(out.dtype, np.integer)
    np.testing.assert_array_equal(out, values)


# Far outside any table, yet within 32 bits (a latent of float32 rounded).
EXTREMES = [10**6, -(10**6), 10**9, -(10**9), 2**31 - 1, -(2**31)]
BEYOND_INT32 = [2**31, -(2**31) - 1, 2**40, -(2**40), 2**62, -(2**62)]


def test_round_trip_with_escapes_far_outside_the_tables():
    rng = np.random.default_rng(2)
    values = sample_symbols(rng, (16, 16))
    t = tables()
    flat = values.reshape(CHANNELS, -1)
    spots = rng.choice(flat.shape[1], size=(CHANNELS, len(EXTREMES) + 2), replace=False)
    for c in range(CHANNELS):
        for k, v in enumerate(EXTREMES):
            flat[c, spots[c, k]] = v
        # just outside each end of the table's support
        flat[c, spots[c, -2]] = t.offsets[c] - 1
        flat[c, spots[c, -1]] = t.offsets[c] + t.lengths[c]
    payload = coder().encode(values)
    np.testing.assert_array_equal(coder().decode(payload, values.shape), values)
    # the escaped values are really stored (never clipped): the payload ends with their zigzag varints
    assert payload.endswith(write_varint(zigzag(int(flat[-1][np.sort(spots[-1])][-1]))))


def test_all_symbols_escaped():
    values = np.full((CHANNELS, 3, 5), -(10**6), np.int64)
    values[1] = 10**6
    payload = coder().encode(values)
    np.testing.assert_array_equal(coder().decode(payload, values.shape), values)


symbol_values = st.one_of(st.integers(-40, 40), st.integers(-(2**31), 2**31 - 1), st.sampled_from(EXTREMES))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.lists(symbol_values, min_size=CHANNELS * n, max_size=CHANNELS * n))))
def test_round_trip_any_integers(case):
    n, flat = case
    values = np.array(flat, dtype=np.int64).reshape(CHANNELS, 1, n)
    payload = coder().encode(values)
    np.testing.assert_array_equal(coder().decode(payload, values.shape), values)


@pytest.mark.parametrize("value", BEYOND_INT32)
def test_encoder_never_writes_a_payload_its_decoder_refuses(value):
    """Either the value is refused when encoding, or it comes back exactly: never a file that cannot be read."""
    values = np.zeros((CHANNELS, 2, 2), np.int64)
    values[2, 1, 0] = value
    try:
        payload = coder().encode(values)
    except (ValueError, OverflowError):
        return  # refused up front: fine
    np.testing.assert_array_equal(coder().decode(payload, values.shape), values)


def test_subset_of_channels_uses_their_own_tables():
    rng = np.random.default_rng(3)
    sub = SymbolCoder(tables(), np.array([2, 3]))
    values = sample_symbols(rng, (8, 8))[2:]
    np.testing.assert_array_equal(sub.decode(sub.encode(values), values.shape), values)


def test_decode_rejects_trailing_and_missing_bytes():
    rng = np.random.default_rng(4)
    values = sample_symbols(rng, (6, 6))
    values[0, 0, 0] = 10**6  # one escape at the end of the payload
    payload = coder().encode(values)
    with pytest.raises(FormatError):
        coder().decode(payload + b"\x00", values.shape)
    for cut in range(len(payload)):
        with pytest.raises(FormatError):
            coder().decode(payload[:cut], values.shape)


def test_payload_size_matches_the_tables_entropy():
    rng = np.random.default_rng(5)
    values = sample_symbols(rng, (100, 100))
    payload = coder().encode(values)
    ideal = table_bits(values)
    real = 8 * len(payload)
    assert ideal > 10_000
    assert real >= ideal * 0.999 - 64  # a range coder cannot beat the entropy of its model
    assert real <= ideal * 1.01 + 128  # …and wastes little: < 1% plus the stream's last words


def test_payload_size_matches_the_continuous_density_estimate():
    rng = np.random.default_rng(6)
    values = sample_symbols(rng, (100, 100))
    with torch.no_grad():
        y = torch.from_numpy(values).double()[None]
        index = torch.arange(CHANNELS)[None]
        estimate = float(-torch.log2(density().likelihood(y.float(), index)).sum())
    real = 8 * len(coder().encode(values))
    assert abs(real - estimate) <= 0.02 * estimate
