"""Unit tests of edgent_ros.core.validate: the number checks every core module shares."""

import math

import numpy as np
import pytest

from edgent_ros.core.validate import as_count, as_finite, as_nonneg, as_number, as_positive


def test_numbers_pass_as_float():
    assert as_number('x', 3) == 3.0 and isinstance(as_number('x', 3), float)
    assert as_number('x', np.float32(0.5)) == 0.5
    assert as_number('x', np.int64(2)) == 2.0
    assert math.isinf(as_number('x', math.inf))
    assert as_finite('x', -1.5) == -1.5
    assert as_positive('x', 1e-9) == 1e-9
    assert as_nonneg('x', 0) == 0.0
    assert as_count('n', np.int32(3), 1) == 3 and isinstance(as_count('n', 3), int)


@pytest.mark.parametrize('check, value, match', [
    (as_number, True, 'x must be a number, got True'),
    (as_number, '1', "x must be a number, got '1'"),
    (as_number, None, 'x must be a number'),
    (as_finite, math.nan, 'x must be finite, got nan'),
    (as_finite, -math.inf, 'x must be finite'),
    (as_positive, 0.0, r'x must be > 0, got 0.0'),
    (as_positive, math.inf, 'x must be finite'),
    (as_nonneg, -1e-12, r'x must be >= 0'),
    (as_nonneg, math.nan, 'x must be finite'),
])
def test_bad_values_are_named(check, value, match):
    with pytest.raises(ValueError, match=match):
        check('x', value)


@pytest.mark.parametrize('value', [True, 1.0, -1, '2', np.float64(2.0)])
def test_count_wants_an_integer_at_least_lo(value):
    with pytest.raises(ValueError, match=r'n must be an integer >= 0'):
        as_count('n', value)


def test_link_and_optimizer_share_the_validators():
    from edgent_ros.core import link, optimizer
    assert link.as_positive is as_positive and optimizer.as_nonneg is as_nonneg
