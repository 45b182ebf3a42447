"""Exact quotients rounded once, half-even, to a fixed number of decimals."""

from __future__ import annotations

from decimal import Decimal


def rounded_quotient(numerator: Decimal | int, denominator: Decimal | int, places: int) -> Decimal:
    """numerator / denominator rounded half-even to `places` decimals, computed exactly on
    integers (no intermediate rounding). The denominator must not be zero."""
    n_num, n_den = numerator.as_integer_ratio()
    d_num, d_den = denominator.as_integer_ratio()
    top = n_num * d_den * 10**places
    bottom = n_den * d_num
    if bottom < 0:
        top, bottom = -top, -bottom
    quotient, remainder = divmod(top, bottom)  # floor division: 0 <= remainder < bottom
    twice = 2 * remainder
    if twice > bottom or (twice == bottom and quotient % 2 == 1):
        quotient += 1
    return Decimal(quotient).scaleb(-places)
