"""kill -9 of the server while a REALTIME task reads an MQTT topic with 20,000 messages in flight,
then a restart: the task resumes on its persistent session, the broker sends again what was
never acknowledged, and the upsert target holds every message once."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from openfdi.connectors.mqtt.connector import session_client_id
from tests.e2e.process import Served
from tests.e2e.test_crash import BASE, ENV, _client, _logs, _wait
from tests.messages.mqtt_support import MQTT, forget_session, publish
from tests.services import require

pytestmark = pytest.mark.slow
COUNT = 20_000


def _ids(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'orders'").fetchone():
            return []
        return [r[0] for r in conn.execute("SELECT id FROM orders ORDER BY id")]


def _doc(i: int) -> bytes:
    return json.dumps({"order": {"id": i}, "name": f"ü{i}", "amount": f"{i}.5"}).encode()


def test_kill_with_messages_in_flight_then_restart_writes_each_once(tmp_path: Path) -> None:
    require("mosquitto")
    mqtt_topic = f"openfdi/t/{uuid.uuid4().hex[:12]}"
    dst = tmp_path / "dst.db"
    served = Served(tmp_path, demo=False, env=ENV)
    served.start()
    session = ""
    try:
        with _client(served) as client:
            ids = []
            for kind, content in (("MQTT", MQTT), ("SQLITE", {"database_name": str(dst)})):
                reply = client.post(
                    f"{BASE}/datasources",
                    json={"datasource_name": f"ds-{kind}", "datasource_type": kind,
                          "content": content},
                )  # fmt: skip
                assert reply.status_code == 201, reply.text
                ids.append(reply.json()["datasource_id"])
            fields: list[dict[str, Any]] = [
                {"name": "id", "path": "$.order.id", "type": "bigint"},
                {"name": "name", "path": "$.name", "type": "text"},
                {"name": "amount", "path": "$.amount", "type": "decimal"},
            ]
            detail = {
                "sourceSelectedDatasource": {"table": "orders",
                                             "message": {"topic": mqtt_topic, "fields": fields}},
                "targetSelectedDatasource": {"table": "orders", "writeMode": "upsert",
                                             "keyColumns": ["id"]},
            }  # fmt: skip
            body = {
                "task": {"task_name": "mqtt-crash", "task_type": "REALTIME",
                         "source_datasource_id": ids[0], "target_datasource_id": ids[1]},
                "task_detail": json.dumps(detail),
            }  # fmt: skip
            reply = client.post(f"{BASE}/tasks", json=body)
            assert reply.status_code == 200, reply.text
            task = str(reply.json()["task"]["task_id"])
            session = session_client_id(task, mqtt_topic)
            reply = client.post(
                f"{BASE}/batch-operation/tasks",
                json={"action_id": "start", "list": [{"task_id": task}]},
            )
            assert reply.json()["success_count"] == 1

            def subscribed() -> bool:
                # Until the run subscribed, a message has nowhere to go: send one until it lands.
                publish(mqtt_topic, [_doc(0)])
                end = time.monotonic() + 0.5
                while time.monotonic() < end:
                    if _ids(dst):
                        return True
                    time.sleep(0.05)
                return False

            _wait(subscribed, 60)
            sender = threading.Thread(
                target=publish, args=(mqtt_topic, [_doc(i) for i in range(1, COUNT + 1)])
            )
            sender.start()
            # Every message reaches the broker while the session is connected: it holds them in
            # flight for it (up to its Receive Maximum); published while it is offline, only
            # max_queued_messages (1000 by default) would be kept.
            sender.join(120)
            _wait(lambda: len(_ids(dst)) > 1, 60)
        served.kill()
        written_before = len(_ids(dst))
        # Nothing is published while it is down: Mosquitto keeps no new message for an offline
        # session already holding more than max_queued_messages unacknowledged (seen here).
        served.start()  # the supervisor resumes the started task on the same session
        _wait(lambda: len(_ids(dst)) >= COUNT + 1, 120)
        publish(mqtt_topic, [_doc(i) for i in range(COUNT + 1, COUNT + 501)])  # it goes on
        end = time.monotonic() + 120
        while len(_ids(dst)) < COUNT + 501 and time.monotonic() < end:
            time.sleep(0.5)
        with _client(served) as client:
            logs = _logs(client, task)
        got = _ids(dst)
        missing = sorted(set(range(COUNT + 501)) - set(got))
        assert not missing, (len(got), written_before, missing[:5], len(missing), logs)
        assert _ids(dst) == list(range(COUNT + 501))
        with sqlite3.connect(dst) as conn:
            row = conn.execute("SELECT name, amount FROM orders WHERE id = 12345").fetchone()
        assert (row[0], str(row[1])) == ("ü12345", "12345.5")
        with _client(served) as client:
            logs = _logs(client, task)
        assert logs[0]["execute_status"] == "RUNNING", logs
        assert "interrupted" in logs[-1]["remarks"], logs
        print(f"rows written before the kill: {written_before - 1} of {COUNT}")
    finally:
        if served.proc is not None:
            served.stop()
        if session:
            forget_session(session)
