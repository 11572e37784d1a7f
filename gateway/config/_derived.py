"""Derived points: a point of a device computed from its other points.

Three forms, each optionally followed by a value ``map``::

    derived:
      - {name: inspection, from: mode_word, bit: 0}        # one bit of an integer point
      - {name: mode_text, from: mode_code, map: {0: off, 1: on}, default: unknown}
      - name: service_mode                                 # a small expression
        expr: "0 if out_of_service else 2 if inspection else 3 if fire_recall else 1"

The expression language is :mod:`gateway.expr`. What the names refer to (the device's points
and other derived points) and whether derived points depend on each other in a circle is
checked for the whole device by :func:`derived_problems`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import Field, field_validator, model_validator

from gateway.config._types import Identifier, StrictModel, Value, ValueMap
from gateway.expr import ExpressionError, compile_expression

__all__ = ["DerivedPoint", "derived_order", "derived_problems"]


class DerivedPoint(StrictModel):
    """A point computed from other points of the same device (see ``docs/points.md``)."""

    name: Identifier
    unit: str | None = Field(default=None, description="Engineering unit, e.g. V, kWh, ℃.")
    description: str | None = None
    from_: Identifier | None = Field(
        default=None, alias="from",
        description="The point this one is read from (with bit:, map:, or alone as a copy).")
    bit: int | None = Field(default=None, ge=0, le=63,
                            description="With from: bit N of the point's integer value, "
                                        "0 = least significant; gives true/false.")
    expr: str | None = Field(
        default=None,
        description="An expression over the device's points, e.g. "
                    "\"2 if inspection else 3 if fire_recall else 1\".")
    map: ValueMap | None = Field(
        default=None,
        description="Value map applied last; keys are compared as text like a point's map.")
    default: Value | None = Field(
        default=None,
        description="With map: the value for anything the map does not list (without it, "
                    "unlisted values pass through unchanged).")

    @field_validator("expr")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_expression(value)
            except ExpressionError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> DerivedPoint:
        if (self.from_ is None) == (self.expr is None):
            raise ValueError("a derived point needs exactly one of 'from' (another point) or "
                             "'expr' (an expression)")
        if self.bit is not None and self.from_ is None:
            raise ValueError("'bit' goes with 'from'; in an expression write bit(point, N)")
        if self.default is not None and self.map is None:
            raise ValueError("'default' goes with 'map'")
        return self

    def inputs(self) -> frozenset[str]:
        """The point names this one is computed from."""
        if self.from_ is not None:
            return frozenset({self.from_})
        assert self.expr is not None  # _one_source
        return compile_expression(self.expr).names


def derived_problems(path: str, point_names: Iterable[str],
                     derived: Sequence[DerivedPoint]) -> list[str]:
    """``"path: message"`` lines for one device: unknown inputs, a derived point named like a
    point, derived points that depend on each other in a circle.

    Args:
        path: The device's key path, e.g. ``devices[3]``.
        point_names: The device's own (read) points.
        derived: Its derived points.
    """
    problems: list[str] = []
    own = set(point_names)
    names = own | {d.name for d in derived}
    seen: set[str] = set()
    for j, point in enumerate(derived):
        where = f"{path}.derived[{j}]"
        if point.name in own:
            problems.append(f"{where}.name: {point.name!r} is already a point of this device")
        elif point.name in seen:
            problems.append(f"{where}.name: derived point {point.name!r} is defined twice")
        seen.add(point.name)
        unknown = sorted(point.inputs() - names)
        if unknown:
            key = "from" if point.from_ is not None else "expr"
            others = sorted(names - {point.name})
            import difflib  # noqa: PLC0415 - for a mistake's hint only: a gateway that runs never loads it

            close = difflib.get_close_matches(unknown[0], others, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{where}.{key}: unknown point(s) {', '.join(unknown)}{hint} "
                            f"(this device has: {', '.join(others) or 'none'})")
    if not problems:
        cycle = _cycle(derived)
        if cycle:
            j = next(i for i, d in enumerate(derived) if d.name == cycle[0])
            problems.append(f"{path}.derived[{j}]: derived points depend on each other in a "
                            f"circle: {' -> '.join([*cycle, cycle[0]])}")
    return problems


def derived_order(derived: Sequence[DerivedPoint]) -> list[DerivedPoint]:
    """Derived points in an order where each comes after the derived points it reads.

    Raises:
        ValueError: They depend on each other in a circle (the config check reports it first).
    """
    by_name = {d.name: d for d in derived}
    order: list[DerivedPoint] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(point: DerivedPoint) -> None:
        if state.get(point.name) == 2:
            return
        if state.get(point.name) == 1:
            raise ValueError(f"derived point {point.name!r} depends on itself")
        state[point.name] = 1
        for name in sorted(point.inputs()):
            if name in by_name:
                visit(by_name[name])
        state[point.name] = 2
        order.append(point)

    for point in derived:
        visit(point)
    return order


def _cycle(derived: Sequence[DerivedPoint]) -> list[str]:
    """One circle of derived points reading each other (names in reading order), or []."""
    by_name = {d.name: d for d in derived}
    done: set[str] = set()
    stack: list[str] = []

    def walk(name: str) -> list[str]:
        if name in stack:
            return stack[stack.index(name):]
        if name in done or name not in by_name:
            return []
        stack.append(name)
        for nxt in sorted(by_name[name].inputs()):
            found = walk(nxt)
            if found:
                return found
        stack.pop()
        done.add(name)
        return []

    for start in derived:
        found = walk(start.name)
        if found:
            return found
    return []
