"""Settings: the only module that reads the environment (prefix OPENFDI_); built once."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENFDI_", extra="ignore")

    data_dir: Path = Field(default=Path(".openfdi"), description="SQLite file, key file, logs")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is SQLite in data_dir"
    )
    secret_key: str | None = Field(
        default=None,
        description="Fernet key for secrets at rest; default is the key file in data_dir",
    )
    host: str = "127.0.0.1"
    port: int = 8080
    token_ttl_seconds: int = 24 * 3600
    signature_max_skew_seconds: int = 15 * 60
    max_body_bytes: int = 12 * 1024 * 1024
    stop_deadline_seconds: float = 1.0
    lease_seconds: float = 10.0
    engine_enabled: bool = Field(default=True, description="run tasks in this process")
    poll_interval_seconds: float = Field(
        default=1.0, description="how often a REALTIME run polls its source for new rows"
    )
    dirty_data_limit: int = Field(default=1000, description="rejected rows before a run fails")
    misfire_threshold_seconds: float = Field(
        default=60.0,
        gt=0,
        description="a fire found later than this (server down or behind) is a misfire, "
        "handled by the plan's misfire policy",
    )
    worker_processes: int = Field(
        default=0,
        ge=0,
        description="`openfdi serve` starts this many `openfdi worker` processes to execute "
        "runs (each with OPENFDI_RUN_WORKERS threads); 0 runs them in the server process",
    )
    run_workers: int = Field(
        default=8,
        ge=1,
        description="threads that start and execute TIMING and manual runs; more runs queue "
        "(REALTIME runs get a thread of their own once started)",
    )

    bootstrap_project_id: str | None = None
    bootstrap_project_name: str = "default"
    bootstrap_instance_id: str | None = None
    bootstrap_ak: str | None = None
    bootstrap_sk: str | None = None
    bootstrap_user: str | None = None
    bootstrap_password: str | None = None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'openfdi.db').resolve()}"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "secret.key"
