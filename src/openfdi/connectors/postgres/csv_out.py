"""A CSV file's bytes written by PostgreSQL itself (layer: connectors): the `file-csv` pass-through
form of `connectors._tsv`, for a PostgreSQL source and a CSV file target.

`COPY (SELECT ...) TO STDOUT (FORMAT csv, FORCE_QUOTE (...))` writes each row as the file
target's row path would (pyarrow's CSV spelling, `connectors/_files/writer.py`), because every
column is selected as the text pyarrow gives its value:

- integers, `numeric(p,s)` (p <= 38, 0 <= s <= 6) and dates: PostgreSQL's own text (the
  same digits; pyarrow writes smaller decimals of larger scales as `1E-7`);
- text: quoted, `"` doubled (FORCE_QUOTE), NULL an unquoted empty field, as pyarrow writes;
- booleans `true`/`false`; timestamps `YYYY-MM-DD HH:MM:SS.ffffff` (always six digits), with
  time zone as their UTC wall time and a `Z`;
- doubles in pyarrow's shortest form: plain digits for exponents -6 to 9, else `d.ddde+N` (no
  zero padding of the exponent); PostgreSQL writes `1e-05`, pyarrow `0.00001`, so such values
  are re-spelled in SQL. From 1e16 up PostgreSQL's shortest digits are sometimes one to three
  digits longer than pyarrow's (about 2% of such values): those are searched for in SQL (the
  fewest digits that read back as the same double).

A value the row path would not write as such (a NaN decimal, a date or timestamp outside years
1-9999, `infinity`) cannot be spelled the same way: the SELECT then fails on purpose with
`REFUSED` in its message, and the slice is refused (the engine writes it row by row, where such a
value becomes a dirty row). The server runs the spelling, on its own core, while this process
only moves bytes: one row per COPY message, gathered into chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from openfdi.connectors.spi import Column, LogicalType

__all__ = ["FILE_CSV_TYPES", "REFUSED", "csv_copy_options", "csv_expression", "spellable"]

REFUSED = "openfdi: not spelled as the row path would"
"""In the error of a value that cannot take the form (a cast of this text to integer fails)."""

_TEXT_NATIVES = frozenset({"text", "character varying", "varchar"})


def _refuse(column: str) -> str:
    # Depends on the row (a constant would be folded, and fail, at planning).
    return f"('{REFUSED}: ' || {column}::text)::int::text"


def _double(c: str) -> str:
    """pyarrow's spelling of a double (`pa.array([x]).cast(pa.string())`), from PostgreSQL's
    shortest text (extra_float_digits = 1)."""
    t = f"{c}::text"
    m = f"split_part({t}, 'e', 1)"
    e = f"split_part({t}, 'e', 2)::int"
    sign = f"CASE WHEN {c} < 0 THEN '-' ELSE '' END"
    first = f"CASE WHEN {c} < 0 THEN 2 ELSE 1 END"  # where the first digit is
    n = f"length(replace(ltrim({m}, '-'), '.', ''))"

    def rounded(j: str) -> str:
        return f"round(abs({t}::numeric), {j} - 1 - {e})"

    def reads_back(j: str) -> str:  # rounding up near the largest double would overflow
        return f"CASE WHEN abs({c}) < 1e300 THEN {rounded(j)}::float8 = abs({c}) END"

    def exp_form(d: str, exponent: str) -> str:  # d: the significant digits, no trailing 0
        return (
            f"{sign} || left({d}, 1) || CASE WHEN length({d}) > 1 THEN '.' || substr({d}, 2) "
            f"ELSE '' END || 'e+' || ({exponent})::text"
        )

    # From 1e16 up: the fewest digits that read back as the same double (rare: see above).
    found = exp_form("rtrim(s, '0')", "length(s) - 1")
    shortest = (
        f"(SELECT {found} FROM "
        f"(SELECT trunc({rounded('j')})::text AS s FROM generate_series(1, {n} - 1) j "
        f"WHERE {reads_back('j')} ORDER BY j LIMIT 1) q)"
    )
    # The cheap tests first: most doubles take the first branch (NaN and infinities compare
    # above every number, so they fall through to their own branches).
    return (
        # Exponents -4 to 9: both write plain digits.
        f"CASE WHEN abs({c}) >= 1e-4 AND abs({c}) < 1e10 THEN {t} "
        # Below -6 (and zero): both write d.ddde-N; PostgreSQL pads N to two digits.
        f"WHEN abs({c}) < 1e-6 THEN replace({t}, 'e-0', 'e-') "
        # -6 and -5: PostgreSQL writes d.ddde-0N, pyarrow plain digits.
        f"WHEN abs({c}) < 1e-5 THEN {sign} || '0.00000' || replace(ltrim({m}, '-'), '.', '') "
        f"WHEN abs({c}) < 1e-4 THEN {sign} || '0.0000' || replace(ltrim({m}, '-'), '.', '') "
        # 10 to 14: PostgreSQL writes plain digits, pyarrow d.ddde+N.
        # (The digits with a point after the first, trailing zeros dropped: string functions,
        # five times cheaper here than one regexp_replace.)
        f"WHEN abs({c}) < 1e15 THEN rtrim(rtrim(overlay(replace({t}, '.', '') placing '.' "
        f"from {first} + 1 for 0), '0'), '.') || 'e+' || "
        f"(length(split_part({t}, '.', 1)) - {first})::text "
        f"WHEN {c} = 'NaN' THEN 'nan' WHEN {c} = 'Infinity' THEN 'inf' "
        f"WHEN {c} = '-Infinity' THEN '-inf' "
        # 15 up: both write d.ddde+N (N has two digits or more), when the digits agree.
        f"WHEN abs({c}) < 1e16 OR {n} = 1 OR NOT coalesce({reads_back(f'{n} - 1')}, false) "
        f"THEN {t} ELSE coalesce({shortest}, {t}) END"
    )


_FIRST, _LAST = "'0001-01-01'", "'9999-12-31 23:59:59.999999'"


def _six_digits(t: str) -> str:
    # PostgreSQL writes `YYYY-MM-DD HH:MM:SS[.f]` in years 1-9999, the fraction without its
    # trailing zeros: the missing point and zeros are appended (to_char: twice as slow).
    return f"{t} || substr('.000000', length({t}) - 18)"


def _timestamp(c: str) -> str:
    return (
        f"CASE WHEN {c} BETWEEN {_FIRST} AND {_LAST} THEN {_six_digits(f'{c}::text')} "
        f"ELSE {_refuse(c)} END"
    )


def _timestamptz(c: str) -> str:
    # Its UTC wall time (a timestamp's text costs less than a timestamptz's) and a `Z`; the
    # range is checked on the value itself (cheaper than on its conversion).
    lo, hi = _FIRST[:-1] + " 00:00:00+00'", _LAST[:-1] + "+00'"
    wall = f"({c} AT TIME ZONE 'UTC')::text"
    return (
        f"CASE WHEN {c} BETWEEN {lo} AND {hi} THEN {_six_digits(wall)} || 'Z' ELSE {_refuse(c)} END"
    )


_SPELLINGS: dict[LogicalType, Callable[[str], str]] = {
    LogicalType.BIGINT: lambda c: c,
    LogicalType.INT: lambda c: c,
    LogicalType.SMALLINT: lambda c: c,
    LogicalType.TEXT: lambda c: c,
    LogicalType.VARCHAR: lambda c: c,
    LogicalType.DECIMAL: lambda c: f"CASE WHEN {c} = 'NaN' THEN {_refuse(c)} ELSE {c}::text END",
    LogicalType.DOUBLE: _double,
    LogicalType.BOOLEAN: lambda c: f"{c}::text",
    LogicalType.DATE: lambda c: (
        f"CASE WHEN {c} BETWEEN {_FIRST} AND '9999-12-31' THEN {c}::text ELSE {_refuse(c)} END"
    ),
    LogicalType.TIMESTAMP: _timestamp,
    LogicalType.TIMESTAMPTZ: _timestamptz,
}
FILE_CSV_TYPES = frozenset(_SPELLINGS)


def spellable(column: Column) -> bool:
    """Whether PostgreSQL can write this column as the file target's row path writes it."""
    if column.type not in _SPELLINGS:
        return False
    if column.type in (LogicalType.TEXT, LogicalType.VARCHAR):
        return column.native_type.split("(")[0] in _TEXT_NATIVES
    if column.type is LogicalType.DECIMAL:
        # pyarrow writes a decimal whose leading digit is below 1e-6 as `1E-7` (`0E-10` for a
        # zero of scale 10): only a scale of at most 6 always gives PostgreSQL's plain digits.
        scale = column.scale or 0
        return column.precision is not None and column.precision <= 38 and 0 <= scale <= 6
    return True


def csv_expression(column: Column, quoted: str) -> str:
    """The SELECT expression of one column (named `quoted`, already quoted)."""
    return f"{_SPELLINGS[column.type](quoted)} AS {quoted}"


def csv_copy_options(columns: Sequence[Column], quote: Callable[[str], str]) -> str:
    """COPY's options: CSV, the text columns always quoted (as pyarrow quotes every string)."""
    texts = [quote(c.name) for c in columns if c.type in (LogicalType.TEXT, LogicalType.VARCHAR)]
    force = f", FORCE_QUOTE ({', '.join(texts)})" if texts else ""
    return f" (FORMAT csv{force})"
