"""Rule conditions compiled to predicates over a device's latest readings.

Evaluation is three-valued: a comparison on a point whose latest reading is missing or not
GOOD is *unknown* (``None``), and ``all``/``any``/``not`` follow Kleene logic. A rule fires only
on a definite ``True``, so a silent sensor can neither raise nor clear an alarm by accident;
comm-loss is its own alarm.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping

from gateway.config import AllCondition, AnyCondition, Condition, NotCondition, PointCondition
from gateway.model import Reading, Value

__all__ = ["Predicate", "compile_condition"]

#: Returns True / False, or None when the answer depends on a point without a good value.
Predicate = Callable[[Mapping[str, Reading]], bool | None]

_ORDERED: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le,
}


def compile_condition(cond: Condition) -> Predicate:
    """Turn a config condition into a predicate (done once at start-up, not per reading)."""
    if isinstance(cond, PointCondition):
        return _compile_point(cond)
    if isinstance(cond, AllCondition):
        members = [compile_condition(c) for c in cond.all]
        return lambda values: _kleene_all(m(values) for m in members)
    if isinstance(cond, AnyCondition):
        members = [compile_condition(c) for c in cond.any]
        return lambda values: _kleene_any(m(values) for m in members)
    assert isinstance(cond, NotCondition)
    inner = compile_condition(cond.not_)

    def negate(values: Mapping[str, Reading]) -> bool | None:
        result = inner(values)
        return None if result is None else not result

    return negate


def _compile_point(cond: PointCondition) -> Predicate:
    name = cond.point
    test: Callable[[Value], bool]
    if cond.eq is not None:
        expected = cond.eq
        test = lambda v: _same(v, expected)  # noqa: E731
    elif cond.ne is not None:
        unexpected = cond.ne
        test = lambda v: not _same(v, unexpected)  # noqa: E731
    elif cond.in_ is not None:
        options = list(cond.in_)
        test = lambda v: any(_same(v, o) for o in options)  # noqa: E731
    else:
        op_name, bound = next((op, getattr(cond, op)) for op in _ORDERED
                              if getattr(cond, op) is not None)
        compare = _ORDERED[op_name]

        def test(v: Value) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool) \
                and compare(float(v), bound)

    def predicate(values: Mapping[str, Reading]) -> bool | None:
        reading = values.get(name)
        if reading is None or not reading.good:
            return None
        return test(reading.value)

    return predicate


def _same(value: Value, expected: Value) -> bool:
    """Equality that treats 1 == 1.0 == True as YAML authors expect, and text exactly."""
    if isinstance(value, str) or isinstance(expected, str):
        return str(value) == str(expected)
    return value == expected


def _kleene_all(results: Iterable[bool | None]) -> bool | None:
    unknown = False
    for r in results:
        if r is False:
            return False
        if r is None:
            unknown = True
    return None if unknown else True


def _kleene_any(results: Iterable[bool | None]) -> bool | None:
    unknown = False
    for r in results:
        if r is True:
            return True
        if r is None:
            unknown = True
    return None if unknown else False
