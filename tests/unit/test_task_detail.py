"""What the engine reads from task_detail, and what it refuses at create/update."""

from __future__ import annotations

import json

import pytest

from openfdi.domain.task_detail import TaskDetailError, parse_task_detail

FULL = {
    "sourceSelectedDatasource": {
        "table": "orders",
        "columns": ["id", "amount"],
        "where": "status = 'paid'",
        "incremental": {"column": "updated_at", "start": "2026-01-01T00:00:00Z"},
    },
    "targetSelectedDatasource": {
        "table": "orders_copy",
        "writeMode": "upsert",
        "keyColumns": ["id"],
        "createTable": True,
    },
    "mappingTable": [{"sourceField": "id", "targetField": "order_id"}],
    "someKeyOfAnotherRomaVersion": {"kept": True},
}


def test_the_documented_example_parses() -> None:
    detail = parse_task_detail(json.dumps(FULL))
    assert detail.source_table == "orders"
    assert detail.columns == ("id", "amount")
    assert detail.incremental_column == "updated_at"
    assert detail.write_mode == "upsert"
    assert detail.key_columns == ("id",)
    assert detail.target_name("id") == "order_id"
    assert detail.target_name("amount") == "amount"


def test_defaults() -> None:
    detail = parse_task_detail(
        '{"sourceSelectedDatasource": {"table": "a"}, "targetSelectedDatasource": {"table": "b"}}'
    )
    assert (detail.write_mode, detail.create_table, detail.columns) == ("insert", True, None)


def _with(path: tuple[str, ...], value: object) -> str:
    doc = json.loads(json.dumps(FULL))
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "object"),
        (_with(("sourceSelectedDatasource", "table"), KeyError), "sourceSelectedDatasource.table"),
        (_with(("targetSelectedDatasource",), KeyError), "targetSelectedDatasource.table"),
        (_with(("targetSelectedDatasource", "writeMode"), "merge"), "writeMode"),
        (_with(("targetSelectedDatasource", "keyColumns"), KeyError), "keyColumns"),
        (_with(("sourceSelectedDatasource", "where"), "a = 1; DROP TABLE x"), "where"),
        (_with(("sourceSelectedDatasource", "where"), "amount"), "boolean"),
        (_with(("sourceSelectedDatasource", "where"), "a = "), "parse"),
        (_with(("sourceSelectedDatasource", "where"), "a = 1 -- x"), "comments"),
        (_with(("sourceSelectedDatasource", "table"), "orders; drop"), "table"),
        (_with(("sourceSelectedDatasource", "columns"), []), "columns"),
        (_with(("mappingTable",), [{"sourceField": "id"}]), "targetField"),
        (_with(("targetSelectedDatasource", "createTable"), "yes"), "createTable"),
    ],
)
def test_unusable_details_are_refused_with_a_reason(text: str, mentions: str) -> None:
    with pytest.raises(TaskDetailError, match=mentions):
        parse_task_detail(text)


@pytest.mark.parametrize(
    "where",
    ["status = 'paid'", "(a > 1 AND b < 2) OR c IS NULL", "id IN (1, 2, 3)", "NOT deleted"],
)
def test_boolean_where_clauses_are_accepted(where: str) -> None:
    assert parse_task_detail(_with(("sourceSelectedDatasource", "where"), where)).where == where
