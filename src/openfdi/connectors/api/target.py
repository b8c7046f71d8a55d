"""Writing to an API: rows POSTed as JSON, in batches or one request each (layer: connectors).

A request counts as delivered when the API answers 2xx. 429, 408 and 5xx are tried again
(`http.Requester`). An answer that refuses the data (400, 409, 413, 422) refuses rows, not the
run: a batch is split in halves and re-sent (`_rejects.write_isolating_rejects`) until the rows
the API will not take are alone, and each becomes a dirty row with the API's answer. Any other
answer (401, 403, 404, ...) is a setting to fix and fails the run.

Every request carries `Idempotency-Key: <run token>-<request number>`, the same on each of its
retries, so a receiver can drop a request it already applied (a retry after a lost answer). A run
stopped or crashed after a request was delivered and before its checkpoint sends those rows again
on its next run, under new keys: delivery is at-least-once, and a receiver that must not count a
row twice dedupes on the row's own key.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Sequence

import httpx

from openfdi.connectors._json_text import unencodable_text
from openfdi.connectors._rejects import write_isolating_rejects
from openfdi.connectors.api.http import Answer, Requester
from openfdi.connectors.api.options import ApiContent, TargetOptions
from openfdi.connectors.api.records import encoder
from openfdi.connectors.errors import TerminalConnectorError
from openfdi.connectors.spi import LogicalType, RejectedRow, Row, TableSchema, WriteResult

__all__ = ["REFUSING_STATUSES", "Sender"]

REFUSING_STATUSES = frozenset({400, 409, 413, 422})
"""Answers that refuse what was sent (its rows), not how it was sent."""


class _Refused(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(f"the API answered {answer.status}: {answer.snippet()}")


class Sender:
    """Sends the rows of one run's batches to one API end."""

    def __init__(
        self,
        content: ApiContent,
        options: TargetOptions,
        requester: Requester,
        columns: Sequence[str],
        schema: TableSchema | None,
    ) -> None:
        self.options = options
        self.requester = requester
        self.method = options.method
        base = content.url.rstrip("/") + options.path if options.path else content.url
        self.url = httpx.URL(base).copy_merge_params(dict(options.query))
        self.token = uuid.uuid4().hex
        """This run's part of every Idempotency-Key."""
        self.numbers = itertools.count(1)
        json_columns = [
            schema is not None and c in schema.names and schema.column(c).type is LogicalType.JSON
            for c in columns
        ]
        self.encode = encoder(
            columns,
            options.fields,
            json_columns,
            decimals_as_strings=options.decimals_as_strings,
        )

    def write(self, rows: list[Row], live: Callable[[], None]) -> WriteResult:
        written = 0
        rejected: list[RejectedRow] = []
        texts: list[tuple[int, bytes]] = []
        for i, row in enumerate(rows):
            try:
                # Encoded here, row by row: a text holding a lone surrogate, which UTF-8 cannot
                # carry, refuses its row (encoding the whole body failed the run, "internal
                # error: 'utf-8' codec can't encode").
                texts.append((i, self.encode(row).encode("utf-8")))
            except UnicodeEncodeError as exc:
                why = unencodable_text(exc)
                rejected.append(RejectedRow(row, f"cannot be written as JSON: {why}"))
            except (ValueError, TypeError, RecursionError) as exc:
                rejected.append(RejectedRow(row, f"cannot be written as JSON: {exc}"))
        step = 1 if self.options.per_row else self.options.rows_per_request
        for lo in range(0, len(texts), step):
            live()
            chunk = texts[lo : lo + step]
            count, refused = write_isolating_rejects(
                list(chunk),
                self._attempt,
                lambda exc: str(exc) if isinstance(exc, _Refused) else None,
            )
            written += count
            rejected.extend(RejectedRow(rows[chunk[at][0]], reason) for at, reason in refused)
        return WriteResult(written, rejected)

    def _attempt(self, chunk: list[Row]) -> None:
        texts = [text for _i, text in chunk]
        if self.options.per_row:
            body = texts[0]
        else:
            body = b"[" + b",".join(texts) + b"]"
            if self.options.root:
                body = b"{" + _key(self.options.root).encode("utf-8") + b":" + body + b"}"
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": f"{self.token}-{next(self.numbers)}",
            **self.options.headers,
        }
        url = self.url
        answer = self.requester.send(
            self.method,
            url,
            content=body,
            headers=headers,
        )
        if 200 <= answer.status < 300:
            return
        if answer.status in REFUSING_STATUSES:
            raise _Refused(answer)
        raise TerminalConnectorError(
            f"{self.method} {url} answered {answer.status}: {answer.snippet()}"
        )


def _key(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)
