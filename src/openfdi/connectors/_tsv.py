"""The text pass-through form shared by the SQL dialects (layer: connectors).

Rows travel as the text PostgreSQL's `COPY ... (FORMAT text)` writes and MySQL's
`LOAD DATA ... FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\'` reads: one line per row, fields
separated by a tab, `\\N` for NULL, and a backslash escaping a backslash, tab, newline or
carriage return inside a value (PostgreSQL also writes `\\b`, `\\f` and `\\v`; a reader that
does not take those refuses the slice). The source's database formats the values, so rows are
never turned into Python objects on the way: for PostgreSQL to MySQL the bytes of one server's
COPY go to the other's LOAD DATA.

Values are written in the one text form that every dialect parses back to the same value:
integers and decimals in plain digits; doubles in their shortest exact form; booleans as 0/1;
dates as YYYY-MM-DD; timestamps as `YYYY-MM-DD HH:MM:SS[.ffffff]`, timestamps with time zone
as that instant's UTC wall time (both ends' sessions run in UTC). Only the logical types listed
in `TEXT_FORM_TYPES` take part; a column of any other type (binary, JSON, time, float...) keeps its
table on the row path.

The form names the logical type of each column (with its length, precision and scale), so a
pass-through only happens between columns that the row path would also move unchanged: a
target created from the source's schema always matches.
"""

from __future__ import annotations

from collections.abc import Sequence

from openfdi.connectors.spi import Column, LogicalType

__all__ = ["CSV", "FILE_CSV", "TEXT_FORM_TYPES", "TSV", "csv_form", "file_csv_form", "tsv_form"]

TSV = "text-tsv"
CSV = "text-csv"
"""The same columns as RFC 4180 CSV text, as a CSV file holds them: `,` between fields, `"`
quotes (doubled inside), an unquoted empty field for NULL, UTF-8, no header line; chunks are
pieces of the file (a target must take them as one stream: PostgreSQL's `COPY ... (FORMAT
csv)`). The source vouches that every value has its column's type in a spelling the target
parses as the row path would write it (connectors/_files/passthrough.py checks each file)."""

FILE_CSV = "file-csv"
"""The same columns as the lines a CSV file target's row path writes (pyarrow's CSV spelling:
`,` between fields, every text value quoted, NULL empty, floats and timestamps as pyarrow casts
them to text; `connectors/_files/writer.py`), no header line. Each chunk is framed: the number
of rows it holds in ASCII digits and a newline, then those rows (a value may hold a newline, so
the target could not count them otherwise). A PostgreSQL source writes it with COPY
(`connectors/postgres/csv_out.py`): the file target then only appends bytes."""

TEXT_FORM_TYPES = frozenset(
    {
        LogicalType.BIGINT,
        LogicalType.INT,
        LogicalType.SMALLINT,
        LogicalType.DECIMAL,
        LogicalType.DOUBLE,
        LogicalType.VARCHAR,
        LogicalType.TEXT,
        LogicalType.BOOLEAN,
        LogicalType.DATE,
        LogicalType.TIMESTAMP,
        LogicalType.TIMESTAMPTZ,
    }
)


def _spelling(column: Column) -> str | None:
    if column.type not in TEXT_FORM_TYPES:
        return None
    if column.type is LogicalType.DECIMAL:
        if column.precision is None:
            return None  # unbounded on one side only: the other rounds or refuses differently
        return f"decimal({column.precision},{column.scale or 0})"
    if column.type is LogicalType.VARCHAR:
        return f"varchar({column.length})" if column.length else "text"
    return column.type.value


def csv_form(columns: Sequence[Column]) -> tuple[str, ...] | None:
    """The CSV pass-through form of these columns, or None when one of them cannot take it."""
    form = tsv_form(columns)
    return None if form is None else (CSV, *form[1:])


def file_csv_form(columns: Sequence[Column]) -> tuple[str, ...] | None:
    """The CSV file form of these columns, or None when one of them cannot take it."""
    form = tsv_form(columns)
    return None if form is None else (FILE_CSV, *form[1:])


def tsv_form(columns: Sequence[Column]) -> tuple[str, ...] | None:
    """The text pass-through form of these columns, or None when one of them cannot take it."""
    spelled = [_spelling(c) for c in columns]
    if not columns or None in spelled:
        return None
    return (TSV, *(s for s in spelled if s is not None))
