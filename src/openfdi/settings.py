"""Settings: the only module that reads the environment (prefix OPENFDI_); built once."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_API_DENIED_NETWORKS = ("169.254.0.0/16", "fe80::/10")
"""Link-local addresses, where clouds answer instance metadata (169.254.169.254: credentials)."""

_BROKER_SCHEMES = frozenset({"amqp", "amqps", "pyamqp", "redis", "rediss"})


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
    sqlite_roots: Annotated[tuple[Path, ...] | None, NoDecode] = Field(
        default=None,
        description="directories SQLite data sources may name files in, separated by "
        "os.pathsep (':'); default data_dir/sqlite. openfdi's own data dir is refused whatever "
        "this says, and the demo's databases are always allowed",
    )
    file_roots: Annotated[tuple[Path, ...] | None, NoDecode] = Field(
        default=None,
        description="directories FILE data sources may read and write in, separated by "
        "os.pathsep (':'); default data_dir/files. openfdi's own data dir is refused whatever "
        "this says",
    )
    api_denied_networks: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_API_DENIED_NETWORKS,
        description="networks (CIDR, separated by ',') API data sources may never reach, "
        "checked on the address each request connects to; default link-local (cloud metadata)",
    )
    api_allowed_networks: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        default=None,
        description="when set, the only networks (CIDR, separated by ',') API data sources may "
        "reach (the denied ones still excepted)",
    )
    host: str = "127.0.0.1"
    port: int = 8080
    token_ttl_seconds: int = 24 * 3600
    signature_max_skew_seconds: int = 15 * 60
    allow_unsigned_payload: bool = Field(
        default=False,
        description="accept signed requests whose body is declared `X-Sdk-Content-Sha256: "
        "UNSIGNED-PAYLOAD` (the body is then not covered by the signature)",
    )
    signin_max_failures: int = Field(
        default=5,
        ge=0,
        description="consecutive failed passwords after which a user name is locked "
        "(0: never); APIG locks an AK after 5",
    )
    signin_lock_seconds: int = Field(
        default=300,
        ge=1,
        description="how long a lock lasts; failures older than this (since the last attempt) "
        "are forgotten",
    )
    signin_address_max_failures: int = Field(
        default=20,
        ge=0,
        description="failed sign-ins from one client address, whatever the user names, after "
        "which the address is locked (0: never)",
    )
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

    executor: Literal["local", "celery"] = Field(
        default="local",
        description="what executes runs: `local` (this server, or its OPENFDI_WORKER_PROCESSES) "
        "or `celery` (a message per run on OPENFDI_CELERY_BROKER_URL, executed by "
        "`openfdi worker --executor celery` on any host; needs PostgreSQL metadata)",
    )
    celery_broker_url: str | None = Field(
        default=None,
        description="the Celery executor's broker: amqp://user:password@host:5672/vhost "
        "(RabbitMQ) or redis://host:6379/0",
    )
    celery_queue: str = Field(
        default="openfdi",
        min_length=1,
        max_length=200,
        description="the broker queue (and direct exchange) runs are published to",
    )
    celery_broker_heartbeat_seconds: float = Field(
        default=30.0,
        gt=0,
        description="RabbitMQ only: AMQP heartbeat; a worker cut off the network is noticed "
        "after about two of them, and the broker then delivers its runs' messages again",
    )
    celery_step_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Celery workers only: a run that can resume past what it committed (a "
        "REALTIME task's, an incremental or sliced copy) executes as steps of about this long, "
        "each a broker message of its own (a lost worker costs one step); 0: each run is one "
        "message, held until the run ends",
    )
    celery_stop_check_seconds: float = Field(
        default=0.5,
        gt=0,
        description="Celery workers only: how often a worker reads whether its runs were asked "
        "to stop, should no stop hint reach it (a stop wakes the check at once through the "
        "broker's fanout exchange `<queue>.stop-hints`)",
    )
    celery_visibility_timeout_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Redis broker only: an unacknowledged message (its worker lost) is "
        "delivered again after this long; a run still executing is never run twice, the copy "
        "finds it claimed",
    )

    bootstrap_project_id: str | None = None
    bootstrap_project_name: str = "default"
    bootstrap_instance_id: str | None = None
    bootstrap_ak: str | None = None
    bootstrap_sk: str | None = None
    bootstrap_user: str | None = None
    bootstrap_password: str | None = None

    @field_validator("sqlite_roots", "file_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(Path(p) for p in value.split(os.pathsep) if p.strip())
        return value

    @field_validator("api_denied_networks", "api_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [p for p in value.split(",") if p.strip()]
        if value is None:
            return None
        return tuple(str(ipaddress.ip_network(str(p).strip(), strict=False)) for p in value)

    @model_validator(mode="after")
    def _celery_needs_broker_and_postgresql(self) -> Settings:
        """Refused at start-up: several hosts share runs only through a database they all
        reach and that locks rows (leases, SKIP LOCKED); a per-host SQLite file is neither."""
        if self.executor != "celery":
            return self
        if not self.celery_broker_url:
            raise ValueError(
                "OPENFDI_EXECUTOR=celery needs OPENFDI_CELERY_BROKER_URL "
                "(amqp://… for RabbitMQ or redis://… for Redis)"
            )
        scheme = self.celery_broker_url.split("://", 1)[0].lower()
        if scheme not in _BROKER_SCHEMES:
            raise ValueError(
                f"OPENFDI_CELERY_BROKER_URL: unsupported broker {scheme!r}; use "
                "amqp:// (RabbitMQ) or redis:// (Redis)"
            )
        if not self.resolved_database_url.startswith("postgresql"):
            raise ValueError(
                "OPENFDI_EXECUTOR=celery needs PostgreSQL metadata shared by every host: set "
                "OPENFDI_DATABASE_URL=postgresql+psycopg://user@host:5432/database"
            )
        return self

    @property
    def allowed_sqlite_roots(self) -> tuple[Path, ...]:
        """`sqlite_roots` (default data_dir/sqlite) and the demo's directory."""
        roots = self.sqlite_roots if self.sqlite_roots is not None else (self.data_dir / "sqlite",)
        return (*roots, self.data_dir / "demo")

    @property
    def allowed_file_roots(self) -> tuple[Path, ...]:
        """`file_roots`, default data_dir/files."""
        return self.file_roots if self.file_roots is not None else (self.data_dir / "files",)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'openfdi.db').resolve()}"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "secret.key"


def _default_config_file() -> Path:
    """`$XDG_CONFIG_HOME/openfdi/config.toml`, else `~/.config/openfdi/config.toml` (or
    `%APPDATA%\\openfdi\\config.toml` on Windows)."""
    if os.name == "nt" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "openfdi" / "config.toml"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "openfdi" / "config.toml"


class ClientSettings(BaseSettings):
    """What the `openfdi` client verbs (task, datasource, plan, login) read from the environment.

    A command-line flag wins over these, and these win over the profile file `openfdi login`
    writes (openfdi.client.profile). Unset fields are None so that the profile can fill them.
    """

    model_config = SettingsConfigDict(env_prefix="OPENFDI_", extra="ignore")

    endpoint: str | None = Field(default=None, description="server URL, http://host:port")
    project_id: str | None = None
    instance_id: str | None = None
    ak: str | None = Field(default=None, description="access key (requests are signed)")
    sk: str | None = Field(default=None, description="secret key of the access key")
    token: str | None = Field(default=None, description="X-Auth-Token, instead of AK/SK")
    profile: str = Field(default="default", description="profile of the config file")
    config_file: Path = Field(
        default_factory=_default_config_file, description="profiles written by `openfdi login`"
    )
