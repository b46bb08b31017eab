"""`pgparts explain -f FILE|DIR ...`: many files and statements per run, for CI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui.cli import main
from tui.context import Context
from tui.core.explain.sources import split_statements

from .conftest import Database
from .test_explain_shapes import LAYOUT

PRUNED = "SELECT * FROM ab WHERE k = 5"
FULL = "SELECT * FROM ab WHERE v = 1"


@pytest.fixture
def layout(db18: Database) -> Database:
    db18.execute(LAYOUT)
    return db18


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the connections a run opens (each still a real one)."""
    opened: list[str] = []
    real = Context.connect

    def counting(self: Context, **kwargs):
        opened.append(str(kwargs.get("purpose")))
        return real(self, **kwargs)

    monkeypatch.setattr(Context, "connect", counting)
    return opened


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["explain", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def _queries(tmp_path: Path) -> Path:
    folder = tmp_path / "queries"
    folder.mkdir()
    # ';' in a string, a quoted name, a comment and a dollar-quoted string is no separator
    (folder / "a.sql").write_text(
        f"-- pruned\n{PRUNED};\n\nSELECT * FROM ab WHERE k = 5 AND v::text <> ';' -- ;\n;"
        f"\n/* ; */ SELECT $$;$$ AS \"x;y\", * FROM ab WHERE k = 25;\n", encoding="utf-8")
    (folder / "b.sql").write_text(f"{FULL}\n", encoding="utf-8")
    (folder / "notes.txt").write_text("SELECT 1", encoding="utf-8")  # not *.sql: not read
    return folder


def test_directory_json_lines_one_connection(capsys, layout, tmp_path, connections) -> None:
    folder = _queries(tmp_path)
    status, out, err = _run(capsys, "-d", layout.dsn, "--json", "--require-pruning",
                            "-f", str(folder))
    assert status == 1, err  # b.sql scans ab in full
    docs = [json.loads(line) for line in out.splitlines()]
    assert [(Path(d["file"]).name, d["line"]) for d in docs] == \
        [("a.sql", 2), ("a.sql", 4), ("a.sql", 6), ("b.sql", 1)]
    assert [d["tables"][0]["partitions_scanned"] for d in docs] == [1, 1, 1, 3]
    assert docs[2]["query"].startswith("SELECT $$;$$")
    assert connections == ["explain"]  # one connection for the whole run
    assert "4 queries, 1 with a full scan, 0 failed" in err


def test_files_in_order_and_exit_status(capsys, layout, tmp_path) -> None:
    one, two = tmp_path / "one.sql", tmp_path / "two.sql"
    one.write_text(PRUNED + ";", encoding="utf-8")
    two.write_text(PRUNED, encoding="utf-8")
    status, out, _ = _run(capsys, "-d", layout.dsn, "--require-pruning", "-f", str(two),
                          "-f", str(one))
    assert status == 0
    headers = [line for line in out.splitlines() if line.startswith("== ")]
    assert headers == [f"== {two}:1", f"== {one}:1"]


def test_errors_carry_file_and_line_and_the_run_goes_on(capsys, layout, tmp_path) -> None:
    bad = tmp_path / "bad.sql"
    bad.write_text(f"{PRUNED};\nSELECT * FROM ab\n  WHERE k = = 3;\n{FULL};\n", encoding="utf-8")
    status, out, err = _run(capsys, "-d", layout.dsn, "--json", "-f", str(bad))
    assert status == 2  # a statement that could not be explained fails the run
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["line"] for d in docs] == [1, 2, 4]
    assert "error" in docs[1] and "(line 3, column 13)" in docs[1]["error"]
    assert docs[2]["tables"][0]["status"] == "full"
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"pgparts: {bad}:2: syntax error")
    assert "Traceback" not in err


def test_a_refused_statement_stops_the_run_before_anything_is_sent(
        capsys, layout, tmp_path, connections) -> None:
    mixed = tmp_path / "mixed.sql"
    mixed.write_text(f"{PRUNED};\nCOMMIT;\nBEGIN READ WRITE;\nDELETE FROM ab;\n",
                     encoding="utf-8")
    status, out, err = _run(capsys, "-d", layout.dsn, "--analyze", "-f", str(mixed))
    assert (status, out) == (2, "")
    assert err.startswith(f"pgparts: {mixed}:2: COMMIT cannot be explained")
    assert err.count("\n") == 1 and connections == []
    assert layout.query("SELECT count(*) FROM public.ab")[0][0] == 30000


def test_github_annotations(capsys, layout, tmp_path) -> None:
    path = tmp_path / "odd, name.sql"
    path.write_text(f"{PRUNED};\n\n{FULL};\nSELECT FROM FROM;\n", encoding="utf-8")
    status, out, _ = _run(capsys, "-d", layout.dsn, "--format", "github", "-f", str(path))
    assert status == 2
    escaped = str(path).replace(",", "%2C").replace(":", "%3A")
    lines = out.splitlines()
    assert lines[0].startswith(f"::warning file={escaped},line=3,col=1::ab: no pruning")
    assert lines[1].startswith(f"::error file={escaped},line=4,col=1::syntax error")
    assert len(lines) == 2  # a pruned query says nothing
    status, out, _ = _run(capsys, "-d", layout.dsn, "--format", "github", "--require-pruning",
                          "-f", str(path))
    assert out.startswith("::error ")


def test_argument_query_output_unchanged(capsys, layout) -> None:
    status, out, err = _run(capsys, "-d", layout.dsn, "--json", PRUNED)
    assert status == 0, err
    doc = json.loads(out)
    assert "file" not in doc and doc["tables"][0]["partitions_scanned"] == 1


def test_usage_errors(capsys, layout, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, fragment in (
        (["-f", str(empty)], "no *.sql file in directory"),
        (["--json", "--format", "github", PRUNED], "disagree"),
        (["-f", str(tmp_path / "missing.sql")], "cannot read"),
    ):
        status, _out, err = _run(capsys, "-d", layout.dsn, *argv)
        assert status == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
    comments = tmp_path / "comments.sql"
    comments.write_text("-- nothing here\n;\n", encoding="utf-8")
    status, _out, err = _run(capsys, "-d", layout.dsn, "-f", str(comments))
    assert status == 2 and "no query in" in err


def test_split_by_the_servers_grammar() -> None:
    text = ("SELECT 'a;b';\nSELECT \"c;d\" FROM t; -- ; x\n/* ; */ SELECT $q$;$q$;"
            " SELECT E'\\';' ;\n")
    assert [(s.text, s.line) for s in split_statements(text)] == [
        ("SELECT 'a;b'", 1), ('SELECT "c;d" FROM t', 2), ("SELECT $q$;$q$", 3),
        ("SELECT E'\\';'", 3)]
    # a text the parser rejects is split by the lexer; no statement is dropped
    assert [s.text for s in split_statements("SELECT 1; 42; SELECT FROM FROM; SELECT 2")] == \
        ["SELECT 1", "42", "SELECT FROM FROM", "SELECT 2"]


def test_the_advice_parser_is_imported_only_when_advice_is_needed(layout) -> None:
    """A query pruned at plan time at every level has nothing to explain: sqlglot, the largest
    import of the command, stays out of the process; a full scan needs the advice."""
    import subprocess
    import sys

    code = ("import sys\nfrom tui.cli import main\nstatus = main(sys.argv[1:])\n"
            "print('sqlglot' in sys.modules, 'textual' in sys.modules, status)\n")
    for query, expected in ((PRUNED, "False False 0"), (FULL, "True False 0"),
                            ("SELECT 1", "False False 0")):
        done = subprocess.run([sys.executable, "-c", code, "explain", "-d", layout.dsn, query],
                              capture_output=True, text=True, timeout=60, check=True)
        assert done.stdout.strip().splitlines()[-1] == expected, done.stdout
