"""Integration applications (layer: domain): what openfdi answers for `app_*` fields.

ROMA groups data sources and tasks into integration applications, managed by an API outside FDI
(fdi-api.md names no call that creates or lists them). openfdi keeps no registry of them: a data
source's `app_id` is what its client sent, and the names and permissions answered follow from
it (docs/api.md, "Integration applications"):

- A data source created without `app_id` belongs to its instance's *default application*, whose
  id is derived from the instance id (a hyphenated UUID, as ROMA's app ids are) and whose name is
  `default`.
- Any other `app_id` is echoed as sent, and its `app_name` is that id: openfdi knows no other.
- `app_permission` is every permission (`read`, `access`, `delete`, `modify`): whoever may call
  an instance's FDI API owns all of it; openfdi has no per-application grants.
"""

from __future__ import annotations

import uuid

__all__ = ["APP_PERMISSIONS", "DEFAULT_APP_NAME", "app_id_of", "app_name_of", "default_app_id"]

DEFAULT_APP_NAME = "default"
APP_PERMISSIONS: tuple[str, ...] = ("read", "access", "delete", "modify")
# Fixed, so an instance's default application has the same id on every server and restart.
_NAMESPACE = uuid.UUID("6f2d1c3e-0b7a-5c1e-9a44-0df1fd1a0a11")


def default_app_id(instance_id: str) -> str:
    """The id of an instance's default application."""
    return str(uuid.uuid5(_NAMESPACE, f"openfdi default application {instance_id}"))


def app_id_of(stored: str | None, instance_id: str) -> str:
    """The `app_id` of a data source that stored `stored` (None: the default application)."""
    return stored if stored else default_app_id(instance_id)


def app_name_of(app_id: str, instance_id: str) -> str:
    """The `app_name` answered for `app_id` in this instance."""
    return DEFAULT_APP_NAME if app_id == default_app_id(instance_id) else app_id
