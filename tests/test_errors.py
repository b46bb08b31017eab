"""first_line(): the one line of an error that pgparts shows on stderr and in the console."""

import psycopg
import pytest

from tui.core.errors import first_line


def test_a_server_error_keeps_its_primary_message_only(db):
    with db.connect() as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("SELECT no_such_column FROM pg_catalog.pg_class")
        assert "LINE 1:" in str(caught.value)  # the excerpt and caret that must not show
        assert first_line(caught.value) == 'column "no_such_column" does not exist'

        conn.execute("CREATE TABLE public.t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO public.t VALUES (1)")
        with pytest.raises(psycopg.errors.UniqueViolation) as caught:
            conn.execute("INSERT INTO public.t VALUES (1)")
        assert "DETAIL:" in str(caught.value)
        assert first_line(caught.value) == 'duplicate key value violates unique constraint "t_pkey"'


def test_blank_lines_and_empty_messages():
    assert first_line(RuntimeError("\n  \n  the reason  \nmore")) == "the reason"
    assert first_line(RuntimeError("   ")) == "RuntimeError"
    assert first_line(TimeoutError()) == "TimeoutError"
