"""The TOML configuration file: connection profiles and tunables, validated key by key."""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import platformdirs
import psycopg
from psycopg import conninfo as pg_conninfo

from .connection import redact
from .names import check_identifier_length, parse_qualified_name
from .units import parse_age, parse_seconds, parse_size


class ConfigError(ValueError):
    """The configuration file is unreadable or holds a bad value. The message names the key."""


@dataclass(frozen=True)
class Profile:
    """[profiles.NAME]: a named connection."""

    name: str
    dsn: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class FindingsConfig:
    """[findings]: the thresholds of the health checks."""

    oversized_bytes: int = 1024**3
    skew_factor: float = 1.5
    runway_intervals: float = 1.0


@dataclass(frozen=True)
class ConsoleConfig:
    """[console]: refresh, sizes and key bindings of the console."""

    auto_refresh_seconds: float = 0.0  # 0 = off
    exact_sizes: bool = False
    # [console.keymap]: binding id -> keys ("f2" or "f2,ctrl+t"), given to Textual's set_keymap
    keymap: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlansConfig:
    """[plans]: lock timeouts, retries and the defaults of plan kinds."""

    lock_timeout_seconds: float = 2.0
    lock_retries: int = 5
    older_than: timedelta = timedelta(days=90)
    batch: int = 5
    keep_detached: bool = False


@dataclass(frozen=True)
class ExplainConfig:
    """[explain]: the EXPLAIN statement timeout."""

    statement_timeout_seconds: float = 30.0


@dataclass(frozen=True)
class TablePolicy:
    """`[policy."schema.table"]`: what pgparts should keep true of one partitioned table.

    None means the key is absent: that part of the policy does nothing. `findings` holds only the
    thresholds the policy sets; `thresholds()` lays them over the global [findings].
    """

    key: str  # as written in the file, for messages
    schema: str | None  # None: the name alone, resolved like `pgparts tree NAME`
    name: str
    premake: int | None = None
    retention: timedelta | None = None
    retention_action: str | None = None  # "detach" | "drop" (retention given: "detach")
    retention_schema: str | None = None
    consolidate_older_than: timedelta | None = None
    consolidate_batch: int | None = None
    oversized_bytes: int | None = None
    skew_factor: float | None = None
    runway_intervals: float | None = None

    def thresholds(self, base: FindingsConfig) -> FindingsConfig:
        return FindingsConfig(
            oversized_bytes=self.oversized_bytes if self.oversized_bytes is not None
            else base.oversized_bytes,
            skew_factor=self.skew_factor if self.skew_factor is not None else base.skew_factor,
            runway_intervals=self.runway_intervals if self.runway_intervals is not None
            else base.runway_intervals,
        )

    @property
    def has_thresholds(self) -> bool:
        return any(v is not None for v in
                   (self.oversized_bytes, self.skew_factor, self.runway_intervals))


@dataclass(frozen=True)
class Config:
    """The whole configuration file, validated (defaults when there is none)."""

    path: Path | None = None
    default_profile: str | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)
    findings: FindingsConfig = field(default_factory=FindingsConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    plans: PlansConfig = field(default_factory=PlansConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    warnings: tuple[str, ...] = ()
    # keyed by the policy's table name as written in the file
    policies: dict[str, TablePolicy] = field(default_factory=dict)


def default_config_path() -> Path:
    return platformdirs.user_config_path("pgparts", appauthor=False) / "config.toml"


def state_dir() -> Path:
    """Where journals and other state live ($PGPARTS_STATE_DIR overrides, for tests)."""
    override = os.environ.get("PGPARTS_STATE_DIR")
    return Path(override) if override else platformdirs.user_state_path("pgparts", appauthor=False)


def cache_dir() -> Path:
    override = os.environ.get("PGPARTS_CACHE_DIR")
    return Path(override) if override else platformdirs.user_cache_path("pgparts", appauthor=False)


# -- validation helpers: each names the full key on failure --------------------------------------
def _check_keys(section: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in section:
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            raise ConfigError(f"unknown key '{where}{key}' (known keys: {known})")


def _get(section: dict[str, Any], key: str, where: str, conv, default):
    if key not in section:
        return default
    try:
        return conv(section[key])
    except (ValueError, TypeError, OverflowError) as exc:
        # a profile's DSN may be echoed in the reason
        raise ConfigError(redact(f"bad value for '{where}{key}': {exc}")) from None


def _as_bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def _as_str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


def _as_pos_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"expected a whole number of at least 1, got {v!r}")
    return v


def _as_factor(v: Any) -> float:
    # `not v >= 1` also refuses NaN, which compares false with everything
    if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 1 or math.isinf(v):
        raise ValueError(f"expected a finite number of at least 1, got {v!r}")
    return float(v)


def _as_size(v: Any) -> int:
    size = parse_size(v)
    if size < 1:
        raise ValueError(f"expected a size of at least 1 byte, got {v!r}")
    return size


MAX_DURATION = 86400.0  # a day: far above any useful timeout, far below PostgreSQL's INT_MAX ms


def _as_timeout(v: Any) -> float:
    """A lock or statement timeout: PostgreSQL counts milliseconds and reads 0 as 'no limit'."""
    seconds = parse_seconds(v)
    if not 0.001 <= seconds <= MAX_DURATION:
        raise ValueError(f"expected a duration from 1ms to 1 day, got {v!r}")
    return seconds


def _as_refresh(v: Any) -> float:
    seconds = parse_seconds(v)
    if seconds != 0 and not 1 <= seconds <= MAX_DURATION:
        raise ValueError(f"expected 0 (off) or a duration from 1s to 1 day, got {v!r}")
    return seconds


MAX_PREMAKE = 1000  # partitions created ahead; far beyond any useful runway


def _as_premake(v: Any) -> int:
    n = _as_pos_int(v)
    if n > MAX_PREMAKE:
        raise ValueError(f"expected at most {MAX_PREMAKE} partitions, got {v!r}")
    return n


def _as_action(v: Any) -> str:
    if v not in ("detach", "drop"):
        raise ValueError(f"expected 'detach' or 'drop', got {v!r}")
    return v


def _as_schema_name(v: Any) -> str:
    """A schema name as typed in SQL: unquoted folds to lower case, quoted keeps its case."""
    schema, name = parse_qualified_name(_as_str(v))
    if schema is not None:
        raise ValueError(f"expected a schema name, got {v!r}")
    check_identifier_length(name)
    return name


_POLICY_KEYS = {
    "premake", "retention", "retention_action", "retention_schema", "consolidate_older_than",
    "consolidate_batch", "oversized", "skew_factor", "runway_intervals",
}


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    """A key as TOML needs it written: 'sales.orders' must be quoted to stay one key."""
    if _BARE_KEY.match(key):
        return key
    return json.dumps(key, ensure_ascii=False)  # a TOML basic string escapes like JSON


def _parse_policy(key: str, body: Any) -> TablePolicy:
    table = f"policy.{_toml_key(key)}"
    where = f"{table}."
    if not isinstance(body, dict):
        raise ConfigError(f"'{table}' must be a table ([{table}])")
    try:
        schema, name = parse_qualified_name(key)
        for part in (schema, name):
            if part is not None:
                check_identifier_length(part)
    except ValueError as exc:
        raise ConfigError(f"bad table name in '{table}': {exc}") from None
    _check_keys(body, _POLICY_KEYS, where)
    policy = TablePolicy(
        key, schema, name,
        premake=_get(body, "premake", where, _as_premake, None),
        retention=_get(body, "retention", where, parse_age, None),
        retention_action=_get(body, "retention_action", where, _as_action, None),
        retention_schema=_get(body, "retention_schema", where, _as_schema_name, None),
        consolidate_older_than=_get(body, "consolidate_older_than", where, parse_age, None),
        consolidate_batch=_get(body, "consolidate_batch", where, _as_pos_int, None),
        oversized_bytes=_get(body, "oversized", where, _as_size, None),
        skew_factor=_get(body, "skew_factor", where, _as_factor, None),
        runway_intervals=_get(body, "runway_intervals", where, _as_factor, None),
    )
    # keys that could only act together with another one: alone they would silently do nothing
    if policy.retention is None:
        for lonely in ("retention_action", "retention_schema"):
            if lonely in body:
                raise ConfigError(f"'{where}{lonely}' needs '{where}retention' (how old)")
    elif policy.retention_action is None:
        policy = replace(policy, retention_action="detach")
    if policy.retention_schema is not None and policy.retention_action == "drop":
        raise ConfigError(
            f"'{where}retention_schema' moves detached partitions, but "
            f"'{where}retention_action' is 'drop'"
        )
    if policy.consolidate_batch is not None and policy.consolidate_older_than is None:
        raise ConfigError(
            f"'{where}consolidate_batch' needs '{where}consolidate_older_than' (how old)"
        )
    return policy


def _parse_policies(raw: dict[str, Any]) -> dict[str, TablePolicy]:
    policies: dict[str, TablePolicy] = {}
    seen: dict[tuple[str | None, str], str] = {}
    for key, body in _section(raw, "policy").items():
        policy = _parse_policy(key, body)
        ident = (policy.schema, policy.name)
        if ident in seen:  # e.g. [policy.orders] and [policy.ORDERS]: both fold to orders
            raise ConfigError(
                f"'policy.{_toml_key(key)}' names the same table as "
                f"'policy.{_toml_key(seen[ident])}'"
            )
        seen[ident] = key
        policies[key] = policy
    return policies


_KEY = re.compile(r"^[a-z0-9_]+(\+[a-z0-9_]+)*$|^[^\s,]$")


def _keymap(raw: Any) -> dict[str, str]:
    """[console.keymap]: binding id = "key" or "key,key" (Textual's key names: "f2",
    "ctrl+t", "question_mark"; one character stands for itself). Whether an id exists is the
    console's to say (it knows its bindings)."""
    if not isinstance(raw, dict):
        raise ConfigError("'console.keymap' must be a table ([console.keymap])")
    out: dict[str, str] = {}
    for binding_id, keys in raw.items():
        where = f"console.keymap.{binding_id}"
        if not isinstance(keys, str) or not keys.strip():
            raise ConfigError(f"bad value for '{where}': expected keys such as \"f2\" or "
                              f"\"f2,ctrl+t\"")
        parts = [k.strip() for k in keys.split(",")]
        bad = [k for k in parts if not _KEY.match(k)]
        if bad:
            raise ConfigError(f"bad value for '{where}': {bad[0]!r} is not a key name "
                              f"(e.g. \"f2\", \"ctrl+t\", \"question_mark\")")
        out[str(binding_id)] = ",".join(parts)
    return out


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    sec = raw.get(name, {})
    if not isinstance(sec, dict):
        raise ConfigError(f"'{name}' must be a table ([{name}])")
    return sec


def _dsn_has_password(dsn: str) -> bool:
    """Whether libpq would read a password from `dsn` (key=value, URI user info or query); a
    string libpq cannot parse is judged by its text: it may still hold one."""
    try:
        return bool(pg_conninfo.conninfo_to_dict(dsn).get("password"))
    except psycopg.ProgrammingError:
        return redact(dsn) != dsn


def parse_config(raw: dict[str, Any], path: Path | None = None) -> Config:
    _check_keys(
        raw,
        {"default_profile", "profiles", "findings", "console", "plans", "explain", "policy"}, "",
    )
    profiles: dict[str, Profile] = {}
    warnings: list[str] = []
    for name, body in _section(raw, "profiles").items():
        where = f"profiles.{name}."
        if not isinstance(body, dict):
            raise ConfigError(f"'profiles.{name}' must be a table ([profiles.{name}])")
        _check_keys(body, {"dsn", "read_only"}, where)
        dsn = _get(body, "dsn", where, _as_str, "")
        profiles[name] = Profile(name, dsn, _get(body, "read_only", where, _as_bool, False))
        if path is not None and _dsn_has_password(dsn):
            mode = path.stat().st_mode
            if mode & (stat.S_IRGRP | stat.S_IROTH):
                warnings.append(
                    f"{path} holds a password (profile '{name}') and is readable by other users; "
                    f"run 'chmod 600 {path}' or use ~/.pgpass instead"
                )
    default_profile = _get(raw, "default_profile", "", _as_str, None)
    if default_profile is not None and default_profile not in profiles:
        raise ConfigError(f"bad value for 'default_profile': no profile named {default_profile!r}")

    f = _section(raw, "findings")
    _check_keys(f, {"oversized", "skew_factor", "runway_intervals"}, "findings.")
    findings = FindingsConfig(
        oversized_bytes=_get(f, "oversized", "findings.", _as_size, 1024**3),
        skew_factor=_get(f, "skew_factor", "findings.", _as_factor, 1.5),
        runway_intervals=_get(f, "runway_intervals", "findings.", _as_factor, 1.0),
    )
    c = _section(raw, "console")
    _check_keys(c, {"auto_refresh", "exact_sizes", "keymap"}, "console.")
    console = ConsoleConfig(
        auto_refresh_seconds=_get(c, "auto_refresh", "console.", _as_refresh, 0.0),
        exact_sizes=_get(c, "exact_sizes", "console.", _as_bool, False),
        keymap=_keymap(c.get("keymap", {})),
    )
    p = _section(raw, "plans")
    _check_keys(
        p, {"lock_timeout", "lock_retries", "older_than", "batch", "keep_detached"}, "plans."
    )
    plans = PlansConfig(
        lock_timeout_seconds=_get(p, "lock_timeout", "plans.", _as_timeout, 2.0),
        lock_retries=_get(p, "lock_retries", "plans.", _as_pos_int, 5),
        older_than=_get(p, "older_than", "plans.", parse_age, timedelta(days=90)),
        batch=_get(p, "batch", "plans.", _as_pos_int, 5),
        keep_detached=_get(p, "keep_detached", "plans.", _as_bool, False),
    )
    e = _section(raw, "explain")
    _check_keys(e, {"statement_timeout"}, "explain.")
    explain = ExplainConfig(
        statement_timeout_seconds=_get(e, "statement_timeout", "explain.", _as_timeout, 30.0)
    )
    policies = _parse_policies(raw)
    return Config(path, default_profile, profiles, findings, console, plans, explain,
                  tuple(warnings), policies)


def load_config(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Read --config, else $PGPARTS_CONFIG, else the user config dir (absent there is fine)."""
    if explicit is not None:
        path, required = Path(explicit), True
    elif os.environ.get("PGPARTS_CONFIG"):
        path, required = Path(os.environ["PGPARTS_CONFIG"]), True
    else:
        path, required = default_config_path(), False
    if not path.exists():
        if required:
            raise ConfigError(f"config file {path} does not exist")
        return Config()
    import tomllib  # only when there is a file: most runs of a command have none

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(f"config file {path} nests arrays or tables too deeply") from None
    try:
        return parse_config(raw, path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
