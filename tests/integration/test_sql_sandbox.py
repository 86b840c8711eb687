"""The SQL sandbox: `lab.sql`, `as_of(...).sql` and `cqrs-lab sql` run one read-only SELECT, with
values as bound parameters, and can neither read nor write outside the lab nor change the read
models or the sandbox's own settings. The CLI prints parseable csv/json/table output, and one line
on stderr (exit 2) for a refused query."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from readkit import READ_MODELS, START, assert_same_tables, register, shop, tables

from cqrs_lab import domain as d
from cqrs_lab.cli import main
from cqrs_lab.determinism import fixed_clock, seeded_ids
from cqrs_lab.errors import CqrsLabError
from cqrs_lab.lab import Lab
from cqrs_lab.readstore import QueryError

SETTINGS = """
SELECT current_setting('memory_limit') AS memory_limit,
       current_setting('enable_external_access') AS external,
       current_setting('lock_configuration') AS locked
"""

# (id, query with {lab} and {outside} to fill in, what the message must say)
REFUSED = [
    ("read_csv-outside", "SELECT * FROM read_csv('{outside}/secret.csv')", "{outside}/secret.csv"),
    ("replacement-scan-outside", "SELECT * FROM '{outside}/secret.csv'", "{outside}/secret.csv"),
    (
        "read_csv-dot-dot",
        "SELECT * FROM read_csv('{lab}/../outside/secret.csv')",
        "secret.csv",
    ),
    ("read_text-passwd", "SELECT * FROM read_text('/etc/passwd')", "/etc/passwd"),
    ("glob-etc", "SELECT * FROM glob('/etc/*')", "/etc/*"),
    ("copy-outside", "COPY customers TO '{outside}/leak.csv'", "COPY"),
    ("copy-inside", "COPY (SELECT * FROM orders) TO '{lab}/leak.csv'", "COPY"),
    ("attach", "ATTACH '{outside}/x.db' AS x", "ATTACH"),
    ("set-external-access", "SET enable_external_access = true", "SET"),
    ("set-memory-limit", "SET memory_limit = '64GB'", "SET"),
    ("reset-memory-limit", "RESET memory_limit", "SET"),
    ("drop-table", "DROP TABLE customers", "DROP"),
    ("insert", "INSERT INTO customers (customer_id) VALUES ('intruder')", "INSERT"),
    ("update-checkpoints", "UPDATE read_model_checkpoints SET position = 0", "UPDATE"),
    ("delete", "DELETE FROM orders", "DELETE"),
    ("create-table", "CREATE TABLE scratch AS SELECT 1 AS x", "CREATE"),
    ("two-selects", "SELECT 1; SELECT 2", "SELECT, SELECT"),
    ("select-then-drop", "SELECT 1; DROP TABLE customers", "SELECT, DROP"),
    ("syntax-error", "SELEC * FROM customers", "syntax error"),
    ("empty", "   ", "nothing"),
    ("explain-analyze-drop", "EXPLAIN ANALYZE DROP TABLE customers", "EXPLAIN"),
    (
        "explain-analyze-insert",
        "EXPLAIN ANALYZE INSERT INTO customers (customer_id) VALUES ('intruder')",
        "EXPLAIN",
    ),
    (
        "explain-analyze-copy-inside",
        "EXPLAIN ANALYZE COPY customers TO '{lab}/leak.csv'",
        "EXPLAIN",
    ),
    (
        "explain-analyze-reset-checkpoints",
        "EXPLAIN ANALYZE UPDATE read_model_checkpoints SET position = 0",
        "EXPLAIN",
    ),
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synced shop per module; each test works on its own copy."""
    path = tmp_path_factory.mktemp("pristine") / "lab"
    shop(path).close()
    return path


@pytest.fixture
def sandbox(tmp_path: Path, pristine: Path) -> dict[str, Any]:
    """A copy of the shop, plus a folder outside the lab holding a file worth stealing."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("secret\nhunter2\n")
    shutil.copytree(pristine, tmp_path / "lab")
    lab = Lab.open(
        tmp_path / "lab", clock=fixed_clock(START + timedelta(days=1)), ids=seeded_ids(2)
    )
    return {"lab": lab, "path": tmp_path / "lab", "outside": outside}


def state_of(lab: Lab, outside: Path) -> dict[str, Any]:
    """What a refused query must leave as it was: rows, checkpoints, settings and files."""
    return {
        "tables": tables(lab),
        "checkpoints": lab.sql("SELECT * FROM read_model_checkpoints ORDER BY log").to_dict(),
        "summary": lab.sql("SELECT * FROM customer_order_summary ORDER BY 1").to_dict(),
        "settings": lab.sql(SETTINGS).to_dict("records"),
        "outside": sorted(p.name for p in outside.iterdir()),
        "lab files": sorted(str(p) for p in lab.path.rglob("*")),
    }


def assert_unchanged(lab: Lab, outside: Path, before: dict[str, Any]) -> None:
    after = state_of(lab, outside)
    assert_same_tables(after.pop("tables"), before["tables"], "after a refused query")
    assert {k: v for k, v in before.items() if k != "tables"} == after


def fill(template: str, sandbox: dict[str, Any]) -> str:
    return template.format(lab=sandbox["path"], outside=sandbox["outside"])


@pytest.mark.parametrize(("query", "says"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_query_that_is_not_one_harmless_select_is_refused_and_changes_nothing(
    sandbox: dict[str, Any], query: str, says: str
):
    lab, outside = sandbox["lab"], sandbox["outside"]
    before = state_of(lab, outside)

    with pytest.raises(QueryError) as caught:
        lab.sql(fill(query, sandbox))

    assert isinstance(caught.value, CqrsLabError)
    assert fill(says, sandbox) in str(caught.value)
    assert_unchanged(lab, outside, before)


def test_setting_external_access_is_refused_and_outside_files_stay_unreadable(
    sandbox: dict[str, Any],
):
    lab, outside = sandbox["lab"], sandbox["outside"]

    with pytest.raises(QueryError):
        lab.sql("SET enable_external_access = true")

    with pytest.raises(QueryError, match=r"secret\.csv"):
        lab.sql(f"SELECT * FROM read_csv('{outside}/secret.csv')")
    assert lab.sql(SETTINGS).to_dict("records") == [
        {"memory_limit": "953.6 MiB", "external": False, "locked": True}
    ]


def test_a_file_under_the_working_directorys_tmp_folder_cannot_be_read(
    sandbox: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # DuckDB's default temp_directory is "<cwd>/.tmp", and DuckDB adds it to allowed_directories.
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".tmp").mkdir(parents=True)
    (elsewhere / ".tmp" / "secret.csv").write_text("secret\nhunter2\n")
    monkeypatch.chdir(elsewhere)

    with Lab.open(sandbox["path"]) as lab, pytest.raises(QueryError, match="secret"):
        lab.sql(f"SELECT * FROM read_csv('{elsewhere}/.tmp/secret.csv')")


def test_files_inside_the_lab_can_be_read(sandbox: dict[str, Any]):
    lab = sandbox["lab"]
    segment = lab.customer_log.files()[0]

    found = lab.sql(f"SELECT count(*) AS n FROM read_parquet('{segment}')")

    assert found.n[0] == 3  # the first commit registered three customers


def test_read_only_queries_of_every_kind_run(sandbox: dict[str, Any]):
    lab = sandbox["lab"]

    plan = lab.sql("EXPLAIN SELECT * FROM orders WHERE quantity > 1")
    cte = lab.sql(
        """
        WITH shipped AS (SELECT * FROM orders WHERE status = 'shipped')
        SELECT count(*) AS n FROM shipped
        """
    )
    joined = lab.sql(
        """
        SELECT e.event_type, count(*) AS n
        FROM events AS e
        JOIN customers AS c ON e.stream_id = 'customer-' || c.customer_id
        GROUP BY ALL
        ORDER BY 1
        """
    )

    assert len(plan) >= 1
    assert cte.n[0] == 1
    assert joined.to_dict("records") == [{"event_type": "CustomerRegistered", "n": 3}]


# --- bound parameters -----------------------------------------------------------------------------


def test_values_go_in_as_named_parameters(sandbox: dict[str, Any]):
    found = sandbox["lab"].sql(
        "SELECT order_id FROM orders WHERE customer_id = $id AND quantity >= $least ORDER BY 1",
        {"id": "c1", "least": 2},
    )

    assert found.order_id.tolist() == ["o1", "o2"]


def test_values_go_in_as_positional_parameters(sandbox: dict[str, Any]):
    found = sandbox["lab"].sql(
        "SELECT order_id FROM orders WHERE customer_id = ? AND unit_price > ? ORDER BY 1",
        ["c1", Decimal("1.00")],
    )

    assert found.order_id.tolist() == ["o2", "o3"]


def test_a_value_that_looks_like_sql_is_only_a_value(sandbox: dict[str, Any]):
    lab = sandbox["lab"]
    sly = "x'); DROP TABLE customers; --"
    lab.send(register("c9", sly))
    lab.sync()

    found = lab.sql("SELECT customer_id FROM customers WHERE name = $name", {"name": sly})

    assert found.customer_id.tolist() == ["c9"]
    assert len(lab.sql("SELECT * FROM customers")) == 4


def test_a_missing_parameter_is_a_query_error_naming_it(sandbox: dict[str, Any]):
    with pytest.raises(QueryError, match="id"):
        sandbox["lab"].sql("SELECT * FROM customers WHERE customer_id = $id")


# --- time travel is sandboxed too -----------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "DROP TABLE orders",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('{outside}/secret.csv')",
        "EXPLAIN ANALYZE DELETE FROM orders",
    ],
)
def test_a_view_into_the_past_refuses_the_same_queries(sandbox: dict[str, Any], query: str):
    view = sandbox["lab"].as_of(position=8)
    before = {name: view.store.table(name) for name in READ_MODELS}

    with pytest.raises(QueryError):
        view.sql(fill(query, sandbox))

    assert_same_tables({name: view.store.table(name) for name in READ_MODELS}, before, "as_of")


# --- the CLI --------------------------------------------------------------------------------------

CLI_REFUSED = REFUSED


@pytest.mark.parametrize(
    ("query", "says"), [c[1:] for c in CLI_REFUSED], ids=[c[0] for c in CLI_REFUSED]
)
def test_cli_sql_refuses_with_exit_2_and_one_line_on_stderr(
    sandbox: dict[str, Any], capsys: pytest.CaptureFixture[str], query: str, says: str
):
    lab, outside = sandbox["lab"], sandbox["outside"]
    before = state_of(lab, outside)
    capsys.readouterr()

    status = main(["sql", str(sandbox["path"]), fill(query, sandbox)])

    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert len(err.splitlines()) == 1, f"more than one line on stderr:\n{err}"
    assert err.startswith("cqrs-lab: error: ") and fill(says, sandbox) in err
    assert_unchanged(lab, outside, before)


def test_cli_sql_of_a_folder_without_a_lab_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    status = main(["sql", str(tmp_path / "nowhere"), "SELECT 1"])

    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert len(err.splitlines()) == 1 and "nowhere" in err


CLI_QUERY = "SELECT customer_id, name, registered_at FROM customers ORDER BY customer_id"


@pytest.fixture
def cli_lab(sandbox: dict[str, Any]) -> Path:
    """A shop whose customers have names a careless csv or json writer would break."""
    lab = sandbox["lab"]
    lab.send(d.RenameCustomer(customer_id="c1", name='Ada, "the Countess"'))
    lab.send(d.RenameCustomer(customer_id="c2", name="Bob\nSmith"))
    lab.sync()
    lab.close()
    return Path(sandbox["path"])


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    status = main(list(args))
    out, err = capsys.readouterr()
    assert (status, err) == (0, ""), err
    return out


def test_cli_sql_csv_output_parses_back_to_the_rows(
    cli_lab: Path, capsys: pytest.CaptureFixture[str]
):
    out = run_cli(capsys, "sql", str(cli_lab), CLI_QUERY, "--format", "csv")

    parsed = list(csv.DictReader(io.StringIO(out)))
    assert [(r["customer_id"], r["name"]) for r in parsed] == [
        ("c1", 'Ada, "the Countess"'),
        ("c2", "Bob\nSmith"),
        ("c3", "Cy"),
    ]
    assert all(r["registered_at"].startswith("2026-01-01 00:00:00") for r in parsed)


def test_cli_sql_json_output_parses_back_to_the_rows(
    cli_lab: Path, capsys: pytest.CaptureFixture[str]
):
    out = run_cli(capsys, "sql", str(cli_lab), CLI_QUERY, "--format", "json")

    parsed = json.loads(out)
    assert [(r["customer_id"], r["name"]) for r in parsed] == [
        ("c1", 'Ada, "the Countess"'),
        ("c2", "Bob\nSmith"),
        ("c3", "Cy"),
    ]
    assert all(r["registered_at"].startswith("2026-01-01T00:00:00") for r in parsed)


def test_cli_sql_json_and_csv_amounts_are_the_exact_amounts(
    cli_lab: Path, capsys: pytest.CaptureFixture[str]
):
    query = "SELECT order_id, amount FROM orders ORDER BY order_id"

    as_json = json.loads(run_cli(capsys, "sql", str(cli_lab), query, "--format", "json"))
    as_csv = list(
        csv.DictReader(io.StringIO(run_cli(capsys, "sql", str(cli_lab), query, "--format", "csv")))
    )

    expected = [Decimal("0.30"), Decimal("39.98"), Decimal("5.00"), Decimal("10.00")]
    assert [Decimal(str(r["amount"])) for r in as_json] == expected
    assert [Decimal(r["amount"]) for r in as_csv] == expected


def test_cli_sql_table_output_has_a_header_and_one_line_per_row(
    cli_lab: Path, capsys: pytest.CaptureFixture[str]
):
    query = "SELECT order_id, status, quantity FROM orders ORDER BY order_id"

    out = run_cli(capsys, "sql", str(cli_lab), query, "--format", "table")

    assert [line.split() for line in out.splitlines()] == [
        ["order_id", "status", "quantity"],
        ["o1", "open", "3"],
        ["o2", "open", "2"],
        ["o3", "shipped", "1"],
        ["o4", "open", "4"],
    ]


def test_cli_sql_with_no_rows_prints_an_empty_result_in_each_format(
    cli_lab: Path, capsys: pytest.CaptureFixture[str]
):
    query = "SELECT order_id, status FROM orders WHERE false"
    path = str(cli_lab)

    assert run_cli(capsys, "sql", path, query, "--format", "csv") == "order_id,status\n"
    assert json.loads(run_cli(capsys, "sql", path, query, "--format", "json")) == []
    assert run_cli(capsys, "sql", path, query, "--format", "table") == "(no rows)\n"
