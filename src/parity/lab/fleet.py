"""The lab fleet described in TOML: models, pools, platforms and the logical servers they make.

A fleet serves several named models, each with its weights (``smollm2-135m``, the real SmolLM2-135M-Instruct;
``parity-lab-9m``, the lab's own small model; or a weights directory) and its configuration, on several
platforms (labels such as ``gpu``, ``tpu``, ``trainium``), each running a few logical servers per pool (a
short-context pool at the trained RoPE configuration and a long-context pool whose RoPE positions are scaled for
a much larger window, as a 1M-token server would). All servers run in one process; a server is a label plus the
engine configuration it uses (precision, RoPE scaling, config version).

The TOML shape (every key optional except ``[models.*]``, ``[pools.*]`` and ``[platforms.*]``)::

    config_version = "2025-08-01.1"
    weights = "smollm2-135m"              # "smollm2-135m", "parity-lab-9m" or a directory; "" = parity-lab-9m

    [router]
    long_context_threshold = 192          # prompt tokens above this go to the pool marked long = true
    session_header = "x-session-id"

    [pools.short]
    rope_scaling = 1.0
    [pools.long]
    rope_scaling = 8.0
    long = true

    [platforms.gpu]
    share = 0.6                           # share of sessions routed to this platform
    servers_per_pool = 2

    [models.S]
    weights = "parity-lab-9m"             # this model's weights ("" or absent: the fleet's `weights`)
    precision = "fp32"                    # "fp32" or "bf16"
    temperature = 1.0                     # the default when a request names none

>>> fleet = FleetConfig.from_toml('''
... [pools.short]
... [pools.long]
... rope_scaling = 8.0
... long = true
... [platforms.gpu]
... servers_per_pool = 2
... [models.S]
... ''')
>>> [s.name for s in fleet.servers]
['gpu-short-0', 'gpu-short-1', 'gpu-long-0', 'gpu-long-1']
>>> fleet.long_pool, fleet.short_pool
('long', 'short')
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity._exceptions import ConfigError

__all__ = [
    "CONFIGS_DIR",
    "PRECISIONS",
    "FleetConfig",
    "ModelSpec",
    "PlatformSpec",
    "PoolSpec",
    "RouterSpec",
    "ServerSpec",
    "default_config_path",
]

#: the shipped fleet configurations (``fleet.toml``, ``incident.toml``).
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"

#: engine precisions a model or server may run at.
PRECISIONS = ("fp32", "bf16")


def default_config_path(name: str = "fleet") -> Path:
    """The path of a shipped configuration (``fleet`` or ``incident``).

    >>> default_config_path("incident").name
    'incident.toml'
    """
    return CONFIGS_DIR / f"{name}.toml"


@dataclass(frozen=True)
class ModelSpec:
    """One served model name: its weights ("" = the fleet's) and its defaults."""

    name: str
    precision: str = "fp32"
    temperature: float = 1.0
    max_tokens: int = 256
    description: str = ""
    weights: str = ""


@dataclass(frozen=True)
class PoolSpec:
    """A pool of servers: ``rope_scaling`` is the RoPE interpolation factor, ``long`` marks the long pool."""

    name: str
    rope_scaling: float = 1.0
    long: bool = False
    description: str = ""


@dataclass(frozen=True)
class PlatformSpec:
    """A hardware platform label with its share of sessions and its servers per pool."""

    name: str
    share: float = 1.0
    servers_per_pool: int = 1
    description: str = ""


@dataclass(frozen=True)
class ServerSpec:
    """One logical server: ``{platform}-{pool}-{index}``."""

    name: str
    platform: str
    pool: str
    index: int
    rope_scaling: float


@dataclass(frozen=True)
class RouterSpec:
    """Routing settings: prompts longer than ``long_context_threshold`` tokens go to the long pool."""

    long_context_threshold: int = 192
    session_header: str = "x-session-id"


@dataclass(frozen=True)
class FleetConfig:
    """A validated fleet; build it with :meth:`from_toml` or :meth:`load`."""

    models: dict[str, ModelSpec]
    pools: dict[str, PoolSpec]
    platforms: dict[str, PlatformSpec]
    router: RouterSpec = field(default_factory=RouterSpec)
    config_version: str = "1"
    weights: str = ""
    source: str | None = None

    @property
    def servers(self) -> list[ServerSpec]:
        """Every logical server, platform by platform, pool by pool."""
        out = []
        for platform in self.platforms.values():
            for pool in self.pools.values():
                for i in range(platform.servers_per_pool):
                    out.append(
                        ServerSpec(
                            name=f"{platform.name}-{pool.name}-{i}",
                            platform=platform.name,
                            pool=pool.name,
                            index=i,
                            rope_scaling=pool.rope_scaling,
                        )
                    )
        return out

    @property
    def long_pool(self) -> str:
        """The name of the long-context pool (the one marked ``long``, else the largest RoPE scaling)."""
        marked = [p.name for p in self.pools.values() if p.long]
        if marked:
            return marked[0]
        return max(self.pools.values(), key=lambda p: p.rope_scaling).name

    @property
    def short_pool(self) -> str:
        """The name of the short-context pool (the first pool that is not the long one)."""
        for name in self.pools:
            if name != self.long_pool:
                return name
        return self.long_pool

    def weights_of(self, model: str) -> str:
        """The weights selection of ``model``: its own, else the fleet's ("" = the committed 9M model).

        >>> FleetConfig.from_toml('weights = "smollm2-135m"\\n[pools.p]\\n[platforms.x]\\n[models.a]').weights_of("a")
        'smollm2-135m'
        """
        return self.models[model].weights or self.weights

    def server(self, platform: str, pool: str, index: int) -> ServerSpec:
        """The server ``index`` of ``(platform, pool)``."""
        return ServerSpec(
            name=f"{platform}-{pool}-{index}",
            platform=platform,
            pool=pool,
            index=index,
            rope_scaling=self.pools[pool].rope_scaling,
        )

    @classmethod
    def load(cls, path: str | Path) -> FleetConfig:
        """Read and validate a fleet TOML file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"cannot read the fleet config: {err.strerror or err}", source=str(path)) from err
        return cls.from_toml(text, source=str(path))

    @classmethod
    def from_toml(cls, text: str, *, source: str | None = None) -> FleetConfig:
        """Parse and validate fleet TOML text."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"not valid TOML: {err}", source=source) from err
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> FleetConfig:
        """Validate parsed TOML data; errors are :class:`ConfigError` naming the key."""
        v = _Validator(source)
        v.keys(data, "", {"config_version", "weights", "router", "pools", "platforms", "models"})
        config_version = v.string(data, "config_version", "", default="1")
        weights = v.weights(data, "weights", "")
        router_t = v.table(data, "router", "", required=False)
        v.keys(router_t, "router.", {"long_context_threshold", "session_header"})
        router = RouterSpec(
            long_context_threshold=v.integer(router_t, "long_context_threshold", "router.", default=192, minimum=1),
            session_header=v.string(router_t, "session_header", "router.", default="x-session-id").lower(),
        )
        pools: dict[str, PoolSpec] = {}
        for name, t in v.named_tables(data, "pools").items():
            p = f"pools.{name}."
            v.keys(t, p, {"rope_scaling", "long", "description"})
            scaling = v.number(t, "rope_scaling", p, default=1.0, minimum=1.0)
            pools[name] = PoolSpec(name, scaling, v.boolean(t, "long", p, default=False), v.string(t, "description", p))
        if sum(pool.long for pool in pools.values()) > 1:
            raise ConfigError("at most one pool may set `long = true`", source=source)
        platforms: dict[str, PlatformSpec] = {}
        for name, t in v.named_tables(data, "platforms").items():
            p = f"platforms.{name}."
            v.keys(t, p, {"share", "servers_per_pool", "description"})
            platforms[name] = PlatformSpec(
                name,
                v.number(t, "share", p, default=1.0, minimum=0.0),
                v.integer(t, "servers_per_pool", p, default=1, minimum=1),
                v.string(t, "description", p),
            )
        if sum(pl.share for pl in platforms.values()) <= 0:
            raise ConfigError("`platforms.*.share` must not all be 0", source=source)
        models: dict[str, ModelSpec] = {}
        for name, t in v.named_tables(data, "models").items():
            p = f"models.{name}."
            v.keys(t, p, {"weights", "precision", "temperature", "max_tokens", "description"})
            precision = v.string(t, "precision", p, default="fp32")
            if precision not in PRECISIONS:
                raise ConfigError(f"`{p}precision` must be one of {list(PRECISIONS)}, got {precision!r}", source=source)
            models[name] = ModelSpec(
                name,
                precision,
                v.number(t, "temperature", p, default=1.0, minimum=0.0),
                v.integer(t, "max_tokens", p, default=256, minimum=1),
                v.string(t, "description", p),
                v.weights(t, "weights", p),
            )
        return cls(models, pools, platforms, router, config_version, weights, source)


class _Validator:
    """Typed reads of TOML values with messages naming the full key."""

    def __init__(self, source: str | None) -> None:
        self.source = source

    def fail(self, message: str) -> ConfigError:
        return ConfigError(message, source=self.source)

    def keys(self, table: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.fail(f"unknown key `{prefix}{unknown[0]}` (allowed: {', '.join(sorted(allowed))})")

    def table(self, data: Mapping[str, Any], key: str, prefix: str, *, required: bool) -> Mapping[str, Any]:
        if key not in data:
            if required:
                raise self.fail(f"missing table `[{prefix}{key}]`")
            return {}
        value = data[key]
        if not isinstance(value, dict):
            raise self.fail(f"`{prefix}{key}` must be a table, got {type(value).__name__}")
        return value

    def named_tables(self, data: Mapping[str, Any], key: str) -> dict[str, Mapping[str, Any]]:
        outer = self.table(data, key, "", required=True)
        if not outer:
            raise self.fail(f"`[{key}]` must define at least one `[{key}.NAME]` table")
        out: dict[str, Mapping[str, Any]] = {}
        for name, value in outer.items():
            if not isinstance(value, dict):
                raise self.fail(f"`{key}.{name}` must be a table, got {type(value).__name__}")
            if not name.replace("_", "").replace("-", "").isalnum():
                raise self.fail(f"`{key}.{name}`: names must be letters, digits, '-' or '_'")
            out[name] = value
        return out

    def string(self, t: Mapping[str, Any], key: str, prefix: str, *, default: str = "") -> str:
        value = t.get(key, default)
        if not isinstance(value, str):
            raise self.fail(f"`{prefix}{key}` must be a string, got {value!r}")
        return value

    def weights(self, t: Mapping[str, Any], key: str, prefix: str) -> str:
        from parity.lab.checkpoints import WEIGHTS_NAMES

        value = self.string(t, key, prefix)
        if value and value not in WEIGHTS_NAMES and not Path(value).is_dir():
            raise self.fail(
                f"`{prefix}{key}` must be one of {list(WEIGHTS_NAMES)} or a weights directory, got {value!r}"
            )
        return value

    def boolean(self, t: Mapping[str, Any], key: str, prefix: str, *, default: bool) -> bool:
        value = t.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"`{prefix}{key}` must be true or false, got {value!r}")
        return value

    def number(self, t: Mapping[str, Any], key: str, prefix: str, *, default: float, minimum: float) -> float:
        value = t.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(f"`{prefix}{key}` must be a number, got {value!r}")
        if value < minimum:
            raise self.fail(f"`{prefix}{key}` must be >= {minimum}, got {value!r}")
        return float(value)

    def integer(self, t: Mapping[str, Any], key: str, prefix: str, *, default: int, minimum: int) -> int:
        value = t.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"`{prefix}{key}` must be an integer, got {value!r}")
        if value < minimum:
            raise self.fail(f"`{prefix}{key}` must be >= {minimum}, got {value!r}")
        return value
