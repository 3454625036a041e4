"""Kubernetes resource quantities (``500m``, ``2Gi``, ``1e3``, ``4``), read as exact numbers.

The grammar is the API server's (``resource.ParseQuantity``): a signed decimal number and
one suffix, binary (``Ki`` .. ``Ei``), decimal (``n``, ``u``, ``m``, ``k``, ``M`` .. ``E``)
or a decimal exponent (``e3``, ``E-2``). Values are ``Fraction``s, so that ``1500m`` and
``1.5`` compare equal and nothing is rounded. Pure; nothing here knows a cluster.
"""

from __future__ import annotations

import re
from fractions import Fraction

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
            "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
            "P": Fraction(10**15), "E": Fraction(10**18)}
# As the API server reads it, digits may be missing on either side of the point, or
# altogether ("Gi" and "." are 0): what it accepts is accepted here, and no more.
_QUANTITY = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)")


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity."""


def parse_quantity(value: int | str) -> Fraction:
    """The exact value of a quantity; ``QuantityError`` when ``value`` is not one."""
    if isinstance(value, bool):
        raise QuantityError(f"[{value}] is not a quantity")
    if isinstance(value, int):
        return Fraction(value)
    if not isinstance(value, str):
        raise QuantityError(f"[{value}] is not a quantity")
    match = _QUANTITY.fullmatch(value) if value else None
    if match is None:
        raise QuantityError(f"[{value}] is not a quantity")
    sign, whole, fraction, suffix = match.groups()
    number = Fraction(f"{whole or 0}.{fraction or 0}") * (-1 if sign == "-" else 1)
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return number * Fraction(10) ** int(suffix[1:])
    return number * _DECIMAL[suffix]


def is_quantity(value: object) -> bool:
    try:
        parse_quantity(value)  # type: ignore[arg-type]
    except QuantityError:
        return False
    return True
