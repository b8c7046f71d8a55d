"""`FdiClient`: the FDI API of one instance, over httpx, signed with an AK/SK or with a token.

Every error answer becomes an `FdiApiError` carrying the wire code and message exactly as the
server sent them (the flat `{"error_code", "error_msg"}` body and the wrapped
`{"code", "reason": {…}}` form of the plan calls alike); a server that cannot be reached is an
`FdiConnectionError`. The command line (openfdi.cli) is written on top of this class.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from openfdi.client.signed import SignedAuth

BATCH_LIMIT = 10
"""At most this many tasks in one batch call (fdi-api.md, batch-operation)."""


class FdiApiError(Exception):
    """The server answered with an error body."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None):
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        super().__init__(f"{status} {code} {message}")


class FdiConnectionError(Exception):
    """No answer: the server is down, the address is wrong, or it timed out."""


@dataclass(frozen=True)
class BatchItem:
    """One task's outcome in a start/stop: `code` and `message` are None on success."""

    task_id: str
    task_name: str | None
    code: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.code is None


def _find_error(body: Any) -> tuple[str, str] | None:
    """The first `error_code`/`error_msg` pair in a (possibly nested) body, as the SDK finds it."""
    if isinstance(body, Mapping):
        code = body.get("error_code")
        if isinstance(code, str):
            return code, str(body.get("error_msg", ""))
        for value in body.values():
            found = _find_error(value)
            if found is not None:
                return found
    return None


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    found = _find_error(body)
    code, message = found or (f"HTTP.{response.status_code}", response.text[:500])
    raise FdiApiError(response.status_code, code, message, response.headers.get("X-Request-Id"))


def sign_in(
    endpoint: str, user: str, password: str, project_id: str, timeout: float = 30.0
) -> tuple[str, str | None]:
    """A token for the user (POST /v3/auth/tokens): (token, expires_at ISO string)."""
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "password": password}},
            },
            "scope": {"project": {"id": project_id}},
        }
    }
    try:
        response = httpx.post(f"{endpoint.rstrip('/')}/v3/auth/tokens", json=body, timeout=timeout)
    except httpx.TransportError as exc:
        raise FdiConnectionError(f"{endpoint}: {exc}") from exc
    _raise_for(response)
    expires = response.json().get("token", {}).get("expires_at")
    return response.headers["X-Subject-Token"], expires


class FdiClient:
    """One instance's FDI API. Use as a context manager (closes the connection pool)."""

    def __init__(
        self,
        endpoint: str,
        project_id: str,
        instance_id: str,
        *,
        ak: str | None = None,
        sk: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if token is None and (ak is None or sk is None):
            raise ValueError("an AK and SK, or a token, are needed")
        auth = SignedAuth(ak, sk, project_id) if token is None and ak and sk else None
        headers = {"X-Auth-Token": token} if token is not None else {}
        self.base = f"/v2/{project_id}/fdi/instances/{instance_id}"
        self.endpoint = endpoint
        self._http = httpx.Client(
            base_url=endpoint, auth=auth, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> FdiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """The decoded JSON answer (None when empty); raises FdiApiError/FdiConnectionError."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(
                method, f"{self.base}{path}", json=json, params=query or None
            )
        except httpx.TransportError as exc:
            raise FdiConnectionError(f"{self.endpoint}: {exc}") from exc
        _raise_for(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    # Tasks
    def list_tasks(self, **query: Any) -> dict[str, Any]:
        return dict(self.request("GET", "/tasks", params=query))

    def iter_tasks(self, **query: Any) -> Iterator[dict[str, Any]]:
        """Every task matching the filters, page after page."""
        offset, limit = 0, 100
        while True:
            page = self.list_tasks(**query, offset=offset, limit=limit)
            entities = page.get("entities") or []
            yield from entities
            offset += len(entities)
            if not entities or offset >= int(page.get("total", 0)):
                return

    def show_task(self, task_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/tasks/{task_id}"))

    def create_task(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/tasks", json=body))

    def update_task(self, task_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("PUT", f"/tasks/{task_id}", json=body))

    def delete_task(self, task_id: str) -> None:
        self.request("DELETE", f"/tasks/{task_id}")

    def run_task(self, task_id: str) -> None:
        self.request("POST", f"/tasks/{task_id}/run")

    def terminate_task(self, task_id: str) -> None:
        self.request("POST", f"/tasks/{task_id}/terminate")

    def monitor_logs(self, task_id: str, **query: Any) -> dict[str, Any]:
        return dict(self.request("GET", f"/tasks/{task_id}/monitor-logs", params=query))

    def batch(self, action: str, task_ids: Iterable[str]) -> dict[str, Any]:
        """One batch call (at most BATCH_LIMIT ids), the answer as the server gives it."""
        body = {"action_id": action, "list": [{"task_id": t} for t in task_ids]}
        return dict(self.request("POST", "/batch-operation/tasks", json=body))

    def start_or_stop(self, action: str, task_ids: Iterable[str]) -> list[BatchItem]:
        """Any number of tasks, as consecutive batch calls of at most BATCH_LIMIT ids.

        Each task's outcome is reported as its batch answered it. A batch refused as a whole
        (such as FDI.3083, a TIMING task without a plan: the server changes nothing in that
        batch) gives every task of it that code and message; the other batches still apply.
        """
        ids = list(dict.fromkeys(task_ids))
        items: list[BatchItem] = []
        for start in range(0, len(ids), BATCH_LIMIT):
            chunk = ids[start : start + BATCH_LIMIT]
            try:
                answer = self.batch(action, chunk)
            except FdiApiError as exc:
                items += [BatchItem(t, None, exc.code, exc.message) for t in chunk]
                continue
            outcome: dict[str, BatchItem] = {}
            for bean in answer.get("success") or []:
                tid = str(bean.get("task_id", ""))
                outcome[tid] = BatchItem(tid, bean.get("task_name"))
            for bean in answer.get("failure") or []:
                tid = str(bean.get("task_id", ""))
                outcome[tid] = BatchItem(
                    tid,
                    bean.get("task_name"),
                    str(bean.get("error_code") or ""),
                    str(bean.get("error_msg") or ""),
                )
            items += [outcome.get(t) or BatchItem(t, None, "", "not in the answer") for t in chunk]
        return items

    # Plans
    def show_plan(self, task_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/tasks/{task_id}/dispatches"))

    def create_plan(self, task_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", f"/tasks/{task_id}/dispatches", json=body))

    def update_plan(
        self, task_id: str, dispatch_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        return dict(self.request("PUT", f"/tasks/{task_id}/dispatches/{dispatch_id}", json=body))

    # Data sources
    def list_datasources(self, **query: Any) -> dict[str, Any]:
        return dict(self.request("GET", "/datasources", params=query))

    def show_datasource(self, datasource_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/datasources/{datasource_id}"))

    def create_datasource(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/datasources", json=body))

    def test_datasource(
        self, datasource_id: str, info: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Test the stored data source, or with `info` (a DatasourceInfo) the values of a form
        before they are saved (`******` standing for the stored secret)."""
        return dict(self.request("POST", f"/datasources/{datasource_id}/test-connect", json=info))

    def tables(self, datasource_id: str, **query: Any) -> dict[str, Any]:
        return dict(self.request("GET", f"/datasources/{datasource_id}/tables", params=query))

    def columns(self, datasource_id: str, **query: Any) -> dict[str, Any]:
        return dict(self.request("GET", f"/datasources/{datasource_id}/columns", params=query))
