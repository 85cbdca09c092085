"""Servo joint calibration across the 12-bit encoder wrap (hardware/calibration.py)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_learning.errors import ConfigError
from robot_learning.hardware.calibration import (JointCalibration, calibrate_joint, unwrap_ticks,
                                                  wrap_centered)

RES = 4096


def sweep(home, lo, hi, n=400):
    """Raw readings of a joint moved home -> lo -> hi -> home (relative ticks lo <= 0 <= hi)."""
    rel = np.concatenate([np.linspace(0, lo, n // 4), np.linspace(lo, hi, n // 2), np.linspace(hi, 0, n // 4)])
    return (home + np.round(rel).astype(np.int64)) % RES


def test_a_range_straddling_the_wrap_is_not_a_full_turn():
    # home at raw 4000, range -300..+500 ticks: the raw readings run 3700..4095 then 0..404
    raw = sweep(4000, -300, 500)
    assert raw.max() - raw.min() > RES - 20                   # min/max of raw readings: almost a full turn
    cal = calibrate_joint("shoulder_pan", 4000, raw)
    assert (cal.range_min, cal.range_max) == (-300, 500)
    lo, hi = cal.range_rad
    assert lo == pytest.approx(-300 * 2 * math.pi / RES) and hi == pytest.approx(500 * 2 * math.pi / RES)
    # readings either side of the wrap map continuously
    assert cal.raw_to_rad(RES - 1) == pytest.approx(95 * 2 * math.pi / RES)
    assert cal.raw_to_rad(0) == pytest.approx(96 * 2 * math.pi / RES)
    assert cal.raw_to_rad(3700) == pytest.approx(-300 * 2 * math.pi / RES)
    # the homing offset puts the range's middle at mid-scale: the servo's readings never wrap
    off = cal.servo_homing_offset()
    reported = (raw - off) % RES
    assert reported.max() - reported.min() == 800
    assert abs((reported.max() + reported.min()) / 2 - RES / 2) <= 1


@settings(max_examples=300, deadline=None)
@given(home=st.integers(0, RES - 1), lo=st.integers(-2000, 0), span=st.integers(1, 4000),
       direction=st.sampled_from([1, -1]))
def test_round_trip_over_any_range(home, lo, span, direction):
    hi = lo + span
    if hi < 0:
        lo, hi = -span // 2, span - span // 2
    cal = calibrate_joint("j", home, sweep(home, lo, hi), direction=direction)
    assert (cal.range_min, cal.range_max) == (lo, hi)
    rel = np.arange(lo, hi + 1, max(1, span // 50))
    raw = (home + rel) % RES
    rad = cal.raw_to_rad(raw)
    np.testing.assert_allclose(rad, direction * rel * 2 * math.pi / RES, atol=1e-9)
    np.testing.assert_array_equal(cal.rad_to_raw(rad), raw)
    # goals beyond the range are clipped to it
    assert cal.rad_to_raw(10.0) in ((home + hi) % RES, (home + lo) % RES)


def test_unwrap_and_errors():
    np.testing.assert_array_equal(unwrap_ticks(np.array([4090, 4095, 3, 10])), [4090, 4095, 4099, 4106])
    np.testing.assert_array_equal(wrap_centered(np.array([2048, -2049, 5]), RES), [-2048, 2047, 5])
    with pytest.raises(ConfigError, match="0..4095"):
        unwrap_ticks(np.array([0, 5000]))
    with pytest.raises(ConfigError, match="full turn"):
        calibrate_joint("wrist_roll", 0, np.arange(0, 2 * RES, 100) % RES)     # a joint that spins freely
    with pytest.raises(ConfigError, match="direction"):
        JointCalibration("j", 0, -1, 1, direction=2)


@settings(max_examples=300, deadline=None)
@given(home=st.integers(0, RES - 1), lo=st.integers(-RES + 2, 0), width=st.integers(1, RES - 1),
       max_offset=st.sampled_from([2047, 1024]))
def test_chosen_homing_offset_keeps_the_range_off_the_wrap_or_says_it_cannot(home, lo, width, max_offset):
    """Whatever the range (up to a full turn less a tick) and the servo's offset limit (Feetech 2047, Dynamixel X
    1024): the offset fits the servo and every reported reading of the range lies in 0..4095 without wrapping,
    or ConfigError says no offset can; it is never wrong silently."""
    hi = lo + width
    if hi < 0:
        lo, hi = lo - hi, 0
    cal = JointCalibration("j", home, min(lo, 0), max(hi, 0))
    try:
        off = cal.servo_homing_offset(max_offset)
    except ConfigError:
        rep = (home - np.arange(-max_offset, max_offset + 1)) % RES
        assert not np.any((rep + cal.range_min >= 0) & (rep + cal.range_max <= RES - 1))
        return
    assert -max_offset <= off <= max_offset
    rep_home = (home - off) % RES
    assert rep_home + cal.range_min >= 0 and rep_home + cal.range_max <= RES - 1
