"""Who the client is: the peer, or the address a trusted proxy says it forwarded for.

Access lines name it, and rate limits count unknown keys by it, so both believe the same
proxies (TRUSTED_PROXIES) in the same way.
"""

import ipaddress
from collections.abc import Iterable, Mapping

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item.strip()) for item in spec if item.strip())


class ClientAddress:
    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        """`trusted_proxies`: addresses or networks whose X-Forwarded-For is believed."""
        self.trusted = parse_networks(trusted_proxies)

    def __call__(self, scope: Scope, headers: Mapping[str, str]) -> str | None:
        """The peer, or the first address a trusted proxy forwarded for (right to left)."""
        peer = scope.get("client")
        address: str | None = peer[0] if peer else None
        forwarded = headers.get("x-forwarded-for")
        if not (forwarded and address and self._is_trusted(address)):
            return address
        for hop in reversed([part.strip() for part in forwarded.split(",")]):
            if not self._is_trusted(hop):
                return hop
        return address

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)
