"""Profiles of the `openfdi` client: endpoint, project, instance and credentials by name, in a
TOML file (ClientSettings.config_file) that `openfdi login` writes and only its owner may read.

    [profiles.default]
    endpoint = "http://127.0.0.1:8080"
    project_id = "…"
    instance_id = "…"
    ak = "…"
    sk = "…"
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class Profile:
    endpoint: str | None = None
    project_id: str | None = None
    instance_id: str | None = None
    ak: str | None = None
    sk: str | None = None
    token: str | None = None
    token_expires_at: str | None = None

    def merged_under(self, **over: str | None) -> Profile:
        """This profile with every non-None value of `over` in place of its own."""
        values = asdict(self)
        values.update({k: v for k, v in over.items() if v is not None})
        return Profile(**values)


class ProfileFileError(Exception):
    """The config file exists but cannot be read as TOML."""


def _read(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ProfileFileError(f"{path}: {exc}") from exc


def load(path: Path, name: str) -> Profile:
    """The named profile, or an empty one when the file or the profile does not exist."""
    profiles = _read(path).get("profiles")
    entry = profiles.get(name) if isinstance(profiles, dict) else None
    if not isinstance(entry, dict):
        return Profile()
    known = {f.name for f in fields(Profile)}
    return Profile(**{k: str(v) for k, v in entry.items() if k in known})


def save(path: Path, name: str, profile: Profile) -> None:
    """Write the profile (other profiles are kept). The file is created 0600 and replaced
    atomically, so the secret key is never readable by others, not even for a moment."""
    import tomli_w

    data = _read(path)
    profiles = data.get("profiles")
    if not isinstance(profiles, dict):
        profiles = {}
    profiles[name] = {k: v for k, v in asdict(profile).items() if v is not None}
    data["profiles"] = profiles
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            tomli_w.dump(data, f)
        os.chmod(tmp, 0o600)  # the umask may have taken bits away, never added: make it exact
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
