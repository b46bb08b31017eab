"""Growth at a glance against real servers: a weekly table of known sizes, ANALYZEd so the
estimates are exact, gives the series, the rate (median of the newest finished weeks, leaving
out the DEFAULT and a week never analyzed), the fill forecast and the runway; the findings and
`pgparts tree TABLE --growth` say the same."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tui.cli import main
from tui.core.catalog import load_forest
from tui.core.config import FindingsConfig, parse_config
from tui.core.findings import check_forest
from tui.core.growth import fill_text, growth_of, rate_text

START = datetime(2030, 1, 1, tzinfo=timezone.utc)
NOW = START + timedelta(weeks=6, days=3, hours=12)  # half way through week 6
# rows per week 0..6; week 5 is never analyzed (its many rows must not count); 7 and 8 are ahead
ROWS = [100, 2000, 2000, 3000, 2000, 9000, 1000, 0, 0]
NOT_ANALYZED = 5


def _build(db, start: datetime = START) -> None:
    db.execute("CREATE TABLE public.ev (ts timestamptz NOT NULL, pad text NOT NULL) "
               "PARTITION BY RANGE (ts)")
    for week, rows in enumerate(ROWS):
        lo, hi = start + timedelta(weeks=week), start + timedelta(weeks=week + 1)
        db.execute(f"CREATE TABLE public.ev_w{week} PARTITION OF public.ev "
                   f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')")
        if rows:
            db.execute(
                f"INSERT INTO public.ev SELECT '{lo.isoformat()}'::timestamptz "
                f"+ (g % 1000) * interval '1 minute', repeat('x', 200) "
                f"FROM generate_series(1, {rows}) g")
    db.execute("CREATE TABLE public.ev_default PARTITION OF public.ev DEFAULT")
    db.execute("INSERT INTO public.ev SELECT '2031-01-01', repeat('x', 200) "
               "FROM generate_series(1, 20000)")
    analyzed = [f"public.ev_w{w}" for w in range(len(ROWS)) if w != NOT_ANALYZED]
    db.execute("ANALYZE " + ", ".join([*analyzed, "public.ev_default"]))


def test_series_rate_and_runway(db):
    _build(db)
    with db.connect() as conn:
        forest = load_forest(conn)
    week_bytes = forest.find("ev_w1").total_bytes
    assert week_bytes > 0 and forest.find("ev_w4").total_bytes == week_bytes
    growth = growth_of(forest, forest.find("ev"), limit_bytes=1024**3, now=NOW)
    assert growth is not None
    assert [p.node.name for p in growth.points] == [f"ev_w{w}" for w in range(len(ROWS))]
    assert [p.rows for p in growth.points if p.analyzed] == [
        r for w, r in enumerate(ROWS) if w != NOT_ANALYZED]
    assert [p.state for p in growth.points] == ["past"] * 6 + ["current"] + ["future"] * 2
    assert not growth.points[NOT_ANALYZED].analyzed
    assert growth.default is not None and growth.default.name == "ev_default"
    assert growth.interval == timedelta(weeks=1)
    # the median of weeks 1..4 (week 5 never analyzed, week 0 older than the sample)
    assert growth.samples == 4 and growth.meaningful
    assert growth.rows_per_interval == pytest.approx(2000)
    assert growth.bytes_per_interval == pytest.approx(week_bytes)
    assert growth.rows_series()[2] == 2000.0 and len(growth.bytes_series()) == len(ROWS)
    assert growth.covered_until == START + timedelta(weeks=9)
    assert growth.premade == 2
    assert growth.runway == START + timedelta(weeks=9) - NOW
    assert growth.current is not None and growth.current.node.name == "ev_w6"
    assert rate_text(growth) == f"about 2.0k rows ({_size(week_bytes)}) per week"
    # 1 GiB is far away: no fill forecast
    assert growth.fills_at is None and fill_text(growth) is None

    # a limit of 3/4 of a week: week 6 holds about half, and gains a week's size per week
    limit = week_bytes * 3 // 4
    small = growth_of(forest, forest.find("ev"), limit_bytes=limit, now=NOW)
    assert small is not None and small.fills_at is not None
    held = forest.find("ev_w6").total_bytes
    expected = NOW + timedelta(weeks=(limit - held) / week_bytes)
    assert abs((small.fills_at - expected).total_seconds()) < 60
    assert small.fills_at < START + timedelta(weeks=7)
    text = fill_text(small)
    assert text is not None and text.startswith(f"partition ev_w6 will pass {_size(limit)} in ")

    # not time partitioned: no growth
    db.execute("CREATE TABLE public.num (k int NOT NULL) PARTITION BY RANGE (k)")
    with db.connect() as conn:
        forest = load_forest(conn)
    assert growth_of(forest, forest.find("num"), limit_bytes=1) is None


def _size(n: int) -> str:
    from tui.core.humanfmt import size
    return size(n)


def test_findings_use_the_forecast(db):
    _build(db)
    with db.connect() as conn:
        forest = load_forest(conn)
    week_bytes = forest.find("ev_w1").total_bytes
    limit = week_bytes * 3 // 4
    # a policy on ev sets the limit: the current week will pass it before it ends
    policies = parse_config({"policy": {"public.ev": {"oversized": limit}}}).policies
    found = check_forest(forest, FindingsConfig(), NOW, policies=policies)
    over = [f for f in found if f.code == "oversized_partition"]
    assert len(over) == 1
    [f] = over
    # weeks 1-4 are over 3/4 of a week already: a warning, with the forecast for week 6
    assert f.severity == "warning"
    assert f"partition ev_w6 will pass {_size(limit)} in about " in f.message
    # runway wanted: 3 weeks; covered 2.5 weeks ahead: the rate tells what is coming
    found = check_forest(forest, FindingsConfig(runway_intervals=3), NOW)
    [nf] = [f for f in found if f.code == "no_future_partition"]
    assert nf.message.endswith(
        f"; rows arrive at about 2.0k rows ({_size(week_bytes)}) per week")

    # only the current week is big enough to matter: an INFO forecast, nothing over yet
    db.execute("INSERT INTO public.ev SELECT '2030-02-12', repeat('x', 200) "
               "FROM generate_series(1, 2500); ANALYZE public.ev_w6; "
               "TRUNCATE public.ev_default; ANALYZE public.ev_default")
    with db.connect() as conn:
        forest = load_forest(conn)
    limit = forest.find("ev_w6").total_bytes + week_bytes // 4  # passed in about 2 days
    assert max(leaf.total_bytes for leaf in forest.find("ev").leaves()) < limit
    found = check_forest(forest, FindingsConfig(oversized_bytes=limit), NOW)
    [f] = [f for f in found if f.code == "oversized_partition"]
    assert f.severity == "info"
    assert f.objects == ("ev_w6",)
    assert f.message.startswith(f"partition ev_w6 will pass {_size(limit)} in about ")


def test_tree_growth_cli(db, capsys):
    # the command uses the server's clock: lay the weeks out around today
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    _build(db, today - timedelta(weeks=6, days=3))
    status = main(["tree", "-d", db.dsn, "ev", "--growth"])
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "growth of ev by week: 9 time partitions"
    assert all(len(line) <= 80 for line in lines), out
    # one line per week, the bar longest for the biggest analyzed week (week 3)
    weeks = [line for line in lines if line[:4].isdigit()]
    assert len(weeks) == 9
    bars = [line.count("█") for line in weeks]
    assert max(bars) == bars[3] and bars[0] < bars[1] == bars[2]
    assert weeks[5].endswith("?") and "?" in weeks[5]  # never analyzed: no bar
    assert "DEFAULT ev_default: 20k rows" in out
    assert any(line.startswith("rate: about 2.0k rows") for line in lines)
    assert any(line.startswith("runway: partitions until") and "2 partitions ahead" in line
               for line in lines)
    assert any(line.startswith("fills: ev_w6 stays under 1.0 GiB until ") for line in lines)

    status = main(["tree", "-d", db.dsn, "ev", "--growth", "--json"])
    out, _ = capsys.readouterr()
    data = json.loads(out)
    assert data["table"] == "ev" and data["interval"] == "week"
    assert [p["partition"] for p in data["partitions"]][:2] == ["ev_w0", "ev_w1"]
    assert data["rate"]["samples"] >= 1 and data["default"]["partition"] == "ev_default"
    assert data["forecast"]["limit_bytes"] == 1024**3

    # time partitioned, but no partition yet; and one reaching MAXVALUE
    db.execute("CREATE TABLE public.bare (ts date NOT NULL) PARTITION BY RANGE (ts); "
               "CREATE TABLE public.open (ts date NOT NULL) PARTITION BY RANGE (ts); "
               "CREATE TABLE public.open_1 PARTITION OF public.open "
               "FOR VALUES FROM ('2020-01-01') TO (MAXVALUE)")
    assert main(["tree", "-d", db.dsn, "bare", "--growth"]) == 0
    out = capsys.readouterr().out
    assert "no partitions with time bounds" in out and "runway: none" in out
    assert main(["tree", "-d", db.dsn, "open", "--growth"]) == 0
    assert "runway: open-ended" in capsys.readouterr().out

    db.execute("CREATE TABLE public.num (k int NOT NULL) PARTITION BY RANGE (k)")
    for argv in (["tree", "-d", db.dsn, "num", "--growth"], ["tree", "-d", db.dsn, "--growth"]):
        assert main(argv) == 2
        _, err = capsys.readouterr()
        assert len(err.strip().splitlines()) == 1 and "--growth" in err


def test_sub_partitioned_weeks_and_policy_limit(db, tmp_path, capsys):
    """Weeks split into 2 hash partitions: rows and sizes are the week's, the size limit holds
    per leaf (so the week passes it at twice the limit), and `--growth` takes the limit from the
    table's policy."""
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(weeks=4, days=3)
    db.execute("CREATE TABLE public.hw (ts timestamptz NOT NULL, k int NOT NULL, pad text) "
               "PARTITION BY RANGE (ts)")
    for week in range(6):
        lo, hi = start + timedelta(weeks=week), start + timedelta(weeks=week + 1)
        db.execute(f"CREATE TABLE public.hw_{week} PARTITION OF public.hw FOR VALUES FROM "
                   f"('{lo.isoformat()}') TO ('{hi.isoformat()}') PARTITION BY HASH (k)")
        for r in range(2):
            db.execute(f"CREATE TABLE public.hw_{week}_h{r} PARTITION OF public.hw_{week} "
                       f"FOR VALUES WITH (modulus 2, remainder {r})")
        rows = 2000 if week < 4 else (1000 if week == 4 else 0)
        if rows:
            db.execute(f"INSERT INTO public.hw SELECT '{lo.isoformat()}', g, repeat('x', 200) "
                       f"FROM generate_series(1, {rows}) g")
    db.execute("ANALYZE public.hw")
    with db.connect() as conn:
        forest = load_forest(conn)
    week_bytes = forest.find("hw_1").total_bytes
    assert forest.find("hw_1").rows == 2000
    # per leaf: a quarter of a week more than the current week's leaves hold now
    held = forest.find("hw_4").total_bytes
    limit = (held + week_bytes // 4) // 2
    growth = growth_of(forest, forest.find("hw"), limit_bytes=limit)
    assert growth is not None and growth.leaves_per_partition == 2
    assert growth.rows_per_interval == pytest.approx(2000)
    assert growth.fills_at is not None
    expected = growth.now + timedelta(weeks=(2 * limit - held) / week_bytes)
    assert abs((growth.fills_at - expected).total_seconds()) < 60
    assert fill_text(growth).startswith(f"the 2 partitions of hw_4 will pass {_size(limit)} each")

    config = tmp_path / "config.toml"
    config.write_text(f'[policy."public.hw"]\noversized = {limit}\n')
    assert main(["tree", "-d", db.dsn, "hw", "--growth", "--config", str(config)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # a long line wraps at 80 columns
    assert f"fills: the 2 partitions of hw_4 will pass {_size(limit)} each in about " in out
