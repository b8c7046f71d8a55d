"""Scoped look-ups: a task or data source of another project or instance does not exist."""

from __future__ import annotations

from sqlalchemy.orm import Session

from openfdi.domain.scope import Scope
from openfdi.errors import DatasourceNotFound, TaskNotFound
from openfdi.store.tables import DatasourceRow, TaskRow


def get_task_row(session: Session, scope: Scope, task_id: str) -> TaskRow:
    row = session.get(TaskRow, task_id)
    if row is None or row.instance_id != scope.instance_id or row.project_id != scope.project_id:
        raise TaskNotFound()
    return row


def get_datasource_row(session: Session, scope: Scope, datasource_id: str) -> DatasourceRow:
    row = session.get(DatasourceRow, datasource_id)
    if row is None or row.instance_id != scope.instance_id or row.project_id != scope.project_id:
        raise DatasourceNotFound()
    return row
