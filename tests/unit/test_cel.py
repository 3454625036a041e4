"""CEL evaluated offline as the API server evaluates it: Kubernetes quantities, and the
functions of Kubernetes' CEL libraries that the project's rules use, with their meaning
in cel-go and the API server."""

from __future__ import annotations

from fractions import Fraction

import celpy
import pytest

from kubeinfer.cel import evaluate
from kubeinfer.quantity import QuantityError, parse_quantity


@pytest.mark.parametrize("text, value", [
    ("1", 1), (4, 4), ("500m", Fraction(1, 2)), ("1.5", Fraction(3, 2)), ("2Gi", 2 * 2**30), ("10Ti", 10 * 2**40),
    ("1k", 1000), ("1M", 10**6), ("1E", 10**18), ("1e3", 1000), ("1E3", 1000), ("5e-1", Fraction(1, 2)),
    (".5", Fraction(1, 2)), ("1.", 1), ("+2", 2), ("-1", -1), ("100n", Fraction(1, 10**7)), ("3u", Fraction(3, 10**6)),
    ("1e+3", 1000), ("1.G", 10**9),
    # The API server reads a missing number as 0.
    ("Gi", 0), (".", 0), ("+", 0), ("m", 0), ("e3", 0),
])
def test_quantities_read_as_the_api_server_reads_them(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1 Gi", "1GB", "1gi", "--1", "1.2.3", "K", "1K", "1e", "0x1", "1_000",
                                  " 1", "1Gi ", "\u0661", True, 1.5, None])
def test_what_is_not_a_quantity_is_refused(text):
    with pytest.raises(QuantityError):
        parse_quantity(text)


def test_quantity_functions_compare_by_value():
    assert evaluate("quantity('1Gi').compareTo(quantity('1024Mi'))") == 0
    assert evaluate("quantity('1500m').compareTo(quantity('1'))") == 1
    assert evaluate("quantity(string(n)).isGreaterThan(quantity('32'))", n=1000)
    assert evaluate("quantity('500m').isLessThan(quantity('1'))")
    assert evaluate("isQuantity('10Ti') && !isQuantity('ten')")
    with pytest.raises(celpy.CELEvalError):
        evaluate("quantity('ten')")


def test_string_functions_behave_as_cel_gos():
    assert evaluate("'a\\nb\\n'.split('\\n')") == ["a", "b", ""]
    assert evaluate("''.split(',')") == [""]
    assert evaluate("'Https_Proxy'.lowerAscii()") == "https_proxy"
    assert evaluate("'ÀB'.lowerAscii()") == "Àb"  # ASCII letters only
