"""
Number validators shared by the pure logic: return the value as ``float`` / ``int`` or raise.

One definition for every module of ``core`` (link estimation, the optimizer, ...): the error is a
``ValueError`` that names the parameter and shows the bad value, as nav2's and rclpy's parameter
checks do. ``bool`` is refused everywhere (``True`` is an ``int`` in Python, never a rate);
numpy scalars are accepted (they register as ``numbers.Real`` / ``numbers.Integral``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def as_number(name: str, value: Any) -> float:
    """Return ``value`` as float; raise ValueError unless it is a real number (inf, nan pass)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f'{name} must be a number, got {value!r}')
    return float(value)


def as_finite(name: str, value: Any) -> float:
    """Return ``value`` as float; raise ValueError unless it is a finite number."""
    v = as_number(name, value)
    if not math.isfinite(v):
        raise ValueError(f'{name} must be finite, got {value!r}')
    return v


def as_positive(name: str, value: Any) -> float:
    """Return ``value`` as float; raise ValueError unless it is finite and > 0."""
    v = as_finite(name, value)
    if v <= 0.0:
        raise ValueError(f'{name} must be > 0, got {value!r}')
    return v


def as_nonneg(name: str, value: Any) -> float:
    """Return ``value`` as float; raise ValueError unless it is finite and >= 0."""
    v = as_finite(name, value)
    if v < 0.0:
        raise ValueError(f'{name} must be >= 0, got {value!r}')
    return v


def as_count(name: str, value: Any, lo: int = 0) -> int:
    """Return ``value`` as int; raise ValueError unless it is an integer >= ``lo``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f'{name} must be an integer >= {lo}, got {value!r}')
    return int(value)
