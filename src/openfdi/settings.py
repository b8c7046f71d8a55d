"""Settings: the only module that reads the environment (prefix OPENFDI_); built once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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

    bootstrap_project_id: str | None = None
    bootstrap_project_name: str = "default"
    bootstrap_instance_id: str | None = None
    bootstrap_ak: str | None = None
    bootstrap_sk: str | None = None
    bootstrap_user: str | None = None
    bootstrap_password: str | None = None

    @field_validator("sqlite_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(Path(p) for p in value.split(os.pathsep) if p.strip())
        return value

    @property
    def allowed_sqlite_roots(self) -> tuple[Path, ...]:
        """`sqlite_roots` (default data_dir/sqlite) and the demo's directory."""
        roots = self.sqlite_roots if self.sqlite_roots is not None else (self.data_dir / "sqlite",)
        return (*roots, self.data_dir / "demo")

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
