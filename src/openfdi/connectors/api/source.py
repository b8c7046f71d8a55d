"""Reading an API: pages, time windows and the checkpoint that says where a read stands
(layer: connectors).

A read walks time windows (when the end has one) and, in each, the pages of the answer. Pages are
gathered into batches bounded like any other read (rows, seconds); each batch's `position` is the
checkpoint after its last page:

- `"2026-01-01T01:00:00+00:00"`: every window up to that time is read (the next run starts there);
- `{"from": ..., "to": ..., "next": {...}}` (JSON text): inside the window [from, to), the pages
  before `next` are read; the next run asks for `next` first.

The engine saves a batch's position only after the target committed the batch, so a stop or a
crash re-reads at most the pages of one uncommitted batch, and never skips one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from openfdi.connectors._json_text import lone_surrogate
from openfdi.connectors.api.http import Answer, Requester
from openfdi.connectors.api.options import ApiContent, Paging, SourceOptions, Window, parse_time
from openfdi.connectors.api.records import (
    BadRecordError,
    decoder,
    page_decoder,
    parse_body,
    refused_record,
    walk,
)
from openfdi.connectors.errors import InvalidContentError, TerminalConnectorError
from openfdi.connectors.spi import Batch, ReadPlan, RejectedRow, Row

__all__ = ["Page", "PageReader", "read_batches", "window_position"]

PageState = dict[str, Any]
"""Where the next page is: {"page": n} / {"offset": n} / {"cursor": c} / {"url": u}, with
"pages" (pages read) and "seen" (records read) for the stop rules."""


@dataclass(frozen=True, slots=True)
class Page:
    records: list[Any]
    next: PageState | None
    """The next page of the same window, or None when this was its last."""
    nbytes: int = 0
    """The size of the answer's body: the batch's size, as read (estimating it value by value
    took a fifth of a read's time)."""
    suspect: bool = False
    """Parsed by the standard library (msgspec refused the body): its strings may hold a lone
    surrogate, so its records are decoded one by one and such a record is refused."""


def _time_text(when: datetime, fmt: str) -> str:
    if fmt == "iso":
        return when.isoformat().replace("+00:00", "Z")
    if fmt == "epoch_s":
        return str(int(when.timestamp()))
    if fmt == "epoch_ms":
        return str(int(when.timestamp() * 1000))
    return when.strftime(fmt)


def window_position(start: datetime, end: datetime, nxt: PageState | None) -> str:
    """The checkpoint after a page of the window [start, end)."""
    if nxt is None:
        return end.isoformat()
    return json.dumps({"from": start.isoformat(), "to": end.isoformat(), "next": nxt})


class PageReader:
    """Asks for the pages of one source end, one request each, and says where the next one is."""

    def __init__(self, content: ApiContent, options: SourceOptions, requester: Requester) -> None:
        self.content = content
        self.options = options
        self.requester = requester
        self.method = options.method or content.method
        self.url = httpx.URL(
            content.url.rstrip("/") + options.path if options.path else content.url
        )
        self.headers = {"Accept": "application/json", **options.headers}

    def first(self) -> PageState:
        paging = self.options.paging
        start: PageState = {"pages": 0, "seen": 0}
        if paging.type == "page":
            start["page"] = paging.start
        elif paging.type == "offset":
            start["offset"] = 0
        return start

    def fetch(
        self, state: PageState, window: Mapping[str, str], *, on_this_thread: bool = False
    ) -> Page:
        """The page at `state` (within the window whose parameters are `window`);
        `on_this_thread` as `Requester.send` says."""
        paging = self.options.paging
        query: dict[str, Any] = dict(self.options.query)
        body: dict[str, Any] | None = (
            dict(self.options.body) if isinstance(self.options.body, Mapping) else None
        )
        placed: dict[str, Any] = {}
        if paging.type in ("page", "offset"):
            placed[paging.param] = state[paging.type]
        elif paging.type == "cursor" and state.get("cursor") is not None:
            placed[paging.param] = state["cursor"]
        if paging.size_param and paging.size and paging.type != "link":
            placed[paging.size_param] = paging.size
        window_in_body = self.options.window is not None and self.options.window.in_body
        if paging.in_body:
            body = {**(body or {}), **placed}
        else:
            query.update(placed)
        if window_in_body:
            body = {**(body or {}), **window}
        else:
            query.update(window)
        url = httpx.URL(state["url"]) if state.get("url") else self.url.copy_merge_params(query)
        if body is not None and self.method == "GET":
            raise InvalidContentError(
                "a GET request has no body: use method POST or put the parameters in the query",
                field="message.body",
            )
        answer = self.requester.send(
            self.method, url, json_body=body, headers=self.headers, on_this_thread=on_this_thread
        )
        doc, suspect = self._document(answer)
        records = walk(doc, self.options.records) if self.options.records else doc
        if not isinstance(records, list):
            where = "$" + "".join(
                f"[{s}]" if isinstance(s, int) else f".{s}" for s in self.options.records
            )
            found = "nothing" if records is None else f"a {type(records).__name__}"
            raise TerminalConnectorError(
                f"{self.method} {_plain(answer.url)}: no list of records at {where} of the "
                f"response (found {found}); set message.records to the path of the list"
            )
        nxt = self._next(state, doc, records, answer, paging)
        return Page(records, nxt, len(answer.body), suspect)

    def _document(self, answer: Answer) -> tuple[Any, bool]:
        where = f"{self.method} {_plain(answer.url)}"
        if answer.status >= 300:
            hint = " (redirects are not followed: point url at the final address)" * (
                answer.status < 400
            )
            raise TerminalConnectorError(
                f"{where} answered {answer.status}{hint}: {answer.snippet()}"
            )
        kind = answer.headers.get("Content-Type", "none")
        try:
            return parse_body(answer.body)
        except UnicodeDecodeError as exc:
            raise TerminalConnectorError(
                f"{where}: the response is not UTF-8 text (byte {exc.start}); Content-Type {kind}"
            ) from None
        except RecursionError:
            raise TerminalConnectorError(
                f"{where}: the response is JSON nested too deeply"
            ) from None
        except ValueError as exc:
            raise TerminalConnectorError(
                f"{where}: the response is not JSON ({exc}); Content-Type {kind}: "
                f"{answer.snippet(120)!r}"
            ) from None

    def _next(
        self,
        state: PageState,
        doc: Any,
        records: list[Any],
        answer: Answer,
        paging: Paging,
    ) -> PageState | None:
        pages, seen = state["pages"] + 1, state["seen"] + len(records)
        if paging.type == "none" or not records:
            return None
        if paging.max_pages is not None and pages >= paging.max_pages:
            return None
        if paging.total_path is not None:
            total = _count(walk(doc, paging.total_path))
            if total is not None and seen >= total:
                return None
        base: PageState = {"pages": pages, "seen": seen}
        if paging.type in ("page", "offset"):
            if paging.size is not None and len(records) < paging.size:
                return None  # a short page is the last
            step = 1 if paging.type == "page" else len(records)
            return {**base, paging.type: state[paging.type] + step}
        if paging.type == "cursor":
            cursor = walk(doc, paging.next_path or ())
            if cursor is None or cursor == "":
                return None
            if cursor == state.get("cursor"):
                raise TerminalConnectorError(
                    f"the API answered the cursor {cursor!r} twice; paging would never end"
                )
            return {**base, "cursor": cursor if isinstance(cursor, str | int) else str(cursor)}
        link = walk(doc, paging.next_path) if paging.next_path else _link_next(answer.headers)
        if not link:
            return None
        target = urljoin(str(answer.url), str(link))
        if _origin(target) != _origin(str(self.url)):
            raise TerminalConnectorError(
                f"the next-page link {_plain(target)} leaves {_origin(str(self.url))}: refused, "
                "so the data source's credentials are never sent elsewhere"
            )
        if target == str(answer.url):
            raise TerminalConnectorError("the API's next-page link points at the same page")
        return {**base, "url": target}


def _count(total: Any) -> int | None:
    """The number of records at `total_path`, if it is one: an integer, integral number or
    digits. Not `true` (a bool is an int: it ended the read after one page, losing the rest),
    NaN or Infinity (`int()` of them failed the run as an "internal error"): those are
    ignored, and the read ends by the other rules."""
    if isinstance(total, bool):
        return None
    if isinstance(total, int):
        return total
    if isinstance(total, float | Decimal):
        finite = math.isfinite(total) if isinstance(total, float) else total.is_finite()
        return int(total) if finite and total == int(total) else None
    if isinstance(total, str) and total.isdigit():
        return int(total)
    return None


def _link_next(headers: httpx.Headers) -> str | None:
    """The `rel="next"` target of RFC 8288 Link headers."""
    for value in headers.get_list("Link"):
        for part in value.split(","):
            url, _, params = part.partition(";")
            rels = [p.strip().lower() for p in params.split(";")]
            if any(r in ('rel="next"', "rel=next") for r in rels):
                return url.strip().strip("<>")
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


def _plain(url: Any) -> str:
    return str(httpx.URL(str(url)).copy_with(query=None))


Span = tuple[datetime, datetime, PageState | None]
"""A window [from, to) and the page to begin it at (None: its first)."""


def windows(window: Window, watermark: str | None, now: datetime) -> Iterator[Span]:
    """The windows from the checkpoint to `now - lag`, each at most `size_s` long."""
    resume: PageState | None = None
    if watermark is None:
        if window.start is None:
            raise InvalidContentError(
                "an API window needs a first start: sourceSelectedDatasource.incremental.start "
                "or message.window.start",
                field="message.window.start",
            )
        start = window.start
    elif watermark.lstrip().startswith("{"):
        try:
            saved = json.loads(watermark)
            start, end = parse_time(saved["from"], "from"), parse_time(saved["to"], "to")
            resume = dict(saved["next"])
        except (ValueError, KeyError, TypeError):
            raise TerminalConnectorError(f"unreadable API checkpoint {watermark[:200]!r}") from None
        yield start, end, resume
        start = end
    else:
        try:
            start = parse_time(watermark, "incremental.start")
        except InvalidContentError:
            raise TerminalConnectorError(
                f"the checkpoint {watermark!r} is not an ISO-8601 time"
            ) from None
    until = now - timedelta(seconds=window.lag_s)
    size = timedelta(seconds=window.size_s)
    while start < until:
        end = min(start + size, until)
        yield start, end, None
        start = end


def read_batches(
    reader: PageReader,
    plan: ReadPlan,
    clock: Callable[[], datetime],
    live: Callable[[], None],
) -> Iterator[Batch]:
    """The read of `plan`: batches of whole pages, each with the checkpoint after its last page."""
    options = reader.options
    fields = options.fields
    names = plan.columns or (tuple(f.name for f in fields) if fields else ("payload",))
    decode = decoder(fields, plan.columns)
    decode_page = page_decoder(fields, plan.columns)
    window = options.window
    if window is None and plan.incremental_column is not None:
        raise InvalidContentError(
            "sourceSelectedDatasource.incremental on an API source needs message.window: the "
            "checkpoint is the end of the last time window read (without one, every run or "
            "poll would read everything again)",
            field="message.window",
        )
    if window is not None and plan.incremental_column is None:
        raise InvalidContentError(
            "an API source with a window needs sourceSelectedDatasource.incremental: the "
            "checkpoint (the end of the last window read) is kept as its watermark",
            field="message.window",
        )
    spans: Iterator[Span]
    if window is None:
        spans = iter([(datetime.min.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC), None)])
    else:
        spans = windows(window, plan.watermark, clock())
    rows: list[Row] = []
    bad: list[RejectedRow] = []
    nbytes = 0
    position: str | None = plan.watermark
    began = time.monotonic()
    for start, end, resume in spans:
        params = {}
        if window is not None:
            params = {
                window.start_param: _time_text(start, window.format),
                window.end_param: _time_text(end, window.format),
            }
        for page in _pages(reader, resume or reader.first(), params, live):
            nbytes += page.nbytes
            decoded = None if page.suspect else decode_page(page.records)
            if decoded is not None:
                rows += decoded
            else:  # a record to refuse (or not an object): record by record, naming it
                for record in page.records:
                    try:
                        row = decode(record)
                        if page.suspect and (lone := lone_surrogate(row)) is not None:
                            raise BadRecordError(f"field {names[lone[0]]}: {lone[1]}")
                        rows.append(row)
                    except BadRecordError as exc:
                        bad.append(refused_record(record, str(exc)))
            if window is not None:
                position = window_position(start, end, page.next)
            if len(rows) >= plan.batch_rows or time.monotonic() - began >= plan.batch_seconds:
                yield _batch(names, rows, nbytes, position, bad, last=False)
                rows, bad, nbytes, began = [], [], 0, time.monotonic()
    yield _batch(names, rows, nbytes, position, bad, last=True)


def _pages(
    reader: PageReader, state: PageState, params: Mapping[str, str], live: Callable[[], None]
) -> Iterator[Page]:
    """The pages of one window, each asked for as soon as the one before it said where it is:
    the request and its parsing run on a thread while the caller decodes this page and the
    target writes the batch (a page is only ever asked for once, in order; the checkpoint
    moves with the pages the caller consumed, so one asked for and never used changes nothing)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="openfdi-api-page")

    def fetch(at: PageState) -> Page:
        # The request on this thread itself: `_result` below is the waiter that sees a cancel.
        return reader.fetch(at, params, on_this_thread=True)

    # The cursors and links this window asked for: an API that leads back to one of them (a
    # cycle A, B, A, ...) would be read, and its records written, for ever. One entry a page.
    seen = {_where(state)}
    try:
        pending: Future[Page] | None = pool.submit(fetch, state)
        while pending is not None:
            page = _result(pending, live)
            if page.next is not None:
                where = _where(page.next)
                if where is not None and where in seen:
                    shown = _plain(where[1]) if page.next.get("url") else where[1][:200]
                    raise TerminalConnectorError(
                        f"the API led back to the {where[0]} {shown!r} after "
                        f"{page.next['pages']} pages (a cycle); paging would never end"
                    )
                seen.add(where)
            pending = None if page.next is None else pool.submit(fetch, page.next)
            yield page
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _where(state: PageState) -> tuple[str, str] | None:
    """The cursor or link a page is asked for by (None for page numbers and offsets, which
    never go back)."""
    if state.get("url"):
        return "next-page link", str(state["url"])  # compared whole, shown without its query
    if state.get("cursor") is not None:
        return "cursor", str(state["cursor"])
    return None


def _result(pending: Future[Page], live: Callable[[], None]) -> Page:
    """The page, waited for in 0.1 s slices so a cancel is seen."""
    while True:
        live()
        try:
            return pending.result(timeout=0.1)
        except FutureTimeout:
            continue


def _batch(
    names: tuple[str, ...],
    rows: list[Row],
    nbytes: int,
    position: str | None,
    bad: list[RejectedRow],
    *,
    last: bool,
) -> Batch:
    return Batch(names, rows, nbytes, position, last, tuple(bad))
