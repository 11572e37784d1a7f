"""The expression language of derived points: what it computes and what it refuses."""

from __future__ import annotations

import pytest

from gateway.expr import MAX_CHARS, ExpressionError, compile_expression
from gateway.model import Value


def value(text: str, **values: Value) -> Value:
    return compile_expression(text).evaluate(values)


@pytest.mark.parametrize(("text", "values", "expected"), [
    ("0 if oos else 2 if inspection else 3 if fire else 1",
     {"oos": False, "inspection": True, "fire": True}, 2),
    ("0 if oos else 2 if inspection else 3 if fire else 1",
     {"oos": False, "inspection": False, "fire": False}, 1),
    ("a + b * 2 - c / 4", {"a": 1, "b": 2, "c": 2}, 4.5),
    ("a // 3 + a % 3", {"a": 10}, 4),
    ("(word >> 3) & 1", {"word": 0b1000}, 1),
    ("word | 4 ^ 1", {"word": 0}, 5),
    ("~x & 0xFF", {"x": 0}, 255),
    ("bit(word, 2) and not bit(word, 0)", {"word": 0b100}, True),
    ("mode in [2, 3, 4]", {"mode": 3}, True),
    ("mode not in (2, 3)", {"mode": 3}, False),
    ("1 < t <= 5", {"t": 5}, True),
    ("1 < t <= 5", {"t": 6}, False),
    ("state == 'OPEN'", {"state": "OPEN"}, True),
    ("state == 1", {"state": "1"}, False),  # text equals text only
    ("flag == 1", {"flag": True}, True),  # as rules compare: true == 1
    ("a or b", {"a": 0, "b": 7}, True),  # and/or give true/false, not an operand
    ("a and b", {"a": 3, "b": 7}, True),
    ("max(a, b, 3) - min(a, b)", {"a": 1, "b": 2}, 2),
    ("abs(t) + round(f, 1) + round(f)", {"t": -2, "f": 2.46}, 2 + 2.5 + 2),
    ("int(s) + float('1.5')", {"s": " 7 "}, 8.5),
    ("bool(n) == true and not False", {"n": 2}, True),
    ("prefix + '-' + name", {"prefix": "E", "name": "1"}, "E-1"),
    ("1 / 0 if false else 9", {}, 9),  # only the branch taken is evaluated
    ("a +\n  b", {"a": 1, "b": 2}, 3),  # YAML block text may break lines
])
def test_evaluates(text: str, values: dict[str, Value], expected: Value) -> None:
    result = compile_expression(text).evaluate(values)
    assert result == expected and type(result) is type(expected)


def test_names_are_the_points_read_not_constants_or_functions() -> None:
    expr = compile_expression("bit(word, 1) and true or max(a, b) > False")
    assert expr.names == {"word", "a", "b"}


@pytest.mark.parametrize(("text", "message"), [
    ("__import__('os').system('id')", "attribute access (a.b) is not allowed"),
    ("__import__('os')", "calling '__import__' is not allowed"),
    ("open('/etc/passwd')", "calling 'open' is not allowed"),
    ("x.__class__", "attribute access (a.b) is not allowed"),
    ("(1).real", "attribute access"),
    ("a[0]", "indexing (a[0]) is not allowed"),
    ("a ** 2", "the power operator ** is not allowed"),
    ("(lambda: 1)()", "lambda is not allowed"),
    ("[x for x in a]", "comprehension is not allowed"),
    ("{1: 2}", "a mapping is not allowed"),
    ("f'{a}'", "an f-string is not allowed"),
    ("(y := 3)", "assignment (:=) is not allowed"),
    ("a is None", "'is' is not allowed"),
    ("None", "None is not a value"),
    ("b'x' == a", "bytes is not a value"),
    ("max", "'max' is a function: write max(...)"),
    ("max(*a)", "plain arguments only"),
    ("round(x, ndigits=2)", "plain arguments only"),
    ("bit(a)", "bit() takes 2 argument(s), got 1"),
    ("a in b", "'in' needs a list of values"),
    ("[1, 2]", "a list is not allowed here"),
    ("a + [1]", "a list is not allowed here"),
    ("a in [[1]]", "a list is not allowed here"),
    ("a = 1", "syntax error"),
    ("a +* b", "syntax error at column 4"),
    ("1 +", "syntax error at the end"),
    ("a; b", "syntax error"),
    ("import os", "syntax error"),
    ("", "expression is empty"),
    ("99999999999999999999999", "integer literal is too large"),
    ("'" + "x" * 201 + "'", "text literal is longer than 200"),
    ("a" + "+a" * 120, "too complex"),
    ("a" * (MAX_CHARS + 1), f"at most {MAX_CHARS}"),
])
def test_refuses(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(("text", "values", "message"), [
    ("a / b", {"a": 1, "b": 0}, "division by zero (/)"),
    ("a % b", {"a": 1, "b": 0}, "division by zero (%)"),
    ("s < 1", {"s": "x"}, "cannot compare 'x' < 1"),
    ("s and 1", {"s": "on"}, "text 'on' is not true or false"),
    ("s * 3", {"s": "ab"}, "needs a number, got 'ab'"),  # no text multiplication
    ("1 << n", {"n": 65}, "shifts must be 0..64"),
    ("bit(x, 1)", {"x": 2.5}, "needs an integer, got 2.5"),
    ("bit(x, 70)", {"x": 1}, "index must be 0..63"),
    ("int(s)", {"s": "seven"}, "int() cannot read 'seven'"),
    ("a * 1e308 * 10", {"a": 10.0}, "result is inf"),
    ("missing + 1", {}, "point 'missing' has no value"),
    ("s + s", {"s": "x" * 150}, "text result longer than 200"),
])
def test_evaluation_errors_say_why(text: str, values: dict[str, Value], message: str) -> None:
    expr = compile_expression(text)
    with pytest.raises(ExpressionError) as caught:
        expr.evaluate(values)
    assert message in str(caught.value)
