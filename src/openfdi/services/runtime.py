"""The composition root of the services: settings, database, secret box, clock, built once."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from openfdi.settings import Settings
from openfdi.store.crypto import SecretBox
from openfdi.store.db import Database


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Runtime:
    settings: Settings
    db: Database
    box: SecretBox
    clock_ms: Callable[[], int] = field(default=_wall_clock_ms)

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        if migrate:
            db.migrate()
        if settings.secret_key:
            box = SecretBox(settings.secret_key.encode())
        else:
            box = SecretBox.from_key_file(settings.key_file)
        return cls(settings=settings, db=db, box=box)

    def close(self) -> None:
        self.db.dispose()
