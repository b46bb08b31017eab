"""Identifier display and parsing agree with PostgreSQL's own rules."""

import pytest

from tui.core.names import (
    check_identifier_length,
    display_name,
    parse_qualified_name,
    quote_ident,
)


def test_quote_ident_matches_the_server_for_every_keyword_and_odd_name(db):
    words = [r[0] for r in db.query("SELECT word FROM pg_get_keywords()")]
    odd = ["Payment_2024", "payment 2024", 'pay"ment', "päyment_2024", "2024_payment",
           "payment_2024", "a;b", "Ω"]
    for word in words + odd:
        (server,) = db.query("SELECT quote_ident(%s)", (word,))[0]
        assert quote_ident(word) == server, word


def test_display_name_leaves_out_public_and_quotes_parts():
    assert display_name("public", "payment") == "payment"
    assert display_name("Odd Schema", 'Trading "Active" Ω') == '"Odd Schema"."Trading ""Active"" Ω"'


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("control.Payment", ("control", "payment")),
        ('"Odd Schema"."Trading ""Active"" Ω"', ("Odd Schema", 'Trading "Active" Ω')),
        ("  payment_2024 ", (None, "payment_2024")),
        ('"a.b"', (None, "a.b")),
    ],
)
def test_parse_qualified_name(typed, expected):
    assert parse_qualified_name(typed) == expected


@pytest.mark.parametrize("bad", ["", "a.", ".b", "a.b.c", '"open'])
def test_parse_qualified_name_rejects_malformed(bad):
    with pytest.raises(ValueError):
        parse_qualified_name(bad)


def test_identifier_length_is_counted_in_bytes():
    check_identifier_length("a" * 63)
    with pytest.raises(ValueError, match="63"):
        check_identifier_length("a" * 64)
    with pytest.raises(ValueError):
        check_identifier_length("Ω" * 32)  # 64 bytes
