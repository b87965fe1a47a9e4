"""The fleet router: platform by traffic share, pool by context length, server by session - all sticky.

Routing order for one request of ``model`` with ``prompt_tokens`` tokens from ``session``:

1. platform: a stable hash of the session picks a platform by the current shares (config shares, or the latest
   ``load_balancing`` change), so a session stays on its platform while the shares hold;
2. pool: prompts longer than ``router.long_context_threshold`` tokens go to the long pool; a short prompt goes to
   the short pool unless a ``routing`` fault covers ``(model, platform)`` and the session hashes below its
   fraction (sticky: the session's follow-ups land in the long pool too);
3. server: a stable hash of the session picks one of the pool's servers on that platform.

Requests with no session are hashed by a per-request id instead (not sticky).

>>> from parity.lab.fleet import FleetConfig, default_config_path
>>> from parity.lab.faults import FaultState
>>> fleet = FleetConfig.load(default_config_path("incident"))
>>> router = Router(fleet)
>>> route = router.route(model="S", prompt_tokens=20, session="alice", faults=FaultState([]))
>>> route.pool, route.misrouted
('short', False)
>>> router.route(model="S", prompt_tokens=400, session="alice", faults=FaultState([])).pool
'long'
"""

from __future__ import annotations

from dataclasses import dataclass

from parity.lab.faults import FaultState, session_fraction
from parity.lab.fleet import FleetConfig, ServerSpec

__all__ = ["Route", "Router"]


@dataclass(frozen=True)
class Route:
    """Where one request goes: the server, and why (``misrouted`` names the routing change responsible)."""

    server: ServerSpec
    model: str
    long_context: bool
    misrouted: bool = False
    routing_change: str | None = None

    @property
    def platform(self) -> str:
        """The server's platform."""
        return self.server.platform

    @property
    def pool(self) -> str:
        """The server's pool."""
        return self.server.pool


class Router:
    """Routes requests over a :class:`~parity.lab.fleet.FleetConfig` given the active faults."""

    def __init__(self, fleet: FleetConfig) -> None:
        self.fleet = fleet

    def pick_platform(self, *, model: str, key: str, faults: FaultState) -> str:
        """The platform of ``key`` (a session or request id) under the current shares."""
        defaults = {name: p.share for name, p in self.fleet.platforms.items()}
        shares = faults.platform_shares(defaults, model=model)
        total = sum(shares.values())
        if total <= 0:
            shares, total = defaults, sum(defaults.values())
        u = session_fraction(key, "platform") * total
        acc = 0.0
        chosen = next(iter(shares))
        for name, share in shares.items():
            if share <= 0:
                continue
            chosen = name
            acc += share
            if u < acc:
                break
        return chosen

    def route(
        self, *, model: str, prompt_tokens: int, session: str | None, faults: FaultState, request_id: str = ""
    ) -> Route:
        """Route one request (``session`` None: hash ``request_id`` instead, not sticky)."""
        key = session if session else f"request:{request_id}"
        platform = self.pick_platform(model=model, key=key, faults=faults)
        long_context = prompt_tokens > self.fleet.router.long_context_threshold
        pool = self.fleet.long_pool if long_context else self.fleet.short_pool
        misrouted, responsible = False, None
        if not long_context:
            for change_id, fraction in faults.routing_faults(model=model, platform=platform):
                if session_fraction(key, change_id) < fraction:
                    pool, misrouted, responsible = self.fleet.long_pool, True, change_id
                    break
        count = self.fleet.platforms[platform].servers_per_pool
        index = min(count - 1, int(session_fraction(key, f"server:{pool}") * count))
        return Route(self.fleet.server(platform, pool, index), model, long_context, misrouted, responsible)
