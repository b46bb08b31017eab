"""One style for sizes and counts, in the console and on the command line."""

from __future__ import annotations

from tui.app.format import human_bytes, human_rows, thousands
from tui.commands.tree import human_size
from tui.core.humanfmt import SIZE_CELLS, count, plural, short_count, signed_size, size


def test_sizes_are_binary_with_iec_units_and_fit_the_console_column():
    assert [size(0), size(512), size(1023), size(1024), size(8192)] == [
        "0 B", "512 B", "1023 B", "1.0 KiB", "8.0 KiB"]
    assert size(int(9.6 * 1024**2)) == "9.6 MiB"
    assert size(968 * 1024) == "968 KiB" and size(int(57.9 * 1024**2)) == "57.9 MiB"
    assert size(int(99.96 * 1024)) == "100 KiB"  # not '100.0 KiB'
    assert size(1024**2 - 1) == "1.0 MiB"  # not '1024 KiB'
    assert size(int(1.25 * 1024**3)) == "1.2 GiB" and size(3 * 1024**4) == "3.0 TiB"
    widest = max((size(int(v * 1024**e)) for e in range(1, 5)
                  for v in (99.94, 99.96, 100, 999.9, 1023.4, 1023.6)), key=len)
    assert len(widest) <= SIZE_CELLS, widest


def test_signed_sizes_counts_and_plurals():
    assert size(-9_109_504) == "-8.7 MiB" and signed_size(-9_109_504) == "-8.7 MiB"
    assert signed_size(1024) == "+1.0 KiB" and signed_size(0) == "0 B"
    assert count(9_109_504) == "9,109,504" and count(-1000) == "-1,000"
    assert [plural(0, "partition"), plural(1, "partition"), plural(2, "partition")] == [
        "0 partitions", "1 partition", "2 partitions"]
    assert plural(1, "relation") == "1 relation" and plural(12_000, "row") == "12,000 rows"
    assert plural(1, "entry", "entries") == "1 entry" and plural(3, "entry", "entries") == \
        "3 entries"
    assert [short_count(950), short_count(12_345), short_count(999_999), short_count(4_200_000)] \
        == ["950", "12k", "1.0M", "4.2M"]


def test_console_and_cli_print_the_same_size():
    for n in (0, 700, 10_066_329, 60_711_936, 991_232, 5 * 1024**3):
        assert human_bytes(n) == human_size(n) == size(n)
    assert thousands(262_337) == "262,337" and human_rows(12_345) == "12k"
