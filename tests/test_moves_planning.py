"""Bounds math for moves (tui/core/moves/planning.py), without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tui.core.moves.planning import (
    MAXVALUE,
    MINVALUE,
    Existing,
    Interval,
    PlanningError,
    gap_partitions,
    infer_interval,
    infer_name_pattern,
    merge_lists,
    merge_ranges,
    move_list_values,
    propose_partitions,
    range_gaps,
    rebound,
    split_range,
)


def d(y: int, m: int = 1, day: int = 1) -> datetime:
    return datetime(y, m, day, tzinfo=UTC)


def test_split_range() -> None:
    assert split_range((d(2023), d(2024)), [d(2023, 7)]) == [
        (d(2023), d(2023, 7)), (d(2023, 7), d(2024))]
    assert split_range((MINVALUE, 100), [0, 50]) == [(MINVALUE, 0), (0, 50), (50, 100)]
    assert split_range((10, MAXVALUE), [20]) == [(10, 20), (20, MAXVALUE)]
    with pytest.raises(PlanningError, match="not inside"):
        split_range((d(2023), d(2024)), [d(2024)])
    with pytest.raises(PlanningError, match="not inside"):
        split_range((d(2023), d(2024)), [d(2023)])
    with pytest.raises(PlanningError, match="increase strictly"):
        split_range((0, 100), [50, 50])
    with pytest.raises(PlanningError, match="increase strictly"):
        split_range((0, 100), [60, 40])
    with pytest.raises(PlanningError, match="at least one"):
        split_range((0, 100), [])


def test_merge_and_rebound() -> None:
    assert merge_ranges([(d(2021), d(2022)), (d(2020), d(2021))]) == (d(2020), d(2022))
    assert merge_ranges([(MINVALUE, 0), (0, 10), (10, MAXVALUE)]) == (MINVALUE, MAXVALUE)
    with pytest.raises(PlanningError, match="not adjacent"):
        merge_ranges([(0, 10), (11, 20)])
    with pytest.raises(PlanningError, match="overlap"):
        merge_ranges([(0, 10), (5, 20)])
    with pytest.raises(PlanningError, match="at least two"):
        merge_ranges([(0, 10)])
    assert rebound((0, 10), (10, 20), 15) == ((0, 15), (15, 20))
    assert rebound((MINVALUE, 10), (10, MAXVALUE), -5) == ((MINVALUE, -5), (-5, MAXVALUE))
    with pytest.raises(PlanningError, match="not neighbours"):
        rebound((0, 10), (11, 20), 15)
    with pytest.raises(PlanningError, match="outside"):
        rebound((0, 10), (10, 20), 20)
    with pytest.raises(PlanningError, match="already"):
        rebound((0, 10), (10, 20), 10)


def test_gaps() -> None:
    ranges = [(d(2024), d(2025)), (d(2020), d(2022)), (d(2022), d(2023))]
    assert range_gaps(ranges) == [(d(2023), d(2024))]
    assert range_gaps(ranges, ends=True) == [
        (MINVALUE, d(2020)), (d(2023), d(2024)), (d(2025), MAXVALUE)]
    assert range_gaps([(MINVALUE, 0), (5, MAXVALUE)], ends=True) == [(0, 5)]
    with pytest.raises(PlanningError, match="overlap"):
        range_gaps([(0, 10), (5, 20)])


def test_gap_partitions_follow_the_newest_grid_and_names() -> None:
    existing = [Existing("payment_2020", d(2020), d(2021)), Existing("payment_2023", d(2023),
                                                                     d(2024)),
                Existing("payment_2024", d(2024), d(2025))]
    got = gap_partitions(existing, "payment", taken_names={"payment_2022"})
    assert [(p.name, p.lower, p.upper) for p in got] == [
        ("payment_2021", d(2021), d(2022)), ("payment_2022_2", d(2022), d(2023))]
    # off the grid: the hole is cut where the grid cuts it, never beyond it
    existing = [Existing("m_2024_01", d(2024, 1), d(2024, 1, 15)),
                Existing("m_2024_03", d(2024, 3), d(2024, 4))]
    got = gap_partitions(existing, "m")
    assert [(p.name, p.lower, p.upper) for p in got] == [
        ("m_2024_01_2", d(2024, 1, 15), d(2024, 2)), ("m_2024_02", d(2024, 2), d(2024, 3))]
    assert gap_partitions([Existing("a", 0, 10), Existing("b", 10, 20)], "t") == []
    got = gap_partitions([Existing("t_0", 0, 10), Existing("t_30", 30, 40)], "t")
    assert [(p.name, p.lower, p.upper) for p in got] == [("t_10", 10, 20), ("t_20", 20, 30)]
    with pytest.raises(PlanningError, match="bounded"):
        gap_partitions([Existing("a", MINVALUE, 0), Existing("b", 5, MAXVALUE)], "t")


def test_list_values_with_null() -> None:
    assert move_list_values(["a", "b", None], [None]) == (["a", "b"], [None])
    assert move_list_values(["a", "b", None], ["b"], ["c"]) == (["a", None], ["c", "b"])
    with pytest.raises(PlanningError, match="not a value of the source"):
        move_list_values(["a"], ["z"])
    with pytest.raises(PlanningError, match="NULL is given twice"):
        move_list_values(["a", None], [None, None])
    with pytest.raises(PlanningError, match="merge"):
        move_list_values(["a", None], ["a", None])
    with pytest.raises(PlanningError, match="already"):
        move_list_values(["a", "b"], ["a"], ["a"])
    assert merge_lists([["a"], [None, "b"]]) == ["a", None, "b"]
    with pytest.raises(PlanningError, match="two of"):
        merge_lists([["a"], ["a"]])


def test_intervals_and_names() -> None:
    assert infer_interval(d(2023), d(2024)) == Interval(months=12)
    assert infer_interval(d(2023, 3), d(2023, 4)) == Interval(months=1)
    assert infer_interval(d(2026, 8, 2), d(2026, 8, 9)) == Interval(step=timedelta(days=7))
    assert infer_interval(100, 200) == Interval(step=100)
    week = Interval(step=timedelta(days=7))
    p = infer_name_pattern("account_balances_2026_08_02", d(2026, 8, 2), "account_balances", week)
    assert p.name(d(2026, 8, 9)) == "account_balances_2026_08_09"
    p = infer_name_pattern("payment_2023", d(2023), "payment", Interval(months=12))
    assert p.name(d(1998)) == "payment_1998"
    p = infer_name_pattern("m202303x", d(2023, 3), "m", Interval(months=1))
    assert p.name(d(2024, 11)) == "m202411x"
    p = infer_name_pattern("whatever", d(2023, 3), "Pay \"ment\"", Interval(months=1))
    assert p.name(d(2024, 11)) == 'Pay "ment"_p2024_11'
    assert infer_name_pattern("t_p1000", 1000, "t", Interval(step=1000)).name(5000) == "t_p5000"


def _payment() -> list[Existing]:
    return [Existing("payment_2000_2019", d(2000), d(2020)),
            Existing("payment_2020_2021", d(2020), d(2022)),
            Existing("payment_2022", d(2022), d(2023)),
            Existing("payment_2023", d(2023), d(2024)),
            Existing("payment_2024", d(2024), d(2025))]


def _year(y: int) -> tuple[datetime, datetime]:
    return d(y), d(y + 1) - timedelta(microseconds=1)


def test_drain_default_years_before_and_after() -> None:
    props = propose_partitions(_payment(), [_year(1998), _year(2026), _year(2027)], "payment")
    assert [(p.name, p.lower, p.upper) for p in props] == [
        ("payment_1998", d(1998), d(1999)),
        ("payment_2026", d(2026), d(2027)),
        ("payment_2027", d(2027), d(2028))]


def test_drain_default_clips_to_free_space_and_avoids_names() -> None:
    existing = [Existing("payment_2023", d(2023), d(2024)),
                Existing("payment_2024", d(2024, 7), d(2025, 7))]  # newest: mid-year grid
    props = propose_partitions(existing, [_year(2024)], "payment")
    # the year-cell [2024-07, 2025-07) is taken; the cell before it, [2023-07, 2024-07),
    # is clipped by payment_2023 to [2024-01, 2024-07)
    assert [(p.lower, p.upper) for p in props] == [(d(2024), d(2024, 7))]
    # named by the pattern (payment_%Y), which gives an existing name: suffixed
    assert props[0].name == "payment_2024_2"
    props = propose_partitions(existing, [_year(2030)], "payment", taken_names=["payment_2029"])
    # the year 2030 straddles two cells of the mid-year grid
    assert [(p.name, p.lower) for p in props] == [("payment_2029_2", d(2029, 7)),
                                                  ("payment_2030", d(2030, 7))]


def test_drain_default_weeks_and_integers() -> None:
    weeks = [Existing(f"ab_{s:%Y_%m_%d}", s, s + timedelta(7))
             for s in (d(2026, 8, 2), d(2026, 8, 9))]
    occupied = [(d(2026, 7, 20), d(2026, 7, 20, ) + timedelta(hours=23)),
                (d(2026, 8, 20), d(2026, 8, 20) + timedelta(hours=23))]
    props = propose_partitions(weeks, occupied, "ab")
    assert [(p.name, p.lower, p.upper) for p in props] == [
        ("ab_2026_07_19", d(2026, 7, 19), d(2026, 7, 26)),
        ("ab_2026_08_16", d(2026, 8, 16), d(2026, 8, 23))]
    ints = [Existing("t_p0", 0, 1000), Existing("t_p1000", 1000, 2000)]
    props = propose_partitions(ints, [(-5, 3500)], "t")
    assert [(p.name, p.lower, p.upper) for p in props] == [
        ("t_p-1000", -1000, 0), ("t_p2000", 2000, 3000), ("t_p3000", 3000, 4000)]
    with pytest.raises(PlanningError, match="more than"):
        propose_partitions(ints, [(0, 10**9)], "t")
