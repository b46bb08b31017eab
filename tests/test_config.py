"""The TOML config file: every key, every kind of bad value, and the shipped example."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from tui.core.config import (
    Config,
    ConfigError,
    ConsoleConfig,
    ExplainConfig,
    FindingsConfig,
    PlansConfig,
    load_config,
    parse_config,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def _known_keys(raw: dict) -> set[str]:
    """The keys config.py accepts at one place, read from its own 'unknown key' message."""
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    message = str(info.value)
    assert "known keys: " in message, message
    return set(message.split("known keys: ", 1)[1].rstrip(")").split(", "))


def test_example_documents_every_key_and_parses():
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert set(raw) == _known_keys({"zz_unknown": 1})
    for section in ("findings", "console", "plans", "explain"):
        assert set(raw[section]) == _known_keys({section: {"zz_unknown": 1}}), section
    profile_keys = _known_keys({"profiles": {"p": {"zz_unknown": 1}}})
    assert set().union(*(set(p) for p in raw["profiles"].values())) == profile_keys
    policy_keys = _known_keys({"policy": {"t": {"zz_unknown": 1}}})
    assert set().union(*(set(p) for p in raw["policy"].values())) == policy_keys

    config = parse_config(raw, EXAMPLE)
    assert config.default_profile == "local"
    assert config.profiles["local"].dsn == "host=/var/run/postgresql dbname=payments"
    assert config.profiles["production"].read_only
    assert config.findings == FindingsConfig()  # the example shows the defaults
    assert config.console == ConsoleConfig()
    assert config.plans == PlansConfig()
    assert config.explain == ExplainConfig()
    assert config.warnings == ()  # the example holds no password
    [policy] = config.policies.values()
    assert (policy.schema, policy.name, policy.retention_action) == ("public", "events", "detach")
    text = EXAMPLE.read_text(encoding="utf-8")
    for key in ("oversized", "skew_factor", "runway_intervals", "auto_refresh", "exact_sizes",
                "lock_timeout", "lock_retries", "older_than", "batch", "keep_detached",
                "statement_timeout", "read_only", "dsn", "default_profile", *policy_keys):
        # each key has a comment right above it
        line = text.index(f"\n{key} = ")
        assert text[:line].rstrip().splitlines()[-1].startswith("#"), key


def test_empty_config_gives_defaults():
    config = parse_config({})
    assert config == Config()
    assert config.findings.oversized_bytes == 1024**3
    assert config.plans.older_than == timedelta(days=90)


def test_values_are_converted():
    config = parse_config({
        "profiles": {"a": {"dsn": "dbname=a"}, "b": {"dsn": "dbname=b", "read_only": True}},
        "default_profile": "b",
        "findings": {"oversized": "512MB", "skew_factor": 2, "runway_intervals": 2.5},
        "console": {"auto_refresh": "30s", "exact_sizes": True},
        "plans": {"lock_timeout": "500ms", "lock_retries": 3, "older_than": "12 weeks",
                  "batch": 2, "keep_detached": True},
        "explain": {"statement_timeout": "1min"},
    })
    assert config.profiles["b"].read_only and not config.profiles["a"].read_only
    assert config.findings == FindingsConfig(512 * 1024**2, 2.0, 2.5)
    assert config.console == ConsoleConfig(30.0, True)
    assert config.plans == PlansConfig(0.5, 3, timedelta(weeks=12), 2, True)
    assert config.explain.statement_timeout_seconds == 60.0
    assert parse_config({"findings": {"oversized": 1000}}).findings.oversized_bytes == 1000


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"findings": {"oversized": "huge"}}, "findings.oversized"),
        ({"findings": {"oversized": True}}, "findings.oversized"),
        ({"findings": {"skew_factor": 0.5}}, "findings.skew_factor"),
        ({"findings": {"runway_intervals": "two"}}, "findings.runway_intervals"),
        ({"console": {"auto_refresh": "soon"}}, "console.auto_refresh"),
        ({"console": {"exact_sizes": "yes"}}, "console.exact_sizes"),
        ({"plans": {"lock_timeout": -1}}, "plans.lock_timeout"),
        ({"plans": {"lock_retries": 0}}, "plans.lock_retries"),
        ({"plans": {"older_than": "recently"}}, "plans.older_than"),
        ({"plans": {"batch": 1.5}}, "plans.batch"),
        ({"explain": {"statement_timeout": "forever"}}, "explain.statement_timeout"),
        ({"profiles": {"p": {"dsn": 5}}}, "profiles.p.dsn"),
        ({"profiles": {"p": {"read_only": "no"}}}, "profiles.p.read_only"),
        ({"profiles": {"p": "dbname=x"}}, "profiles.p"),
        ({"default_profile": "missing"}, "default_profile"),
        ({"findings": {"oversize": "1GB"}}, "findings.oversize"),
        ({"findings": 3}, "findings"),
        ({"colour": "blue"}, "colour"),
        # PostgreSQL reads a lock_timeout of 0 (or under 1 ms, rounded down) as "wait forever"
        ({"plans": {"lock_timeout": 0}}, "plans.lock_timeout"),
        ({"plans": {"lock_timeout": "0s"}}, "plans.lock_timeout"),
        ({"plans": {"lock_timeout": "0.5ms"}}, "plans.lock_timeout"),
        ({"plans": {"lock_timeout": 0.0001}}, "plans.lock_timeout"),
        ({"plans": {"lock_timeout": float("nan")}}, "plans.lock_timeout"),
        ({"plans": {"lock_timeout": float("inf")}}, "plans.lock_timeout"),
        ({"plans": {"lock_timeout": "30 days"}}, "plans.lock_timeout"),
        ({"explain": {"statement_timeout": 0}}, "explain.statement_timeout"),
        ({"explain": {"statement_timeout": float("inf")}}, "explain.statement_timeout"),
        ({"plans": {"older_than": "99999999999 years"}}, "plans.older_than"),
        ({"plans": {"older_than": "0 days"}}, "plans.older_than"),
        ({"findings": {"oversized": float("inf")}}, "findings.oversized"),
        ({"findings": {"oversized": float("nan")}}, "findings.oversized"),
        ({"findings": {"oversized": 0}}, "findings.oversized"),
        ({"findings": {"oversized": "99999999999999999999TB"}}, "findings.oversized"),
        ({"findings": {"runway_intervals": float("nan")}}, "findings.runway_intervals"),
        ({"findings": {"runway_intervals": float("inf")}}, "findings.runway_intervals"),
        ({"findings": {"skew_factor": float("nan")}}, "findings.skew_factor"),
        ({"findings": {"skew_factor": float("inf")}}, "findings.skew_factor"),
        ({"console": {"auto_refresh": float("nan")}}, "console.auto_refresh"),
        ({"console": {"auto_refresh": float("inf")}}, "console.auto_refresh"),
        ({"console": {"auto_refresh": "10ms"}}, "console.auto_refresh"),
    ],
)
def test_bad_values_name_the_key(raw, named):
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert f"'{named}'" in str(info.value)
    assert "\n" not in str(info.value)


def _write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    "dsn",
    ["host=db password=secret dbname=x", "host=db password = secret", "password=secret",
     "dbname='x'password=secret", "host=db password=secret colour=blue",
     "postgresql://app:secret@db/x", "postgresql://app@db/x?sslmode=require&password=secret"],
)
def test_password_in_readable_file_warns(tmp_path, dsn):
    body = f'[profiles.p]\ndsn = "{dsn}"\n'
    warned = load_config(_write(tmp_path, body, 0o644))
    assert len(warned.warnings) == 1
    assert "chmod 600" in warned.warnings[0] and "'p'" in warned.warnings[0]
    assert load_config(_write(tmp_path, body, 0o600)).warnings == ()


@pytest.mark.parametrize(
    "dsn", ["postgresql://app@db/x", "host=db sslpassword=keypass sslkey=/k", "dbname=x"]
)
def test_no_warning_without_password(tmp_path, dsn):
    body = f'[profiles.p]\ndsn = "{dsn}"\n'
    assert load_config(_write(tmp_path, body, 0o644)).warnings == ()


def test_load_config_sources_and_file_errors(tmp_path, monkeypatch):
    # no file at the default location is fine
    assert load_config() == Config()
    # $PGPARTS_CONFIG is used, and must exist
    path = _write(tmp_path, '[findings]\noversized = "2GB"\n')
    monkeypatch.setenv("PGPARTS_CONFIG", str(path))
    assert load_config().findings.oversized_bytes == 2 * 1024**3
    monkeypatch.setenv("PGPARTS_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config()
    monkeypatch.delenv("PGPARTS_CONFIG")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)  # a directory
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[findings\n"))
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[profiles.p]\ndsn = "dbname=caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)
    # a bad value is reported with the file and the key
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, '[findings]\noversized = "huge"\n'))
    assert str(path) in str(info.value) and "'findings.oversized'" in str(info.value)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("[plans]\nlock_timeout = 0\n", "'plans.lock_timeout'"),
        ("[plans]\nlock_timeout = nan\n", "'plans.lock_timeout'"),
        ("[findings]\noversized = 1e400\n", "'findings.oversized'"),
        ("[findings]\nrunway_intervals = nan\n", "'findings.runway_intervals'"),
        ("[findings]\nskew_factor = inf\n", "'findings.skew_factor'"),
        ("[console]\nauto_refresh = -inf\n", "'console.auto_refresh'"),
        ('[plans]\nolder_than = "99999999999 years"\n', "'plans.older_than'"),
        ("x = " + "[" * 100_000 + "]" * 100_000 + "\n", "nests arrays or tables too deeply"),
    ],
)
def test_file_values_toml_reads_as_special_floats(tmp_path, body, named):
    """TOML's nan, inf and 1e400 (read as inf), a huge age and absurd nesting: one message."""
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, body))
    assert named in str(info.value) and "\n" not in str(info.value)


def test_allowed_edges():
    c = parse_config({"plans": {"lock_timeout": "1ms", "older_than": "1000 years"},
                      "console": {"auto_refresh": 0}, "explain": {"statement_timeout": "1 day"},
                      "findings": {"oversized": 1, "skew_factor": 1, "runway_intervals": 1}})
    assert c.plans.lock_timeout_seconds == 0.001
    assert c.plans.older_than == timedelta(days=365_000)
    assert c.console.auto_refresh_seconds == 0.0
    assert c.findings.oversized_bytes == 1


def test_bad_dsn_value_is_redacted():
    with pytest.raises(ConfigError) as info:
        parse_config({"profiles": {"p": {"dsn": ["host=db password=hunter22"]}}})
    assert "'profiles.p.dsn'" in str(info.value) and "hunter22" not in str(info.value)


# -- [policy."schema.table"] ---------------------------------------------------------------------
def test_policy_values_and_names():
    config = parse_config({"policy": {
        "sales.orders": {"premake": 8, "retention": "12 weeks", "oversized": "5GB",
                         "consolidate_older_than": "3 months", "consolidate_batch": 2},
        '"Odd Schema"."Mixed Case"': {"retention": "1 year", "retention_action": "drop"},
        "events": {"skew_factor": 3},
    }})
    orders = config.policies["sales.orders"]
    assert (orders.schema, orders.name, orders.premake) == ("sales", "orders", 8)
    assert orders.retention == timedelta(weeks=12)
    assert orders.retention_action == "detach"  # retention without an action: detach
    assert orders.retention_schema is None
    assert orders.consolidate_older_than == timedelta(days=90)
    assert orders.consolidate_batch == 2
    assert orders.thresholds(FindingsConfig()) == FindingsConfig(oversized_bytes=5 * 1024**3)
    odd = config.policies['"Odd Schema"."Mixed Case"']
    assert (odd.schema, odd.name, odd.retention_action) == ("Odd Schema", "Mixed Case", "drop")
    events = config.policies["events"]
    assert (events.schema, events.name) == (None, "events")
    # absent keys do nothing: no premake, no retention, the global thresholds but one
    assert events.premake is events.retention is events.retention_action is None
    assert events.consolidate_older_than is events.consolidate_batch is None
    assert events.thresholds(FindingsConfig(oversized_bytes=7)) == FindingsConfig(7, 3.0, 1.0)
    schema = parse_config({"policy": {"t": {"retention": "1w", "retention_schema": '"Arch"'}}})
    assert schema.policies["t"].retention_schema == "Arch"


@pytest.mark.parametrize(
    ("policy", "named"),
    [
        ({"premake": 0}, 'policy."s.t".premake'),
        ({"premake": 1001}, 'policy."s.t".premake'),
        ({"premake": "4"}, 'policy."s.t".premake'),
        ({"retention": "soon"}, 'policy."s.t".retention'),
        ({"retention": "0 days"}, 'policy."s.t".retention'),
        ({"retention": "1w", "retention_action": "archive"}, 'policy."s.t".retention_action'),
        ({"retention_action": "drop"}, 'policy."s.t".retention_action'),
        ({"retention_schema": "arch"}, 'policy."s.t".retention_schema'),
        ({"retention": "1w", "retention_schema": "a.b"}, 'policy."s.t".retention_schema'),
        ({"retention": "1w", "retention_schema": "a" * 64}, 'policy."s.t".retention_schema'),
        ({"retention": "1w", "retention_action": "drop", "retention_schema": "arch"},
         'policy."s.t".retention_schema'),
        ({"consolidate_older_than": 5}, 'policy."s.t".consolidate_older_than'),
        ({"consolidate_batch": 2}, 'policy."s.t".consolidate_batch'),
        ({"consolidate_older_than": "1w", "consolidate_batch": 0},
         'policy."s.t".consolidate_batch'),
        ({"oversized": "huge"}, 'policy."s.t".oversized'),
        ({"skew_factor": 0.5}, 'policy."s.t".skew_factor'),
        ({"runway_intervals": float("nan")}, 'policy."s.t".runway_intervals'),
        ({"premak": 4}, 'policy."s.t".premak'),
    ],
)
def test_bad_policy_names_the_key(policy, named):
    with pytest.raises(ConfigError) as info:
        parse_config({"policy": {"s.t": policy}})
    assert f"'{named}'" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("policies", "named"),
    [
        ({"a.b.c": {}}, 'policy."a.b.c"'),
        ({'"open': {}}, 'policy."\\"open"'),
        ({"s." + "x" * 64: {}}, "policy."),
        ({"t": 3}, "policy.t"),
        ({"orders": {}, "ORDERS": {}}, "policy.ORDERS"),
    ],
)
def test_bad_policy_tables_are_refused(policies, named):
    with pytest.raises(ConfigError) as info:
        parse_config({"policy": policies})
    assert f"'{named}" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="'policy' must be a table"):
        parse_config({"policy": 5})
