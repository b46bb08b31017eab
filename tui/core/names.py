"""Identifiers: showing them as PostgreSQL would accept them, and reading what users type.

SQL is never built from these strings; statements use psycopg.sql.Identifier(schema, name).
"""

from __future__ import annotations

import re

MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1; longer names are silently truncated by the server

_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")
# Reserved words that must be quoted even when lower case (the common ones in table names).
_RESERVED = frozenset(
    """all analyse analyze and any array as asc asymmetric both case cast check collate column
    constraint create current_catalog current_date current_role current_time current_timestamp
    current_user default deferrable desc distinct do else end except false fetch for foreign from
    grant group having in initially intersect into lateral leading limit localtime localtimestamp
    not null offset on only or order placing primary references returning select session_user
    some symmetric system_user table then to trailing true union unique user using variadic when
    where window with""".split()
    # col_name and type_func_name keywords: quote_ident quotes these too
    + """between bigint bit boolean char character coalesce dec decimal exists extract float
    greatest grouping inout int integer interval json least national nchar none normalize nullif
    numeric out overlay position precision real row setof smallint substring time timestamp treat
    trim values varchar xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces
    xmlparse xmlpi xmlroot xmlserialize xmltable authorization binary collation concurrently
    cross current_schema freeze full ilike inner is isnull join left like natural notnull outer
    overlaps right similar tablesample verbose json_array json_arrayagg json_exists json_object
    json_objectagg json_query json_scalar json_serialize json_table json_value
    merge_action""".split()
)


def quote_ident(name: str) -> str:
    """Like PostgreSQL's quote_ident: quotes only when needed."""
    if _PLAIN.match(name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def display_name(schema: str | None, name: str) -> str:
    """schema.name for display, leaving out 'public' and quoting parts that need it."""
    if schema and schema != "public":
        return f"{quote_ident(schema)}.{quote_ident(name)}"
    return quote_ident(name)


def parse_qualified_name(spec: str) -> tuple[str | None, str]:
    """Split a typed table name into (schema or None, name).

    Quoted parts keep their case and doubled quotes; unquoted parts fold to lower case.
    """
    spec = spec.strip()
    parts: list[str] = []
    i, n = 0, len(spec)
    current: list[str] = []
    while i < n:
        ch = spec[i]
        if ch == '"':
            i += 1
            while i < n:
                if spec[i] == '"':
                    if i + 1 < n and spec[i + 1] == '"':
                        current.append('"')
                        i += 2
                        continue
                    break
                current.append(spec[i])
                i += 1
            else:
                raise ValueError(f"unterminated quoted identifier in {spec!r}")
            i += 1
        elif ch == ".":
            parts.append("".join(current))
            current = []
            i += 1
        else:
            current.append(ch.lower())
            i += 1
    parts.append("".join(current))
    if any(p == "" for p in parts) or len(parts) > 2:
        raise ValueError(f"not a table name: {spec!r}")
    if len(parts) == 2:
        return parts[0], parts[1]
    return None, parts[0]


def check_identifier_length(name: str) -> None:
    """Refuse names PostgreSQL would truncate: a truncated name can collide or mislead."""
    size = len(name.encode("utf-8"))
    if size > MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"name {name!r} is {size} bytes; PostgreSQL keeps only {MAX_IDENTIFIER_BYTES}"
        )
