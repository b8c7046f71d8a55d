"""Connector discovery through the `openfdi.connectors` entry-point group (layer: connectors).

Built-in connectors register exactly like third-party ones (see pyproject.toml). Each entry point
names a cheap `ConnectorSpec`; its driver is imported only when the connector is first needed.
A spec that cannot be imported, or whose driver is missing, makes that type unavailable with the
reason, never a crash of the process listing it.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Iterable, Mapping
from typing import Any

from openfdi.connectors.errors import ConnectorNotFoundError, ConnectorUnavailableError
from openfdi.connectors.spi import Capabilities, Connector, ConnectorSpec, HostPaths

__all__ = ["GROUP", "Registry", "available", "default_registry", "get"]

GROUP = "openfdi.connectors"


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Registry:
    """The connectors one process knows, by datasource type (upper case, as the FDI API has it),
    and the host's file-system limits every connector it opens is given."""

    __slots__ = ("_broken", "_host", "_loaded", "_specs")

    def __init__(
        self,
        specs: Iterable[ConnectorSpec],
        broken: Mapping[str, str] | None = None,
        *,
        host: HostPaths | None = None,
    ):
        """
        Args:
            specs: The specs to serve; a later spec for an already known type is reported broken.
            broken: Entries that could not even produce a spec, name -> reason.
            host: Where connectors may open local files (default: anywhere; a server binds its
                settings' limits with `bound`).
        """
        self._specs: dict[str, ConnectorSpec] = {}
        self._broken: dict[str, str] = dict(broken or {})
        self._loaded: dict[str, type[Connector] | str] = {}
        self._host = host or HostPaths()
        for spec in specs:
            key = spec.type.upper()
            if key in self._specs:
                self._broken.setdefault(key, f"{key} is registered more than once; first one kept")
                continue
            self._specs[key] = spec

    @classmethod
    def discover(
        cls, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None
    ) -> Registry:
        """Build a registry from entry points (default: the installed `openfdi.connectors`)."""
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=GROUP)
        specs: list[ConnectorSpec] = []
        broken: dict[str, str] = {}
        for entry in entry_points:
            try:
                spec = entry.load()
            except Exception as exc:  # an importable plugin is the plugin's problem, not ours
                broken[entry.name.upper()] = _reason(exc)
                continue
            if not isinstance(spec, ConnectorSpec):
                broken[entry.name.upper()] = f"{entry.value} is not a ConnectorSpec"
                continue
            specs.append(spec)
        return cls(specs, broken)

    def bound(self, host: HostPaths) -> Registry:
        """The same connectors (sharing what is loaded), opened with these host limits."""
        twin = Registry((), self._broken, host=host)
        twin._specs, twin._loaded = self._specs, self._loaded
        return twin

    @property
    def host(self) -> HostPaths:
        return self._host

    def capabilities(self, type_name: str) -> Capabilities | None:
        """What the connector of `type_name` declares, or None when no usable one exists."""
        try:
            return self.get(type_name).capabilities
        except (ConnectorNotFoundError, ConnectorUnavailableError):
            return None

    def required_content(self, type_name: str) -> tuple[str, ...] | None:
        """The `content` fields a data source of `type_name` must fill, as its connector's spec
        declares them (the one declaration: create/update validation reads it here), or None
        when no connector is registered for the type. Imports no driver."""
        spec = self._specs.get(type_name.upper())
        return None if spec is None else spec.required_content

    def types(self) -> list[str]:
        """Every type with a registered spec, available or not, sorted."""
        return sorted(self._specs)

    def available(self) -> dict[str, str | None]:
        """Each known type -> None if usable, else the reason it is not. Imports the drivers."""
        result: dict[str, str | None] = {name: reason for name, reason in self._broken.items()}
        for key in self._specs:
            loaded = self._load(key)
            result[key] = loaded if isinstance(loaded, str) else None
        return dict(sorted(result.items()))

    def get(self, type_name: str) -> ConnectorSpec:
        """The spec of a usable connector for `type_name` (any case).

        Raises:
            ConnectorNotFoundError: No connector is registered for the type.
            ConnectorUnavailableError: One is, but its driver or module cannot be imported.
        """
        key = type_name.upper()
        if key not in self._specs:
            if key in self._broken:
                raise ConnectorUnavailableError(
                    f"connector {key} is unavailable: {self._broken[key]}"
                )
            raise ConnectorNotFoundError(f"no connector for datasource type {type_name!r}")
        loaded = self._load(key)
        if isinstance(loaded, str):
            raise ConnectorUnavailableError(f"connector {key} is unavailable: {loaded}")
        return self._specs[key]

    def open(self, type_name: str, content: Mapping[str, Any]) -> Connector:
        """A connector of `type_name` for this datasource content (not yet connected), limited
        to this registry's host paths."""
        return self.get(type_name).open(content, self._host)

    def _load(self, key: str) -> type[Connector] | str:
        if key not in self._loaded:
            try:
                impl = self._specs[key].load()
            except Exception as exc:  # ImportError mostly; any import-time failure counts
                self._loaded[key] = _reason(exc)
            else:
                is_connector = isinstance(impl, type) and issubclass(impl, Connector)
                self._loaded[key] = impl if is_connector else f"{impl!r} is not a Connector"
        return self._loaded[key]


@functools.cache
def default_registry() -> Registry:
    """The registry of the installed entry points, discovered once per process."""
    return Registry.discover()


def get(type_name: str) -> ConnectorSpec:
    """`default_registry().get(type_name)`."""
    return default_registry().get(type_name)


def available() -> dict[str, str | None]:
    """`default_registry().available()`."""
    return default_registry().available()
