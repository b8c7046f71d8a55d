"""The `make serve` demo: a small SQLite shop database, two data sources and two tasks.

Created once, on the first start of an empty data dir, through the same services the API uses.
"""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from openfdi.domain.scope import Scope
from openfdi.services import datasources, dispatches, tasks
from openfdi.services.runtime import Runtime
from openfdi.wire.datasources import DatasourceInfoRequest
from openfdi.wire.dispatches import TaskDispatchRequest
from openfdi.wire.tasks import CreateCommonTaskRequest, TaskBasicRequest

# Fixed, documented values so the README's SDK example works as written. `--demo` refuses to
# listen anywhere but loopback, since these are public.
DEMO_PROJECT_ID = "0123456789abcdef0123456789abcdef"
DEMO_INSTANCE_ID = "fedcba98-7654-4321-8fed-cba987654321"
DEMO_AK = "OPENFDIDEMOAK0000001"
DEMO_SK = "openfdiDemoSecretKey00000000000000000001"
DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - public by design, loopback only
DEMO_ORDERS = 1000


def console_banner(host: str, port: int, *, demo_mode: bool) -> str:
    """The line `openfdi serve` prints: where the web console is, and with --demo how to sign in."""
    shown = f"[{host}]" if ":" in host else host
    line = f"openfdi: web console at http://{shown}:{port}/console/"
    if demo_mode:
        line += f" (user {DEMO_USER}, password {DEMO_PASSWORD})"
    return line


def _make_shop_db(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(42)  # noqa: S311 - reproducible sample data, not a secret
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL,"
            " amount NUMERIC(12,2) NOT NULL, status TEXT NOT NULL, updated_at TEXT NOT NULL)"
        )
        conn.executemany(
            "INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?, ?)",
            [
                (
                    i,
                    f"customer-{rng.randint(1, 200):03d}",
                    round(rng.uniform(1, 500), 2),
                    rng.choice(["paid", "paid", "paid", "refunded"]),
                    (base + timedelta(minutes=7 * i)).isoformat(),
                )
                for i in range(1, DEMO_ORDERS + 1)
            ],
        )


def install_demo(rt: Runtime, scope: Scope) -> None:
    demo_dir = (rt.settings.data_dir / "demo").resolve()
    shop, warehouse = demo_dir / "shop.db", demo_dir / "warehouse.db"
    _make_shop_db(shop)
    source = datasources.create_datasource_info(
        rt,
        scope,
        DatasourceInfoRequest(
            datasource_name="demo-shop",
            datasource_type="SQLITE",
            content={"database_name": str(shop)},
            description="Demo source: a small shop with an orders table",
        ),
    )
    target = datasources.create_datasource_info(
        rt,
        scope,
        DatasourceInfoRequest(
            datasource_name="demo-warehouse",
            datasource_type="SQLITE",
            content={"database_name": str(warehouse)},
            description="Demo target",
        ),
    )
    source_side = {"table": "orders", "where": "status = 'paid'"}
    target_side = {"table": "paid_orders", "writeMode": "upsert", "keyColumns": ["id"]}
    detail = {"sourceSelectedDatasource": source_side, "targetSelectedDatasource": target_side}
    nightly = tasks.create_common_task(
        rt,
        scope,
        CreateCommonTaskRequest(
            task=TaskBasicRequest(
                task_name="demo-orders-nightly",
                task_type="TIMING",
                source_datasource_id=source.datasource_id,
                target_datasource_id=target.datasource_id,
                description="Copies paid orders every day",
            ),
            task_detail=json.dumps(detail),
        ),
    )
    dispatches.create_dispatches(
        rt,
        scope,
        nightly.task.task_id,
        TaskDispatchRequest(
            start_datetime=int(datetime(2026, 1, 1, 2, tzinfo=UTC).timestamp() * 1000),
            period="DAY",
            dispatch_interval=1,
            remark="every night at 02:00 UTC",
        ),
    )
    live_detail = {
        "sourceSelectedDatasource": {"table": "orders", "incremental": {"column": "id"}},
        "targetSelectedDatasource": {**target_side, "table": "orders_live"},
    }
    tasks.create_common_task(
        rt,
        scope,
        CreateCommonTaskRequest(
            task=TaskBasicRequest(
                task_name="demo-orders-live",
                task_type="REALTIME",
                source_datasource_id=source.datasource_id,
                target_datasource_id=target.datasource_id,
                description="Follows new orders continuously",
            ),
            task_detail=json.dumps(live_detail),
        ),
    )
