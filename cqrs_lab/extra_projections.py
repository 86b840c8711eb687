"""Projections added later: a new read model, back-filled from the whole history at once.

The superpower of event sourcing: a question nobody thought of when the shop opened can still
be answered for every order ever placed, because the log kept every event. A projection here is
one SELECT over the read models (or the `events` view), materialised as a table in the lab's read
store, next to `customers` and `orders`, so `lab.sql` can query it like any other table:

    >>> sales = add_projection(lab, "product_sales", '''
    ...     SELECT product, count(*) AS orders, sum(amount) AS amount
    ...     FROM orders
    ...     GROUP BY product
    ... ''')
    >>> lab.sql("SELECT * FROM product_sales ORDER BY product")
    >>> lab.sync(); sales.refresh()    # later events: fold them in

It is rebuilt whole on `refresh()` (simple and always right; `projections.py` shows the
incremental way). It is as fresh as the read models it reads: `sync()` first, then `refresh()`.
The SELECT runs in the read store's sandbox: it cannot read files outside the lab.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import duckdb

from cqrs_lab import projections as p
from cqrs_lab.lab import Lab
from cqrs_lab.readstore import READ_ONLY_STATEMENTS, QueryError

MARK = "cqrs_lab extra projection"  # the table comment telling our tables from the read store's
PLAIN_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
CATALOG = """
SELECT comment
FROM duckdb_tables()
WHERE table_name = $name
UNION ALL
SELECT 'view'
FROM duckdb_views()
WHERE view_name = $name
"""
RESERVED = """
SELECT count(*)
FROM duckdb_keywords()
WHERE keyword_name = $name
  AND keyword_category = 'reserved'
"""
# Run through `lab.sql`: the read store's own check (one SELECT) and sandbox, and a bind check.
PROBE = """
SELECT *
FROM (
{query}
) AS projection
LIMIT 0
"""
MATERIALISE = """
CREATE OR REPLACE TABLE {name} AS
{query}
"""
COUNT_ROWS = """
SELECT count(*)
FROM {name}
"""


@dataclass(slots=True)
class Projection:
    """A read model added later: a table `name` in the lab's read store, filled by one SELECT."""

    lab: Lab
    name: str
    query: str
    rows: int = 0
    positions: dict[str, int] = field(default_factory=dict)  # read-model checkpoints used

    def refresh(self) -> Projection:
        """Fill the table again from the read models as they are now (sync first for news)."""
        self.lab.sql(PROBE.format(query=self.query))  # raises QueryError if no longer valid
        con = self.lab.con
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(MATERIALISE.format(name=self.name, query=self.query))
            con.execute(f"COMMENT ON TABLE {self.name} IS '{MARK}'")  # name checked, MARK ours
            self.rows = int(con.execute(COUNT_ROWS.format(name=self.name)).fetchall()[0][0])
            self.positions = p.checkpoints(con)
            con.execute("COMMIT")
        except duckdb.Error as error:
            con.execute("ROLLBACK")
            raise QueryError(f"projection {self.name!r}: {type(error).__name__}: {error}") from None
        return self

    def __str__(self) -> str:
        at = ", ".join(f"{log} log #{position}" for log, position in self.positions.items())
        return f"projection {self.name}: {self.rows} rows, from the read models at {at or '#0'}"

    __repr__ = __str__


def add_projection(lab: Lab, name: str, select_sql: str) -> Projection:
    """Create table `name` from one SELECT over the read models, back-filled from all history.

        >>> add_projection(lab, "product_sales", "SELECT product, count(*) AS n FROM orders "
        ...                "GROUP BY product")
        projection product_sales: 5 rows, from the read models at customer log #3, order log #9

    `name` must be a plain lowercase identifier, not a keyword, and not one of the read store's
    own tables or views (adding a projection under the same name again replaces it). The query
    must be exactly one SELECT; anything else raises QueryError and creates nothing.
    """
    check_name(lab, name)
    return Projection(lab, name, check_select(select_sql)).refresh()


def check_name(lab: Lab, name: str) -> None:
    """Refuse a name that is not a plain identifier or that belongs to the read store."""
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
        raise QueryError(
            f"projection name {name!r} is not a plain identifier: use lowercase letters, digits "
            "and _, starting with a letter (e.g. 'product_sales')"
        )
    if lab.con.execute(RESERVED, {"name": name}).fetchall()[0][0]:
        raise QueryError(f"projection name {name!r} is an SQL keyword; choose another name")
    found = [comment for (comment,) in lab.con.execute(CATALOG, {"name": name}).fetchall()]
    if found and found != [MARK]:
        raise QueryError(
            f"projection name {name!r} is already a table or view of the read store; "
            "choose another name"
        )


def check_select(select_sql: str) -> str:
    """The text of the single SELECT in `select_sql` (no trailing `;`), or QueryError."""
    try:
        statements = duckdb.extract_statements(select_sql)
    except duckdb.Error as error:
        raise QueryError(f"{error}") from None
    if len(statements) != 1 or statements[0].type not in READ_ONLY_STATEMENTS:
        kinds = ", ".join(s.type.name for s in statements) or "nothing"
        raise QueryError(f"a projection is exactly one SELECT statement, got: {kinds}")
    return statements[0].query.strip().rstrip(";").rstrip()
