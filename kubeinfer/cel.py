"""CEL as the Kubernetes API server evaluates it, offline: cel-python with the parts of
Kubernetes' CEL libraries that this project's rules use.

kube-apiserver evaluates CRD rules and ValidatingAdmissionPolicies with cel-go, its
``strings`` extension and libraries of its own. cel-python has the standard functions
only; the few others used here are given with Kubernetes' meaning:

- strings: ``lowerAscii()``, ``split(separator)``;
- quantity: ``quantity(s)``, ``isQuantity(s)``, ``q.compareTo(q)``, ``q.isGreaterThan(q)``,
  ``q.isLessThan(q)``.

``evaluate`` runs one expression with the variables given (``self`` and ``oldSelf`` for a
CRD rule; ``object``, ``params``, ``variables``... for an admission policy). Nothing
here knows kubeinfer's own rules.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes

from .quantity import QuantityError, is_quantity, parse_quantity

CELEvalError = celpy.CELEvalError


class Quantity:
    """A value of Kubernetes' CEL ``Quantity`` type."""

    __slots__ = ("value", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.value: Fraction = parse_quantity(text)

    def __repr__(self) -> str:
        return f"quantity({self.text!r})"


def _quantity(text: Any) -> Any:
    if not isinstance(text, str):
        return CELEvalError("quantity() takes a string", TypeError, None)
    try:
        return Quantity(text)
    except QuantityError as exc:
        return CELEvalError(f"quantity: {exc}", ValueError, None)


def _compare(left: Any, right: Any) -> Any:
    if not isinstance(left, Quantity) or not isinstance(right, Quantity):
        return CELEvalError("compareTo() takes two quantities", TypeError, None)
    return celtypes.IntType((left.value > right.value) - (left.value < right.value))


def _split(text: Any, separator: Any) -> Any:
    if not isinstance(text, str) or not isinstance(separator, str):
        return CELEvalError("split() takes strings", TypeError, None)
    # Go's strings.Split, which cel-go calls: an empty separator splits into characters.
    parts = list(text) if separator == "" else text.split(separator)
    return celtypes.ListType(celtypes.StringType(part) for part in parts)


def _lower_ascii(text: Any) -> Any:
    if not isinstance(text, str):
        return CELEvalError("lowerAscii() takes a string", TypeError, None)
    return celtypes.StringType("".join(c.lower() if c.isascii() else c for c in text))


KUBERNETES_FUNCTIONS = {
    "lowerAscii": _lower_ascii,
    "split": _split,
    "quantity": _quantity,
    "isQuantity": lambda text: celtypes.BoolType(isinstance(text, str) and is_quantity(text)),
    "compareTo": _compare,
    "isGreaterThan": lambda a, b: _bool(_compare(a, b), 1),
    "isLessThan": lambda a, b: _bool(_compare(a, b), -1),
}


def _bool(compared: Any, wanted: int) -> Any:
    return compared if isinstance(compared, CELEvalError) else celtypes.BoolType(compared == wanted)


_ENV = celpy.Environment()


@lru_cache(maxsize=None)
def program(expression: str) -> celpy.Runner:
    """The compiled expression; ``celpy.CELParseError`` when it does not parse."""
    return _ENV.program(_ENV.compile(expression), functions=KUBERNETES_FUNCTIONS)


def to_cel(value: Any) -> Any:
    """A JSON-like value as CEL's; a value that already is one is kept as it is."""
    if type(value).__module__ == celtypes.__name__ or isinstance(value, Quantity):
        return value
    return celpy.json_to_cel(value)


def evaluate(expression: str, **variables: Any) -> Any:
    """The value of ``expression`` with ``variables`` bound (JSON-like or CEL values), as a
    CEL value; a ``CELEvalError`` is returned or raised when it cannot be evaluated."""
    return program(expression).evaluate({name: to_cel(value) for name, value in variables.items()})
