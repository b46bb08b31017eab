"""The demo database: the three user scenarios, plus small tables that show every health finding.

Everything is generated set-based on the server (generate_series, no client round trip per row)
from deterministic expressions, so two seeds with the same `now` and `scale` hold the same rows
and screenshots stay stable. Only dates follow `now`: the weekly and monthly partitions are laid
out around it, so the demo always has a current week, a future week and weeks old enough to
consolidate.

What is built (names as the users know them, see the scenarios):

- ``account_balances``: RANGE ("timestamp") by week (Sunday to Sunday), each week HASH
  (account_address) x 4; the oldest week already consolidated into one plain partition; older
  weeks hold more rows; one recent week has a skewed hash bucket; next week's partitions exist
  and were never analyzed.
- ``control.payment``: RANGE (pay_ts) by year (``payment_2000_2019`` from MINVALUE,
  ``payment_2020_2021``, then one per year up to the current one) and ``payment_default``, which
  holds stray rows dated next year; ``payment_2023`` is the biggest. It references ``control.pdm``,
  ``control.tariff_info`` and ``control.payment_rtp``; ``bonus_disposable``, ``payment_bonus``,
  ``payment_ext`` (two foreign keys) and ``payment_recent`` reference it by (pay_ts, pdm_id).
- ``legacy.payment``: the same payments before partitioning, keyed by a bigserial ``pay_id``,
  with duplicates by error (same pdm_id, pay_ts, tracer), duplicates by design (same pdm and
  timestamp, different tracer, including one machine-minute with more than 60 payments) and
  ``legacy.payment_bonus`` / ``legacy.payment_ext`` pointing at ``pay_id``.
- ``metrics``: monthly, one month missing (a range gap), the oldest months in schema
  ``archive``, an index rolled out to the recent months only, and an invalid index left by a
  failed CREATE UNIQUE INDEX CONCURRENTLY.
- ``audit_log``: monthly, its oldest month left half detached by an interrupted
  DETACH ... CONCURRENTLY.
- ``activity_events``: LIST (activity_id) with a NULL partition and a partition named
  ``"Odd Schema"."Trading ""Active"" Ω"``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import conninfo, sql

DEMO_NOW_ENV = "PGPARTS_DEMO_NOW"
"""Environment variable: an ISO date or timestamp used as 'now' when seeding (for screenshots)."""
DEMO_SCALE_ENV = "PGPARTS_DEMO_SCALE"
"""Environment variable: multiplies the demo's row counts (tests use about 0.02)."""

SEED_VERSION = 1
"""Bumped whenever the layout changes, so an existing demo database is rebuilt."""

WEEKS = 20  # weekly partitions of account_balances: the consolidated one, 17 hashed, now, next
PAST_WEEKS = 18  # complete weeks before the current one, the consolidated one included
HASH_MODULUS = 4
ACTIVITIES = ("xrd_holding", "lsu_holding", "dex_swap", "lending")
SKEWED_WEEK_AGE = 3  # weeks before the current one
SKEWED_BUCKET = 2
OVER_60_PDM = 7  # the machine with more than 60 payments in one minute (legacy.payment)
OVER_60_COUNT = 65

Progress = Callable[[str], None]


class SeedError(RuntimeError):
    """The demo data could not be built."""


# -- dates ----------------------------------------------------------------------------------------
def week_start(day: date) -> date:
    """The Sunday on or before `day` (weeks run Sunday to Sunday)."""
    return day - timedelta(days=(day.weekday() + 1) % 7)


def add_months(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def demo_now_from_env() -> datetime | None:
    """$PGPARTS_DEMO_NOW as an aware datetime (UTC when no offset is given), or None."""
    text = os.environ.get(DEMO_NOW_ENV, "").strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise SeedError(f"{DEMO_NOW_ENV}={text!r} is not an ISO date or timestamp") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def demo_scale_from_env(default: float = 1.0) -> float:
    text = os.environ.get(DEMO_SCALE_ENV, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SeedError(f"{DEMO_SCALE_ENV}={text!r} is not a number") from None
    if not 0 < value <= 100:
        raise SeedError(f"{DEMO_SCALE_ENV}={text!r} must be above 0 and at most 100")
    return value


@dataclass(frozen=True)
class Layout:
    """Where the dated partitions fall for a given `now`; names follow from it."""

    now: datetime
    scale: float

    @property
    def current_week(self) -> date:
        return week_start(self.now.astimezone(UTC).date())

    @property
    def week_starts(self) -> list[date]:
        """Oldest (consolidated) first, the future week last."""
        return [self.current_week + timedelta(weeks=k) for k in range(-PAST_WEEKS, 2)]

    def __post_init__(self) -> None:
        assert len(self.week_starts) == WEEKS

    @property
    def consolidated_week(self) -> date:
        return self.week_starts[0]

    @property
    def future_week(self) -> date:
        return self.week_starts[-1]

    @property
    def skewed_week(self) -> date:
        return self.current_week - timedelta(weeks=SKEWED_WEEK_AGE)

    @property
    def payment_years(self) -> list[int]:
        """The yearly payment partitions after payment_2020_2021, up to the current year."""
        return list(range(2022, max(self.now.year, 2023) + 1))

    @property
    def this_month(self) -> date:
        return self.now.astimezone(UTC).date().replace(day=1)

    @property
    def metrics_months(self) -> list[date]:
        """Eleven months back to two ahead, without the missing one."""
        return [add_months(self.this_month, k) for k in range(-11, 3) if k != -6]

    @property
    def metrics_missing_month(self) -> date:
        return add_months(self.this_month, -6)

    @property
    def metrics_archived_months(self) -> list[date]:
        return [add_months(self.this_month, k) for k in (-11, -10, -9)]

    @property
    def metrics_indexed_months(self) -> list[date]:
        """The months the (host, ts) index was rolled out to before the rollout stopped."""
        return [add_months(self.this_month, k) for k in range(-3, 3)]

    @property
    def metrics_invalid_index_month(self) -> date:
        return add_months(self.this_month, -4)

    @property
    def audit_months(self) -> list[date]:
        return [add_months(self.this_month, k) for k in range(-3, 2)]

    @property
    def audit_pending_month(self) -> date:
        return self.audit_months[0]


def week_name(start: date, suffix: str = "") -> str:
    return f"account_balances_{start:%Y_%m_%d}{suffix}"


def month_name(prefix: str, first: date) -> str:
    return f"{prefix}_{first:%Y_%m}"


def _rows(base: float, scale: float, minimum: int = 1) -> int:
    return max(minimum, round(base * scale))


def _per_bucket(age: int, scale: float) -> int:
    """Accounts per hash bucket in a week `age` weeks old: older weeks were busier."""
    return _rows(50 + 3 * age, scale, minimum=2)


# -- seeding --------------------------------------------------------------------------------------
def resolve_now(conn: psycopg.Connection, now: datetime | None) -> datetime:
    if now is None:
        now = demo_now_from_env()
    if now is None:
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        now = row[0]
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def seed_scenarios(
    conn: psycopg.Connection,
    *,
    scale: float = 1.0,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> None:
    """Build the demo scenarios in the (empty) database `conn` is connected to.

    `now` defaults to $PGPARTS_DEMO_NOW, else the server's clock. `scale` multiplies row counts.
    The work is shared with a second session (account_balances on `conn`, everything else on the
    other), and the interrupted DETACH ... CONCURRENTLY needs a third that holds the parent open,
    so the database must accept new connections with the same parameters as `conn`.
    """
    if scale <= 0:
        raise SeedError("scale must be above 0")
    say = progress or (lambda _msg: None)
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise SeedError("seed_scenarios needs a connection with no transaction open")
    now = resolve_now(conn, now)
    layout = Layout(now, scale)
    saved_autocommit = conn.autocommit
    conn.autocommit = True
    # pgparts sessions search pg_catalog only; the seed is our own DDL in a private database
    # and names its public tables unqualified
    conn.execute(_SEED_SEARCH_PATH)
    try:
        say("building account_balances, control.payment, legacy.payment …")
        with _connect_like(conn) as other, ThreadPoolExecutor(1) as pool:
            others = pool.submit(_build, other, layout, _PART_OTHERS)
            try:
                _build(conn, layout, _PART_ACCOUNT_BALANCES)
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    other.cancel_safe(timeout=5)
                raise
            others.result()
        say("leaving an invalid index and a half-detached partition …")
        # session settings for the two statements that cannot run in a transaction block
        conn.execute("SET lock_timeout = 0")
        try:
            _failed_concurrent_index(conn, layout)
            _interrupted_detach(conn, layout)
        finally:
            conn.execute("RESET lock_timeout")
    finally:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            conn.autocommit = saved_autocommit


def _connect_like(conn: psycopg.Connection) -> psycopg.Connection:
    """Another session with `conn`'s connection parameters."""
    params = dict(conn.info.get_parameters())
    if conn.info.password:
        params["password"] = conn.info.password
    other = psycopg.connect(conninfo.make_conninfo(**params), autocommit=True)
    other.execute(_SEED_SEARCH_PATH)
    return other


_SEED_SEARCH_PATH = "SET search_path TO public"


def _build(
    conn: psycopg.Connection, layout: Layout,
    steps: tuple[Callable[[psycopg.Connection, Layout], None], ...],
) -> None:
    # One transaction per session: a half-built part of the demo is never committed.
    with conn.transaction():
        conn.execute(
            "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0;"
            " SET LOCAL TimeZone = 'UTC'; SET LOCAL synchronous_commit = off;"
            " SET LOCAL maintenance_work_mem = '256MB'; SET LOCAL work_mem = '64MB';"
            " SET LOCAL client_min_messages = warning"
        )
        for step in steps:
            step(conn, layout)


def _x(conn: psycopg.Connection, statement: str, **parts: sql.Composable) -> None:
    """Execute SQL text whose {placeholders} are filled with composed identifiers/literals."""
    conn.execute(sql.SQL(statement).format(**parts))


def _ts(day: date) -> sql.Literal:
    return sql.Literal(_midnight(day))


# -- scenario 1: account_balances -----------------------------------------------------------------
_AB_INDEXES = (
    ("account_balances_timestamp_idx", ("timestamp",)),
    ("account_balances_activity_id_idx", ("activity_id",)),
    ("account_balances_account_address_idx", ("account_address",)),
    ("account_balances_account_address_timestamp_idx", ("account_address", "timestamp")),
    ("account_balances_activity_id_account_address_idx", ("activity_id", "account_address")),
)

_ACCOUNTS_SQL = """
CREATE TEMP TABLE demo_accounts ON COMMIT DROP AS
WITH cand AS (
    SELECT n, ('rdx1q' || translate(md5('account:' || n) || substr(md5('salt:' || n), 1, 21),
                                    '0123456789abcdef', 'qpzry9x8gf2tvdw0'))::varchar(255)
                AS address
    FROM generate_series(1, {candidates}) AS n
), bucketed AS (
    SELECT c.n, c.address,
           (SELECT r FROM generate_series(0, {modulus} - 1) AS r
             WHERE satisfies_hash_partition({probe}::regclass, {modulus}, r, c.address)) AS bucket
    FROM cand c
)
SELECT bucket, (row_number() OVER (PARTITION BY bucket ORDER BY n) - 1)::int AS rn, address,
       -- holdings differ per account but not per bucket (rn is the rank within the bucket)
       (50 + (n * 7919) % 20000)::numeric AS base_amount
FROM bucketed
"""

_AB_INSERT_SQL = """
INSERT INTO account_balances ("timestamp", account_address, usd_value, activity_id, data)
SELECT ts, a.address,
       round(amount * w.price, 2),
       act.activity_id,
       jsonb_build_object('amount', amount, 'price_usd', w.price, 'source', act.source)
FROM demo_weeks w
JOIN demo_accounts a
  ON a.rn < w.per_bucket + floor(w.per_bucket * ((w.idx * 3 + a.bucket * 5) % 4) / 40.0)
  OR (a.bucket = {skew_bucket} AND a.rn >= {extra_from} AND a.rn < {extra_from} + w.extra)
CROSS JOIN generate_series(0, 27) AS t(step)
JOIN (VALUES ('xrd_holding', 1, 1.0, 'ledger'), ('lsu_holding', 2, 0.6, 'ledger'),
             ('dex_swap', 3, 0.15, 'dex'), ('lending', 5, 0.3, 'lending'))
       AS act(activity_id, every, weight, source)
  ON a.rn % act.every = 0
CROSS JOIN LATERAL (
    SELECT w.start + t.step * interval '6 hours' AS ts,
           round(a.base_amount * act.weight * (1 + 0.03 * sin(a.rn + t.step / 4.0))::numeric, 4)
             AS amount
) v
WHERE v.ts < w.cutoff
"""


def _account_balances(conn: psycopg.Connection, layout: Layout) -> None:
    ab = sql.Identifier("account_balances")
    _x(
        conn,
        """CREATE TABLE {ab} (
             "timestamp" timestamptz NOT NULL,
             account_address varchar(255) NOT NULL,
             usd_value decimal(18,2) NOT NULL,
             activity_id text NOT NULL,
             data jsonb NOT NULL
           ) PARTITION BY RANGE ("timestamp")""",
        ab=ab,
    )
    for start in layout.week_starts:
        lo, hi = _ts(start), _ts(start + timedelta(weeks=1))
        if start == layout.consolidated_week:
            _x(conn, "CREATE TABLE {t} PARTITION OF {ab} FOR VALUES FROM ({lo}) TO ({hi})",
               t=sql.Identifier(week_name(start, "_consolidated")), ab=ab, lo=lo, hi=hi)
            continue
        week = sql.Identifier(week_name(start))
        _x(conn, "CREATE TABLE {t} PARTITION OF {ab} FOR VALUES FROM ({lo}) TO ({hi})"
                 " PARTITION BY HASH (account_address)", t=week, ab=ab, lo=lo, hi=hi)
        for r in range(HASH_MODULUS):
            _x(conn, "CREATE TABLE {t} PARTITION OF {w}"
                     " FOR VALUES WITH (modulus {m}, remainder {r})",
               t=sql.Identifier(week_name(start, f"_hash_{r}")), w=week,
               m=sql.Literal(HASH_MODULUS), r=sql.Literal(r))

    # Accounts spread evenly over the hash buckets, so only the designed week is skewed.
    scale = layout.scale
    max_per_bucket = _per_bucket(PAST_WEEKS + 1, scale) + 1
    # enough extra accounts in one bucket that its partition is well past the skew thresholds
    extra = max(2 * _per_bucket(SKEWED_WEEK_AGE, scale), 100)
    candidates = HASH_MODULUS * (max_per_bucket + extra) + 400
    _x(conn, _ACCOUNTS_SQL, candidates=sql.Literal(candidates),
       modulus=sql.Literal(HASH_MODULUS), probe=sql.Literal(week_name(layout.current_week)))
    row = conn.execute(
        "SELECT min(n) FILTER (WHERE bucket <> %s), min(n) FILTER (WHERE bucket = %s)"
        " FROM (SELECT bucket, count(*) AS n FROM demo_accounts GROUP BY bucket) s",
        (SKEWED_BUCKET, SKEWED_BUCKET),
    ).fetchone()
    assert row is not None
    if (row[0] or 0) < max_per_bucket or (row[1] or 0) < max_per_bucket + extra:
        raise SeedError("not enough demo account addresses in every hash bucket")

    conn.execute(
        "CREATE TEMP TABLE demo_weeks (idx int, start timestamptz, cutoff timestamptz,"
        " per_bucket int, extra int, price numeric) ON COMMIT DROP"
    )
    with conn.cursor() as cur:
        weeks = []
        for idx, start in enumerate(layout.week_starts):
            age = (layout.current_week - start).days // 7
            stop = _midnight(start + timedelta(weeks=1))
            cutoff = min(stop, layout.now)  # the current week is filled up to now only
            price = round(0.012 + 0.004 * math.sin(idx / 3.0), 5)
            weeks.append((idx, _midnight(start), cutoff, _per_bucket(max(age, 0), scale),
                          extra if start == layout.skewed_week else 0, price))
        cur.executemany("INSERT INTO demo_weeks VALUES (%s, %s, %s, %s, %s, %s)", weeks)
    _x(conn, _AB_INSERT_SQL, skew_bucket=sql.Literal(SKEWED_BUCKET),
       extra_from=sql.Literal(max_per_bucket))
    # Keys and indexes after the load: one sort per index beats row-by-row maintenance.
    _x(conn, 'ALTER TABLE {ab} ADD CONSTRAINT {pk} PRIMARY KEY'
             ' (account_address, "timestamp", activity_id)',
       ab=ab, pk=sql.Identifier("account_balances_pkey"))
    for name, cols in _AB_INDEXES:
        _x(conn, "CREATE INDEX {i} ON {ab} ({cols})", i=sql.Identifier(name), ab=ab,
           cols=sql.SQL(", ").join(map(sql.Identifier, cols)))


# -- scenario 2: control.payment ------------------------------------------------------------------
_PAYMENT_REFS_SQL = """
CREATE TABLE control.pdm (
    pdm_id int PRIMARY KEY,
    serial_no text NOT NULL UNIQUE,
    model text NOT NULL,          -- model-5 machines have a one-minute clock
    zone text NOT NULL,
    installed_on date NOT NULL
);
INSERT INTO control.pdm
SELECT n, 'PDM-' || lpad(n::text, 5, '0'),
       CASE WHEN n % 5 = 2 THEN 'model-5' ELSE 'model-' || (3 + n % 2) END,
       (ARRAY['Centre', 'Harbour', 'University', 'Station', 'Old Town', 'Hospital'])[1 + n % 6],
       date '2014-03-01' + (n * 37 % 2900)
FROM generate_series(1, {pdms}) AS n;

CREATE TABLE control.tariff_info (
    tariff_id int PRIMARY KEY,
    name text NOT NULL,
    zone text NOT NULL,
    rate_per_hour numeric(8,2) NOT NULL,
    valid_from date NOT NULL
);
INSERT INTO control.tariff_info
SELECT n, (ARRAY['standard', 'resident', 'short stay', 'evening'])[1 + n % 4] || ' ' || z.zone,
       z.zone, 0.80 + (n % 7) * 0.35, date '2015-01-01' + (n * 53 % 3000)
FROM generate_series(1, 12) AS n,
     LATERAL (SELECT (ARRAY['Centre', 'Harbour', 'University', 'Station', 'Old Town',
                            'Hospital'])[1 + n % 6] AS zone) z;

CREATE TABLE control.payment_rtp (
    rtp_id bigint PRIMARY KEY,
    provider text NOT NULL,
    reference text NOT NULL UNIQUE,
    requested_at timestamptz NOT NULL,
    settled_at timestamptz
);
"""

_PAYMENT_TABLE_SQL = """
CREATE TABLE control.payment (
    pay_ts timestamp(0) with time zone NOT NULL,
    pdm_id int NOT NULL,
    tracer text NOT NULL,
    amount numeric(10,2) NOT NULL,
    currency char(3) NOT NULL DEFAULT 'EUR',
    tariff_id int NOT NULL,
    method text NOT NULL,
    rtp_id bigint,
    duration_min int NOT NULL,
    plate text
) PARTITION BY RANGE (pay_ts)
"""

_PAYMENT_INSERT_SQL = """
INSERT INTO control.payment
    (pay_ts, pdm_id, tracer, amount, tariff_id, method, rtp_id, duration_min, plate)
SELECT v.ts, v.pdm,
       'TR' || to_char(v.ts, 'YYYYMMDDHH24MISS') || '-' || lpad(v.pdm::text, 4, '0')
            || '-' || upper(substr(md5(r.tag || ':' || i), 1, 4)),
       round(t.rate_per_hour * v.dur / 60.0, 2),
       t.tariff_id, v.method,
       CASE WHEN v.method = 'rtp' THEN r.id_base + i END,
       v.dur,
       upper(substr(md5('plate:' || (i * 13 % 5000)), 1, 2)) || '-'
         || lpad(((i * 7) % 1000)::text, 3, '0') || '-'
         || upper(substr(md5('plate2:' || (i * 13 % 5000)), 1, 2))
FROM demo_pay_ranges r
CROSS JOIN LATERAL generate_series(0, r.n - 1) AS i
CROSS JOIN LATERAL (
    SELECT r.lo + make_interval(secs => i::bigint * r.step + (i::bigint * 7919) % r.step) AS ts,
           1 + ((i::bigint * 7919 + r.salt) % {pdms})::int AS pdm,
           15 * (1 + (i * 31) % 16) AS dur,
           (ARRAY['card', 'card', 'app', 'coin', 'card', 'rtp', 'app'])[1 + (i + r.salt) % 7]
             AS method
) v
JOIN control.tariff_info t ON t.tariff_id = 1 + v.pdm % 12
"""

_PAYMENT_AFTER_SQL = """
INSERT INTO control.payment_rtp (rtp_id, provider, reference, requested_at, settled_at)
SELECT rtp_id, (ARRAY['Bluecode', 'Payconiq', 'iDEAL'])[1 + rtp_id % 3],
       'RTP' || rtp_id, pay_ts - interval '20 seconds',
       CASE WHEN rtp_id % 50 <> 0 THEN pay_ts + interval '3 seconds' END
FROM control.payment WHERE rtp_id IS NOT NULL;

ALTER TABLE control.payment ADD CONSTRAINT payment_pkey PRIMARY KEY (pay_ts, pdm_id);
ALTER TABLE control.payment ADD CONSTRAINT payment_pdm_id_fkey
    FOREIGN KEY (pdm_id) REFERENCES control.pdm;
ALTER TABLE control.payment ADD CONSTRAINT payment_tariff_id_fkey
    FOREIGN KEY (tariff_id) REFERENCES control.tariff_info;
ALTER TABLE control.payment ADD CONSTRAINT payment_rtp_id_fkey
    FOREIGN KEY (rtp_id) REFERENCES control.payment_rtp;
CREATE INDEX payment_pdm_id_pay_ts_idx ON control.payment (pdm_id, pay_ts);
CREATE INDEX payment_tracer_idx ON control.payment (tracer);

CREATE TABLE control.bonus_disposable (
    bonus_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pay_ts timestamp(0) with time zone NOT NULL,
    pdm_id int NOT NULL,
    bonus_code text NOT NULL,
    amount numeric(10,2) NOT NULL
);
INSERT INTO control.bonus_disposable (pay_ts, pdm_id, bonus_code, amount)
SELECT pay_ts, pdm_id, 'WELCOME-' || upper(substr(md5(tracer), 1, 6)), 1.00
FROM control.payment WHERE hashtext(tracer) % 150 = 0 ORDER BY pay_ts;
CREATE INDEX bonus_disposable_pay_ts_pdm_id_idx ON control.bonus_disposable (pay_ts, pdm_id);

CREATE TABLE control.payment_bonus (
    payment_bonus_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pay_ts timestamp(0) with time zone NOT NULL,
    pdm_id int NOT NULL,
    points int NOT NULL
);
INSERT INTO control.payment_bonus (pay_ts, pdm_id, points)
SELECT pay_ts, pdm_id, 1 + duration_min / 15
FROM control.payment WHERE pay_ts >= '2023-01-01' AND hashtext(tracer) % 40 = 0 ORDER BY pay_ts;
CREATE INDEX payment_bonus_pay_ts_pdm_id_idx ON control.payment_bonus (pay_ts, pdm_id);

-- a correction or refund points at the payment it extends and at the original payment
CREATE TABLE control.payment_ext (
    pay_ts timestamp(0) with time zone NOT NULL,
    pdm_id int NOT NULL,
    orig_pay_ts timestamp(0) with time zone NOT NULL,
    orig_pdm_id int NOT NULL,
    kind text NOT NULL,
    note text,
    CONSTRAINT payment_ext_pkey PRIMARY KEY (pay_ts, pdm_id)
);
INSERT INTO control.payment_ext
SELECT pay_ts, pdm_id, orig_ts, pdm_id,
       CASE WHEN hashtext(tracer) % 3 = 0 THEN 'refund' ELSE 'extension' END,
       'ticket ' || upper(substr(md5(tracer), 1, 8))
FROM (SELECT p.*, lag(pay_ts) OVER (PARTITION BY pdm_id ORDER BY pay_ts) AS orig_ts
      FROM control.payment p) s
WHERE orig_ts IS NOT NULL AND hashtext(tracer) % 250 = 0;
CREATE INDEX payment_ext_orig_idx ON control.payment_ext (orig_pay_ts, orig_pdm_id);

-- the payments of the last 30 days, kept apart for the live dashboards
CREATE TABLE control.payment_recent (
    pay_ts timestamp(0) with time zone NOT NULL,
    pdm_id int NOT NULL,
    status text NOT NULL,
    CONSTRAINT payment_recent_pkey PRIMARY KEY (pay_ts, pdm_id)
);
INSERT INTO control.payment_recent
SELECT pay_ts, pdm_id, CASE WHEN method = 'rtp' AND rtp_id % 50 = 0 THEN 'pending' ELSE 'ok' END
FROM control.payment WHERE pay_ts >= {now} - interval '30 days' AND pay_ts < {now};

-- foreign keys after the rows: one validating join each instead of a check per row
ALTER TABLE control.bonus_disposable ADD CONSTRAINT bonus_disposable_payment_fkey
    FOREIGN KEY (pay_ts, pdm_id) REFERENCES control.payment (pay_ts, pdm_id);
ALTER TABLE control.payment_bonus ADD CONSTRAINT payment_bonus_payment_fkey
    FOREIGN KEY (pay_ts, pdm_id) REFERENCES control.payment (pay_ts, pdm_id);
ALTER TABLE control.payment_ext ADD CONSTRAINT payment_ext_payment_fkey
    FOREIGN KEY (pay_ts, pdm_id) REFERENCES control.payment (pay_ts, pdm_id);
ALTER TABLE control.payment_ext ADD CONSTRAINT payment_ext_orig_payment_fkey
    FOREIGN KEY (orig_pay_ts, orig_pdm_id) REFERENCES control.payment (pay_ts, pdm_id);
ALTER TABLE control.payment_recent ADD CONSTRAINT payment_recent_payment_fkey
    FOREIGN KEY (pay_ts, pdm_id) REFERENCES control.payment (pay_ts, pdm_id);
"""

# Base row counts per range of control.payment at scale 1; 2023 was the big year.
_PAYMENT_ROWS = {"2000_2019": 4_000, "2020_2021": 26_000, 2022: 36_000, 2023: 80_000}


def _payment_rows(year: int) -> int:
    return _PAYMENT_ROWS.get(year) or round(38_000 * 1.06 ** (year - 2024))


def _payment(conn: psycopg.Connection, layout: Layout) -> None:
    scale = layout.scale
    pdms = 250
    _x(conn, _PAYMENT_REFS_SQL, pdms=sql.Literal(pdms))
    conn.execute(_PAYMENT_TABLE_SQL)
    parent = sql.Identifier("control", "payment")

    def part(name: str, bound: sql.Composable) -> None:
        _x(conn, "CREATE TABLE {t} PARTITION OF {p} {b}",
           t=sql.Identifier("control", name), p=parent, b=bound)

    def years(lo: int, hi: int) -> sql.Composable:
        return sql.SQL("FOR VALUES FROM ({}) TO ({})").format(
            _ts(date(lo, 1, 1)), _ts(date(hi, 1, 1)))

    part("payment_2000_2019", sql.SQL("FOR VALUES FROM (MINVALUE) TO ({})").format(
        _ts(date(2020, 1, 1))))
    part("payment_2020_2021", years(2020, 2022))
    for year in layout.payment_years:
        part(f"payment_{year}", years(year, year + 1))
    part("payment_default", sql.SQL("DEFAULT"))

    # (first instant, last instant (exclusive), rows): rows are spread evenly in between
    ranges: list[tuple[datetime, datetime, int, str]] = [
        (_midnight(date(2015, 1, 1)), _midnight(date(2020, 1, 1)),
         _rows(_PAYMENT_ROWS["2000_2019"], scale, 10), "2000_2019"),
        (_midnight(date(2020, 1, 1)), _midnight(date(2022, 1, 1)),
         _rows(_PAYMENT_ROWS["2020_2021"], scale, 10), "2020_2021"),
    ]
    for year in layout.payment_years:
        lo, hi = _midnight(date(year, 1, 1)), _midnight(date(year + 1, 1, 1))
        n = _rows(_payment_rows(year), scale, 10)
        if hi > layout.now:  # the current year: only what was paid so far
            n = max(10, round(n * (layout.now - lo) / (hi - lo)))
            hi = layout.now
        ranges.append((lo, hi, n, str(year)))
    # Stray rows: a machine whose clock jumped a year ahead; they land in payment_default.
    next_year = layout.payment_years[-1] + 1
    ranges.append((_midnight(date(next_year, 2, 1)), _midnight(date(next_year, 2, 3)),
                   max(12, round(60 * scale)), "stray"))
    conn.execute(
        "CREATE TEMP TABLE demo_pay_ranges (tag text, lo timestamptz, step bigint, n int,"
        " salt int, id_base bigint) ON COMMIT DROP"
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO demo_pay_ranges VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (tag, lo, max(1, int((hi - lo).total_seconds()) // n), n, k * 17,
                 (k + 1) * 10_000_000)
                for k, (lo, hi, n, tag) in enumerate(ranges)
            ],
        )
    _x(conn, _PAYMENT_INSERT_SQL, pdms=sql.Literal(pdms))
    _x(conn, _PAYMENT_AFTER_SQL, now=sql.Literal(layout.now))


# -- scenario 3: legacy.payment (unpartitioned, before the migration) -----------------------------
_LEGACY_SQL = """
CREATE TABLE legacy.payment (
    pay_id bigserial PRIMARY KEY,
    pay_ts timestamp(0) with time zone NOT NULL,
    pdm_id int NOT NULL,
    tracer text NOT NULL,
    amount numeric(10,2) NOT NULL,
    currency char(3) NOT NULL DEFAULT 'EUR',
    tariff_id int NOT NULL,
    method text NOT NULL,
    duration_min int NOT NULL
);

CREATE TEMP TABLE demo_legacy ON COMMIT DROP AS
SELECT i, v.pdm, v.ts, 0 AS copy_no,
       'TR' || to_char(v.ts, 'YYYYMMDDHH24MISS') || '-' || lpad(v.pdm::text, 4, '0')
            || '-' || upper(substr(md5('legacy:' || i), 1, 4)) AS tracer
FROM generate_series(0, {n} - 1) AS i
CROSS JOIN LATERAL (SELECT 1 + ((i::bigint * 7919) % {pdms})::int AS pdm) p
CROSS JOIN LATERAL (
    SELECT CASE WHEN p.pdm % 5 = 2  -- model-5: a one-minute clock, seconds are always :00
                THEN date_trunc('minute', t) ELSE t END AS ts, p.pdm
    FROM (SELECT {lo} + make_interval(secs => i::bigint * {step} + (i::bigint * 7919) % {step})
            AS t) tt
) v;

-- duplicates by design: a model-5 machine sends a payment and its reconciliation in the same
-- minute, so they share the timestamp and differ only in tracer
INSERT INTO demo_legacy
SELECT l.i, l.pdm, l.ts, k, l.tracer || '-R' || k
FROM demo_legacy l, generate_series(1, 1 + l.i % 3) AS k
WHERE l.pdm % 5 = 2 AND l.i % 97 = 0;

-- more than 60 payments in one minute for one machine (a queue replayed after an outage):
-- seconds cannot be renumbered within the minute, the migration must report them
INSERT INTO demo_legacy
SELECT -1, {over60_pdm}, date_trunc('minute', {lo} + interval '200 days'), k,
       'TR-REPLAY-' || lpad(k::text, 3, '0')
FROM generate_series(1, {over60}) AS k;

-- duplicates by error: the same payment (pdm, pay_ts, tracer) stored twice or three times
INSERT INTO demo_legacy
SELECT l.i, l.pdm, l.ts, 100 + k, l.tracer
FROM demo_legacy l, generate_series(1, 1 + (l.i / 211) % 2) AS k
WHERE l.copy_no = 0 AND l.i % 211 = 5;

INSERT INTO legacy.payment (pay_ts, pdm_id, tracer, amount, tariff_id, method, duration_min)
SELECT l.ts, l.pdm, l.tracer, round(t.rate_per_hour * d.dur / 60.0, 2), t.tariff_id,
       (ARRAY['card', 'coin', 'card', 'app'])[1 + abs(l.i) % 4], d.dur
FROM demo_legacy l
CROSS JOIN LATERAL (SELECT 15 * (1 + (abs(l.i) * 31) % 16) AS dur) d
JOIN control.tariff_info t ON t.tariff_id = 1 + l.pdm % 12
ORDER BY l.ts, l.pdm, l.copy_no;  -- pay_id follows arrival order; a retry comes right after

ALTER TABLE legacy.payment ADD CONSTRAINT payment_pdm_id_fkey
    FOREIGN KEY (pdm_id) REFERENCES control.pdm;
ALTER TABLE legacy.payment ADD CONSTRAINT payment_tariff_id_fkey
    FOREIGN KEY (tariff_id) REFERENCES control.tariff_info;
CREATE INDEX payment_pay_ts_idx ON legacy.payment (pay_ts);
CREATE INDEX payment_pdm_id_pay_ts_idx ON legacy.payment (pdm_id, pay_ts);

CREATE TABLE legacy.payment_bonus (
    bonus_id bigserial PRIMARY KEY,
    pay_id bigint NOT NULL,
    points int NOT NULL
);
-- references point at the first copy of a payment (the one the deduplication keeps)
INSERT INTO legacy.payment_bonus (pay_id, points)
SELECT min(pay_id), 1 + min(duration_min) / 15
FROM legacy.payment GROUP BY pdm_id, pay_ts, tracer HAVING hashtext(tracer) % 30 = 0
ORDER BY 1;
ALTER TABLE legacy.payment_bonus ADD CONSTRAINT payment_bonus_pay_id_fkey
    FOREIGN KEY (pay_id) REFERENCES legacy.payment (pay_id);
CREATE INDEX payment_bonus_pay_id_idx ON legacy.payment_bonus (pay_id);

CREATE TABLE legacy.payment_ext (
    ext_id bigserial PRIMARY KEY,
    pay_id bigint NOT NULL,
    orig_pay_id bigint,
    kind text NOT NULL
);
INSERT INTO legacy.payment_ext (pay_id, orig_pay_id, kind)
SELECT pay_id, prev_id, CASE WHEN pay_id % 3 = 0 THEN 'refund' ELSE 'extension' END
FROM (SELECT min(pay_id) AS pay_id,
             lag(min(pay_id)) OVER (PARTITION BY pdm_id ORDER BY pay_ts, tracer) AS prev_id,
             tracer
      FROM legacy.payment GROUP BY pdm_id, pay_ts, tracer) s
WHERE prev_id IS NOT NULL AND hashtext(tracer) % 200 = 0
ORDER BY 1;
ALTER TABLE legacy.payment_ext ADD CONSTRAINT payment_ext_pay_id_fkey
    FOREIGN KEY (pay_id) REFERENCES legacy.payment (pay_id);
ALTER TABLE legacy.payment_ext ADD CONSTRAINT payment_ext_orig_pay_id_fkey
    FOREIGN KEY (orig_pay_id) REFERENCES legacy.payment (pay_id);
"""


def _legacy_payment(conn: psycopg.Connection, layout: Layout) -> None:
    n = _rows(60_000, layout.scale, 200)
    lo, hi = _midnight(date(2019, 1, 1)), _midnight(date(2021, 1, 1))
    create_legacy_payment(conn, n, lo, int((hi - lo).total_seconds()) // n)


def create_legacy_payment(conn: psycopg.Connection, n: int, lo: datetime, step: int,
                          over60: int = OVER_60_COUNT) -> None:
    """legacy.payment and the two tables referencing it (schema legacy exists; its foreign
    keys point at control.pdm and control.tariff_info): `n` payments `step` seconds apart
    from `lo`, plus duplicates, and `over60` replayed payments in one minute (bench/migrate.py
    builds the same table at scale, without them)."""
    _x(conn, _LEGACY_SQL, n=sql.Literal(n), pdms=sql.Literal(250), lo=sql.Literal(lo),
       step=sql.Literal(step), over60_pdm=sql.Literal(OVER_60_PDM),
       over60=sql.Literal(over60))


# -- extra demo tables: one of every finding ------------------------------------------------------
def _metrics(conn: psycopg.Connection, layout: Layout) -> None:
    parent = sql.Identifier("metrics")
    conn.execute(
        "CREATE TABLE metrics (ts timestamptz NOT NULL, host text NOT NULL,"
        " metric text NOT NULL, value double precision NOT NULL) PARTITION BY RANGE (ts)"
    )
    for first in layout.metrics_months:
        schema = "archive" if first in layout.metrics_archived_months else "public"
        _x(conn, "CREATE TABLE {t} PARTITION OF {p} FOR VALUES FROM ({lo}) TO ({hi})",
           t=sql.Identifier(schema, month_name("metrics", first)), p=parent,
           lo=_ts(first), hi=_ts(add_months(first, 1)))
    hosts = _rows(10, layout.scale, 2)
    samples_from = _midnight(layout.metrics_months[0])
    _x(conn, """
        INSERT INTO metrics (ts, host, metric, value)
        SELECT ts, 'db-' || lpad(h::text, 2, '0'), m,
               round((50 + 40 * sin(h + extract(epoch FROM ts) / 86400.0))::numeric, 2)
        FROM generate_series({lo}, {now}, interval '3 hours') AS ts,
             generate_series(1, {hosts}) AS h,
             unnest(ARRAY['cpu_pct', 'disk_used_pct']) AS m
        WHERE ts < {now} AND NOT (ts >= {gap_lo} AND ts < {gap_hi})""",
       lo=sql.Literal(samples_from), now=sql.Literal(layout.now), hosts=sql.Literal(hosts),
       gap_lo=_ts(layout.metrics_missing_month),
       gap_hi=_ts(add_months(layout.metrics_missing_month, 1)))
    # A collector sent one sample twice: the unique index built later fails on it.
    _x(conn, "INSERT INTO metrics SELECT ts, host, metric, value + 1 FROM metrics"
             " WHERE ts = {ts} AND host = 'db-01' AND metric = 'cpu_pct'",
       ts=_ts(layout.metrics_invalid_index_month + timedelta(days=9)))
    conn.execute("CREATE INDEX metrics_ts_idx ON metrics (ts)")
    # An index rolled out by hand, partition by partition, and not finished: created ON ONLY
    # the parent and attached on the recent months only, so the parent index stays invalid.
    conn.execute("CREATE INDEX metrics_host_ts_idx ON ONLY metrics (host, ts)")
    for first in layout.metrics_indexed_months:
        leaf = month_name("metrics", first)
        idx = f"{leaf}_host_ts_idx"
        _x(conn, "CREATE INDEX {i} ON {t} (host, ts)",
           i=sql.Identifier(idx), t=sql.Identifier("public", leaf))
        _x(conn, "ALTER INDEX {pi} ATTACH PARTITION {i}",
           pi=sql.Identifier("metrics_host_ts_idx"), i=sql.Identifier("public", idx))


def _audit_log(conn: psycopg.Connection, layout: Layout) -> None:
    parent = sql.Identifier("audit_log")
    conn.execute(
        "CREATE TABLE audit_log (logged_at timestamptz NOT NULL, actor text NOT NULL,"
        " action text NOT NULL, detail jsonb NOT NULL) PARTITION BY RANGE (logged_at)"
    )
    for first in layout.audit_months:
        _x(conn, "CREATE TABLE {t} PARTITION OF {p} FOR VALUES FROM ({lo}) TO ({hi})",
           t=sql.Identifier(month_name("audit_log", first)), p=parent,
           lo=_ts(first), hi=_ts(add_months(first, 1)))
    _x(conn, """
        INSERT INTO audit_log (logged_at, actor, action, detail)
        SELECT ts, (ARRAY['alice', 'bob', 'cron', 'deploy'])[1 + k % 4],
               (ARRAY['login', 'update tariff', 'export', 'refund'])[1 + (k * 7) % 4],
               jsonb_build_object('ip', '10.0.' || (k % 16) || '.' || (k % 200), 'n', k)
        FROM generate_series(0, {n} - 1) AS k,
             LATERAL (SELECT {lo} + (k::float8 / {n}) * ({now} - {lo}) AS ts) t""",
       n=sql.Literal(_rows(4000, layout.scale, 40)), lo=_ts(layout.audit_months[0]),
       now=sql.Literal(layout.now))
    conn.execute("CREATE INDEX audit_log_logged_at_idx ON audit_log (logged_at)")


def _activity_events(conn: psycopg.Connection, layout: Layout) -> None:
    # Names that need quoting everywhere: capitals, spaces, a double quote, non-ASCII.
    parent = sql.Identifier("activity_events")
    conn.execute(
        "CREATE TABLE activity_events (ts timestamptz NOT NULL,"
        " account_address varchar(255) NOT NULL, activity_id text, amount numeric(18,2))"
        " PARTITION BY LIST (activity_id)"
    )
    for ident, values in (
        (sql.Identifier("activity_events_holding"), ("xrd_holding", "lsu_holding")),
        (sql.Identifier("Odd Schema", 'Trading "Active" Ω'), ("dex_swap", "lending")),
    ):
        _x(conn, "CREATE TABLE {t} PARTITION OF {p} FOR VALUES IN ({v})", t=ident, p=parent,
           v=sql.SQL(", ").join(map(sql.Literal, values)))
    conn.execute("CREATE TABLE activity_events_unclassified PARTITION OF activity_events"
                 " FOR VALUES IN (NULL)")
    # small on purpose: list partitions differ in size by nature, below the skew thresholds
    _x(conn, """
        INSERT INTO activity_events (ts, account_address, activity_id, amount)
        SELECT {lo} + k * interval '17 minutes',
               'rdx1q' || translate(md5('event:' || (k % 300)), '0123456789abcdef',
                                    'qpzry9x8gf2tvdw0'),
               (ARRAY['xrd_holding', 'lsu_holding', 'dex_swap', 'lending', NULL])[1 + k % 5],
               round((k * 7919 % 100000) / 100.0, 2)
        FROM generate_series(0, {n} - 1) AS k""",
       lo=sql.Literal(layout.now - timedelta(days=30)), n=sql.Literal(_rows(3000, layout.scale,
                                                                              50)))
    conn.execute("CREATE INDEX activity_events_account_address_idx"
                 " ON activity_events (account_address)")


def _analyze_account_balances(conn: psycopg.Connection, layout: Layout) -> None:
    """ANALYZE every leaf but next week's partitions, which stay never analyzed.

    ANALYZE of a partitioned table also analyzes every partition below it, so account_balances
    is analyzed leaf by leaf, as autovacuum would (it never analyzes partitioned tables).
    """
    for start in layout.week_starts:
        if start == layout.future_week:
            continue
        if start == layout.consolidated_week:
            leaves = [week_name(start, "_consolidated")]
        else:
            leaves = [week_name(start, f"_hash_{r}") for r in range(HASH_MODULUS)]
        _x(conn, "ANALYZE {t}", t=sql.SQL(", ").join(map(sql.Identifier, leaves)))


def _analyze_others(conn: psycopg.Connection, layout: Layout) -> None:
    for schema, table in (
        ("control", "pdm"), ("control", "tariff_info"), ("control", "payment_rtp"),
        ("control", "payment"), ("control", "bonus_disposable"), ("control", "payment_bonus"),
        ("control", "payment_ext"), ("control", "payment_recent"),
        ("legacy", "payment"), ("legacy", "payment_bonus"), ("legacy", "payment_ext"),
        ("public", "metrics"), ("public", "audit_log"), ("public", "activity_events"),
    ):
        _x(conn, "ANALYZE {t}", t=sql.Identifier(schema, table))


def _schemas(conn: psycopg.Connection, layout: Layout) -> None:
    conn.execute(
        "CREATE SCHEMA control; CREATE SCHEMA archive; CREATE SCHEMA legacy;"
        ' CREATE SCHEMA "Odd Schema"'
    )


def _failed_concurrent_index(conn: psycopg.Connection, layout: Layout) -> None:
    """A CREATE UNIQUE INDEX CONCURRENTLY that failed on a duplicate leaves an invalid index."""
    leaf = month_name("metrics", layout.metrics_invalid_index_month)
    try:
        _x(conn, "CREATE UNIQUE INDEX CONCURRENTLY {i} ON {t} (host, metric, ts)",
           i=sql.Identifier(f"{leaf}_host_metric_ts_key"), t=sql.Identifier("public", leaf))
    except psycopg.errors.UniqueViolation:
        pass  # the point of the exercise
    else:
        raise SeedError(f"the unique index on {leaf} should have failed on its duplicate")


def _interrupted_detach(conn: psycopg.Connection, layout: Layout) -> None:
    """Leave one audit_log partition pending detach, as a cancelled retention job would.

    DETACH ... CONCURRENTLY marks the partition pending and commits, then waits for every
    transaction that has touched the parent; a reader holding one open keeps it waiting until
    the statement timeout cancels it, and the partition stays pending. The timeout starts
    short and grows only if the first phase had not even committed (a very busy server).
    """
    name = month_name("audit_log", layout.audit_pending_month)
    for timeout_ms in (250, 1000, 5000):
        with _connect_like(conn) as reader:
            reader.autocommit = False
            reader.execute("SELECT count(*) FROM audit_log")  # keeps its transaction open
            try:
                _x(conn, "SET statement_timeout = {ms}", ms=sql.Literal(f"{timeout_ms}ms"))
                _x(conn, "ALTER TABLE audit_log DETACH PARTITION {t} CONCURRENTLY",
                   t=sql.Identifier(name))
            except psycopg.errors.QueryCanceled:
                pass
            else:
                raise SeedError("the concurrent detach should have waited for the open reader")
            finally:
                conn.execute("RESET statement_timeout")
                reader.rollback()
        row = conn.execute(
            "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = %s::regclass", (name,)
        ).fetchone()
        if row and row[0]:
            return
    raise SeedError(f"the audit_log partition {name} did not stay pending detach")


_PART_ACCOUNT_BALANCES = (_account_balances, _analyze_account_balances)
_PART_OTHERS = (
    _schemas, _payment, _legacy_payment, _metrics, _audit_log, _activity_events, _analyze_others,
)
