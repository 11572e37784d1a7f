"""The read planner coalesces points into as few protocol-legal reads as it may."""

from __future__ import annotations

import random

import pytest

from drivers.modbus import MAX_READ_BITS, MAX_READ_REGISTERS, ReadBlock, plan_reads
from gateway.config import ModbusPoint
from tests.test_modbus_support import point


def _spans(blocks: list[ReadBlock]) -> list[tuple[str, int, int]]:
    return [(b.table, b.address, b.count) for b in blocks]


def test_adjacent_points_make_one_read() -> None:
    points = [point(f"p{i}", 100 + i) for i in range(10)]
    blocks = plan_reads(points, max_gap=0)
    assert _spans(blocks) == [("holding", 100, 10)]
    assert [p.name for p in blocks[0].points] == [f"p{i}" for i in range(10)]


def test_holes_up_to_max_gap_are_bridged() -> None:
    points = [point("a", 0), point("b", 9, type="uint32"), point("c", 20)]
    # a ends at 1; b starts at 9: a hole of 8. b ends at 11; c at 20: a hole of 9.
    assert _spans(plan_reads(points, max_gap=8)) == [("holding", 0, 11), ("holding", 20, 1)]
    assert _spans(plan_reads(points, max_gap=9)) == [("holding", 0, 21)]
    assert len(plan_reads(points, max_gap=7)) == 3


def test_reads_never_exceed_125_registers_or_split_a_point() -> None:
    points = [point(f"f{i}", 2 * i, type="float32") for i in range(70)]  # 140 registers
    blocks = plan_reads(points, max_gap=0)
    assert _spans(blocks) == [("holding", 0, 124), ("holding", 124, 16)]
    assert sum(len(b.points) for b in blocks) == 70


def test_bit_tables_allow_2000_bits_per_read() -> None:
    coils = [point(f"c{i}", i, function="coil", type="bool") for i in range(2001)]
    assert _spans(plan_reads(coils, max_gap=0)) == [("coil", 0, 2000), ("coil", 2000, 1)]


def test_tables_are_planned_separately_in_a_fixed_order() -> None:
    points = [
        point("h", 5), point("i", 5, function="input"),
        point("d", 5, function="discrete_input", type="bool"),
        point("c", 5, function="coil", type="bool"), point("h2", 6),
    ]
    assert _spans(plan_reads(points, max_gap=8)) == [
        ("coil", 5, 1), ("discrete_input", 5, 1), ("holding", 5, 2), ("input", 5, 1)]


def test_overlapping_points_share_a_read() -> None:
    bits = [point(f"b{i}", 40, type="bit", bit=i) for i in range(16)]
    whole = point("word", 40)
    wide = point("wide", 39, type="uint32")  # covers 39..40
    blocks = plan_reads([*bits, whole, wide], max_gap=0)
    assert _spans(blocks) == [("holding", 39, 2)]
    assert len(blocks[0].points) == 18


def test_slice_for_gives_each_point_its_registers() -> None:
    block = plan_reads([point("a", 10), point("b", 12, type="uint32")], max_gap=1)[0]
    data = [1, 2, 3, 4]
    assert list(block.slice_for(block.points[0], data)) == [1]
    assert list(block.slice_for(block.points[1], data)) == [3, 4]


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_gap"):
        plan_reads([], max_gap=-1)
    assert plan_reads([], max_gap=0) == []


@pytest.mark.parametrize("seed", range(20))
def test_random_plans_keep_their_invariants(seed: int) -> None:
    rng = random.Random(seed)
    tables = ["coil", "discrete_input", "holding", "input"]
    points: list[ModbusPoint] = []
    for i in range(rng.randint(1, 300)):
        table = rng.choice(tables)
        if table in ("coil", "discrete_input"):
            points.append(point(f"p{i}", rng.randint(0, 5000), function=table, type="bool"))
        else:
            kind = rng.choice(["uint16", "int32", "float64", "bit"])
            extra = {"bit": rng.randint(0, 15)} if kind == "bit" else {}
            points.append(point(f"p{i}", rng.randint(0, 1000), function=table, type=kind,
                                **extra))
    max_gap = rng.randint(0, 20)
    blocks = plan_reads(points, max_gap=max_gap)
    seen = [p.name for b in blocks for p in b.points]
    assert sorted(seen) == sorted(p.name for p in points)  # each point exactly once
    for b in blocks:
        limit = MAX_READ_BITS if b.table in ("coil", "discrete_input") else MAX_READ_REGISTERS
        assert 1 <= b.count <= limit
        covered: set[int] = set()
        for p in b.points:
            assert p.function == b.table
            assert b.address <= p.address
            assert p.address + p.width <= b.end
            covered.update(range(p.address, p.address + p.width))
        holes = sorted(set(range(b.address, b.end)) - covered)
        run = longest = 0
        for i, addr in enumerate(holes):
            run = run + 1 if i and holes[i - 1] == addr - 1 else 1
            longest = max(longest, run)
        assert longest <= max_gap
    order = [(tables.index(b.table), b.address) for b in blocks]
    assert order == sorted(order)
