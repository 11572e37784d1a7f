"""A small, safe expression language for derived points: ``2 if inspection else 1``.

The text is parsed with Python's own parser (``ast.parse(mode="eval")``) and then checked
against a whitelist before anything runs; it is never given to ``eval``. What is allowed:

* literals: numbers, quoted text, ``true``/``false`` (also ``True``/``False``);
* names: the device's points (every name is known before evaluation, so a typo is a config
  error, not a run-time surprise);
* arithmetic ``+ - * / // %``, bitwise ``& | ^ ~ << >>`` (integers only, shifts 0..64);
* comparisons ``== != < <= > >=`` (chained too) and ``in`` / ``not in`` a list of values;
* ``and``, ``or``, ``not`` (their result is true or false), ``A if CONDITION else B``;
* the functions ``abs``, ``min``, ``max``, ``round``, ``int``, ``float``, ``bool`` and
  ``bit(value, n)`` (bit ``n`` of an integer, 0 = least significant, as true/false).

No attribute access, subscripts, other calls, lambdas, comprehensions, ``**``, assignments or
imports: the parsed tree is rejected if it contains any node outside the whitelist. Size is
bounded (:data:`MAX_CHARS` characters, :data:`MAX_NODES` nodes, text values of at most
:data:`MAX_TEXT` characters), so evaluation time and memory are bounded too.

A failure while evaluating (a division by zero, text compared with a number, a result that is
not finite) raises :class:`ExpressionError`; the caller turns it into a BAD reading.

Why our own walker rather than a library: the whole language is the ~25 node types listed
above, the names must be known at load time (unknown points and cycles between derived points
are config errors), and every error must read as a config message. A general-purpose
evaluator would need the same whitelist and name walk on top of it, plus a new dependency on
every Raspberry Pi.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.model import Value

__all__ = ["CONSTANTS", "FUNCTIONS", "MAX_CHARS", "MAX_NODES", "MAX_TEXT", "Expression",
           "ExpressionError", "compile_expression"]

#: Longest expression text accepted.
MAX_CHARS = 500
#: Most syntax-tree nodes accepted (``a + 1`` has 4: the expression, the operation, two operands).
MAX_NODES = 200
#: Longest text literal, and longest text a result may have.
MAX_TEXT = 200
#: Names that are literals, not points.
CONSTANTS: dict[str, bool] = {"true": True, "false": False, "True": True, "False": False}
_MAX_SHIFT = 64

Number = int | float


class ExpressionError(ValueError):
    """The text is not an allowed expression, or evaluating it failed."""


@dataclass(frozen=True, slots=True, eq=False)
class Expression:
    """A checked expression, ready to evaluate.

    Attributes:
        text: What the config says.
        names: The point names it reads.
    """

    text: str
    names: frozenset[str]
    _tree: ast.expr

    def evaluate(self, values: Mapping[str, Value]) -> Value:
        """The expression's value with ``values`` for its names.

        Args:
            values: A value for every name in :attr:`names` (``None`` is not a value).

        Raises:
            ExpressionError: A name has no value, or evaluating failed (division by zero,
                text compared with a number, ...).
        """
        result = _Evaluator(values).eval(self._tree)
        return _checked_result(result)


def compile_expression(text: str) -> Expression:
    """Parse and check ``text``.

    Raises:
        ExpressionError: Too long, a syntax error (with its column), or something outside the
            language (with what it was).
    """
    if len(text) > MAX_CHARS:
        raise ExpressionError(f"expression is {len(text)} characters long; at most "
                              f"{MAX_CHARS} are allowed")
    if not text.strip():
        raise ExpressionError("expression is empty")
    try:
        # In parentheses, so that an expression folded over several YAML lines parses.
        tree = ast.parse(f"({text}\n)", mode="eval")
    except SyntaxError as exc:
        lines = text.count("\n") + 1
        if exc.lineno is not None and exc.lineno > lines:
            where = " at the end"
        elif exc.lineno == 1 and exc.offset and exc.offset > 1:
            where = f" at column {exc.offset - 1}"
        else:
            where = f" on line {exc.lineno}" if exc.lineno and lines > 1 else ""
        raise ExpressionError(f"syntax error{where}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
        raise ExpressionError(f"cannot be parsed: {type(exc).__name__}") from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise ExpressionError(f"expression is too complex ({count} parts; at most "
                              f"{MAX_NODES})")
    names: set[str] = set()
    _check(tree.body, names)
    return Expression(text, frozenset(names), tree.body)


# --------------------------------------------------------------------------- checking

_ALLOWED_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.BitAnd,
                   ast.BitOr, ast.BitXor, ast.LShift, ast.RShift)
_ALLOWED_CMPOPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
_NODE_WORDS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access (a.b)", ast.Subscript: "indexing (a[0])",
    ast.Lambda: "lambda", ast.Pow: "the power operator **",
    ast.NamedExpr: "assignment (:=)", ast.ListComp: "a comprehension",
    ast.GeneratorExp: "a comprehension", ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension", ast.Dict: "a mapping", ast.Set: "a set",
    ast.JoinedStr: "an f-string", ast.Starred: "*unpacking", ast.Await: "await",
    ast.Yield: "yield", ast.YieldFrom: "yield", ast.Slice: "a slice", ast.MatMult: "@",
    ast.Is: "'is'", ast.IsNot: "'is not'", ast.List: "a list", ast.Tuple: "a list",
}


def _check(node: ast.expr, names: set[str]) -> None:
    """Reject anything outside the language; collect the point names read."""
    if isinstance(node, ast.Constant):
        _check_constant(node)
    elif isinstance(node, ast.Name):
        if node.id in FUNCTIONS:
            raise ExpressionError(f"{node.id!r} is a function: write {node.id}(...)"
                                  f"{_column(node)}")
        if node.id not in CONSTANTS:
            names.add(node.id)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, names)
    elif isinstance(node, ast.UnaryOp):
        _check(node.operand, names)
    elif isinstance(node, ast.BinOp):
        if not isinstance(node.op, _ALLOWED_BINOPS):
            what = _NODE_WORDS.get(type(node.op), type(node.op).__name__)
            raise ExpressionError(f"{what} is not allowed{_column(node)}")
        _check(node.left, names)
        _check(node.right, names)
    elif isinstance(node, ast.Compare):
        _check(node.left, names)
        for op, right in zip(node.ops, node.comparators, strict=True):
            if not isinstance(op, _ALLOWED_CMPOPS):
                what = _NODE_WORDS.get(type(op), type(op).__name__)
                raise ExpressionError(f"{what} is not allowed{_column(node)}; use == or !=")
            if isinstance(op, ast.In | ast.NotIn):
                if not isinstance(right, ast.List | ast.Tuple):
                    raise ExpressionError(f"'in' needs a list of values, e.g. mode in [2, 3]"
                                          f"{_column(right)}")
                for element in right.elts:
                    _check(element, names)
            else:
                _check(right, names)
    elif isinstance(node, ast.IfExp):
        for part in (node.test, node.body, node.orelse):
            _check(part, names)
    elif isinstance(node, ast.Call):
        _check_call(node)
        for arg in node.args:
            _check(arg, names)
    else:
        what = _NODE_WORDS.get(type(node), type(node).__name__)
        hint = " (a list is only allowed after 'in')" if isinstance(node, ast.List | ast.Tuple) \
            else ""
        raise ExpressionError(f"{what} is not allowed here{_column(node)}{hint}")


def _check_constant(node: ast.Constant) -> None:
    value = node.value
    if isinstance(value, bool | int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ExpressionError(f"numbers must be finite{_column(node)}")
        if isinstance(value, int) and value.bit_length() > 64:
            raise ExpressionError(f"integer literal is too large{_column(node)}")
        return
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ExpressionError(f"text literal is longer than {MAX_TEXT} characters")
        return
    shown = "None" if value is None else type(value).__name__
    raise ExpressionError(f"{shown} is not a value here{_column(node)}; use numbers, "
                          f"'text', true or false")


def _check_call(node: ast.Call) -> None:
    func = node.func
    if not isinstance(func, ast.Name) or func.id not in FUNCTIONS:
        what = f"calling {func.id!r}" if isinstance(func, ast.Name) else \
            _NODE_WORDS.get(type(func), "this call")
        raise ExpressionError(f"{what} is not allowed{_column(node)}; functions: "
                              f"{', '.join(sorted(FUNCTIONS))}")
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise ExpressionError(f"{func.id}() takes plain arguments only{_column(node)}")
    low, high = _ARITY[func.id]
    if not low <= len(node.args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise ExpressionError(f"{func.id}() takes {want} argument(s), got {len(node.args)}"
                              f"{_column(node)}")


def _column(node: ast.AST) -> str:
    """Where in the text (1-based), as the user wrote it: the added '(' is not counted."""
    line, col = getattr(node, "lineno", None), getattr(node, "col_offset", None)
    if col is None or line != 1:
        return ""
    return f" (column {col})"


# --------------------------------------------------------------------------- evaluating


def _number(value: Value, what: str) -> Number:
    if isinstance(value, bool | int | float):
        return value
    raise ExpressionError(f"{what} needs a number, got {_shown(value)}")


def _integer(value: Value, what: str) -> int:
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ExpressionError(f"{what} needs an integer, got {_shown(value)}")


def _truth(value: Value) -> bool:
    if isinstance(value, str):
        raise ExpressionError(f"text {_shown(value)} is not true or false; compare it, "
                              f"e.g. x == 'on'")
    return bool(value)


def _bit(value: Value, index: Value) -> Value:
    n = _integer(index, "bit()")
    if not 0 <= n < _MAX_SHIFT:
        raise ExpressionError(f"bit() index must be 0..{_MAX_SHIFT - 1}, got {n}")
    return bool((_integer(value, "bit()") >> n) & 1)


def _round(value: Value, digits: Value = 0) -> Value:
    n = _integer(digits, "round()")
    if not 0 <= n <= 12:
        raise ExpressionError(f"round() digits must be 0..12, got {n}")
    number = _number(value, "round()")
    return round(number) if n == 0 else round(number, n)


def _to_int(value: Value) -> Value:
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ExpressionError(f"int() cannot read {_shown(value)}") from None
    number = _number(value, "int()")
    if isinstance(number, float) and not math.isfinite(number):
        raise ExpressionError("int() of a number that is not finite")
    return int(number)


def _to_float(value: Value) -> Value:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ExpressionError(f"float() cannot read {_shown(value)}") from None
    return float(_number(value, "float()"))


def _minmax(name: str) -> Callable[..., Value]:
    def call(*args: Value) -> Value:
        numbers = [_number(a, f"{name}()") for a in args]
        return max(numbers) if name == "max" else min(numbers)

    return call


#: The functions an expression may call.
FUNCTIONS: dict[str, Callable[..., Value]] = {
    "abs": lambda v: abs(_number(v, "abs()")),
    "min": _minmax("min"),
    "max": _minmax("max"),
    "round": _round,
    "int": _to_int,
    "float": _to_float,
    "bool": _truth,
    "bit": _bit,
}
_ARITY: dict[str, tuple[int, int]] = {"abs": (1, 1), "min": (2, 20), "max": (2, 20),
                                      "round": (1, 2), "int": (1, 1), "float": (1, 1),
                                      "bool": (1, 1), "bit": (2, 2)}

_ARITH: dict[type[ast.operator], Callable[[Number, Number], Value]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_BITWISE: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
    ast.LShift: operator.lshift, ast.RShift: operator.rshift,
}
_ORDER: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_SYMBOLS: dict[type[ast.AST], str] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
    ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
}


class _Evaluator:
    def __init__(self, values: Mapping[str, Value]) -> None:
        self.values = values

    def eval(self, node: ast.expr) -> Value:
        if isinstance(node, ast.Constant):
            return _literal(node.value)
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.BoolOp):
            return self._boolop(node)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node)
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.IfExp):
            return self.eval(node.body) if _truth(self.eval(node.test)) else self.eval(node.orelse)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            try:
                return FUNCTIONS[node.func.id](*(self.eval(a) for a in node.args))
            except (ArithmeticError, ValueError, TypeError) as exc:
                if isinstance(exc, ExpressionError):
                    raise
                raise ExpressionError(f"{node.func.id}(): {exc}") from None
        raise ExpressionError(f"cannot evaluate {type(node).__name__}")  # not reachable

    def _name(self, name: str) -> Value:
        if name in CONSTANTS:
            return CONSTANTS[name]
        value = self.values.get(name)
        if value is None:
            raise ExpressionError(f"point {name!r} has no value")
        return value

    def _boolop(self, node: ast.BoolOp) -> Value:
        want = isinstance(node.op, ast.Or)
        for operand in node.values:
            if _truth(self.eval(operand)) is want:
                return want
        return not want

    def _unary(self, node: ast.UnaryOp) -> Value:
        value = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            return not _truth(value)
        if isinstance(node.op, ast.Invert):
            return ~_integer(value, "~")
        number = _number(value, "a sign")
        return -number if isinstance(node.op, ast.USub) else +number

    def _binop(self, node: ast.BinOp) -> Value:
        left, right = self.eval(node.left), self.eval(node.right)
        op = type(node.op)
        symbol = _SYMBOLS[op]
        if op in _BITWISE:
            i, j = _integer(left, symbol), _integer(right, symbol)
            if op in (ast.LShift, ast.RShift) and not 0 <= j <= _MAX_SHIFT:
                raise ExpressionError(f"shift by {j}: shifts must be 0..{_MAX_SHIFT}")
            return _BITWISE[op](i, j)
        if op is ast.Add and isinstance(left, str) and isinstance(right, str):
            if len(left) + len(right) > MAX_TEXT:
                raise ExpressionError(f"text result longer than {MAX_TEXT} characters")
            return left + right
        a, b = _number(left, symbol), _number(right, symbol)
        try:
            return _ARITH[op](a, b)
        except ZeroDivisionError:
            raise ExpressionError(f"division by zero ({symbol})") from None
        except OverflowError:
            raise ExpressionError(f"number too large ({symbol})") from None

    def _compare(self, node: ast.Compare) -> Value:
        left = self.eval(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                assert isinstance(right_node, ast.List | ast.Tuple)
                found = any(_equal(left, self.eval(e)) for e in right_node.elts)
                ok = found if isinstance(op, ast.In) else not found
                right: Value = left
            else:
                right = self.eval(right_node)
                if isinstance(op, ast.Eq | ast.NotEq):
                    same = _equal(left, right)
                    ok = same if isinstance(op, ast.Eq) else not same
                else:
                    ok = self._ordered(op, left, right)
            if not ok:
                return False
            left = right
        return True

    @staticmethod
    def _ordered(op: ast.cmpop, left: Value, right: Value) -> bool:
        symbol = _SYMBOLS[type(op)]
        if isinstance(left, str) and isinstance(right, str):
            return _ORDER[type(op)](left, right)
        if isinstance(left, str) or isinstance(right, str):
            raise ExpressionError(f"cannot compare {_shown(left)} {symbol} {_shown(right)}")
        return _ORDER[type(op)](_number(left, symbol), _number(right, symbol))


def _literal(value: object) -> Value:
    if isinstance(value, bool | int | float | str):  # all that _check_constant lets through
        return value
    raise ExpressionError(f"{type(value).__name__} is not a value")


def _equal(left: Value, right: Value) -> bool:
    """1 == 1.0 == true, as rules compare; text equals only the same text."""
    if isinstance(left, str) or isinstance(right, str):
        return isinstance(left, str) and isinstance(right, str) and left == right
    return left == right


def _checked_result(value: Value) -> Value:
    if isinstance(value, float) and not math.isfinite(value):
        raise ExpressionError(f"result is {value}")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise ExpressionError(f"text result longer than {MAX_TEXT} characters")
    if value is None:
        raise ExpressionError("no result")
    return value


def _shown(value: Value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
