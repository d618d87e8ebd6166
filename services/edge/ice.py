"""ICE set-up shared by the edge and the test client.

aioice leaves 127.0.0.1 out of its host candidates, so in a namespace with only
loopback (tests run under ``unshare -n``) no candidate pair exists and ICE times
out. ``use_host_addresses`` replaces aioice's discovery with a fixed list.
"""

from __future__ import annotations

from collections.abc import Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

_discover = aioice.ice.get_host_addresses


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Make every ICE agent in this process offer exactly ``addresses``
    (empty: restore aioice's own discovery).

    The patch is process-wide because aioice looks the function up at module
    level on each gathering; there is no per-connection hook.
    """
    fixed = [a.strip() for a in addresses if a.strip()]
    if not fixed:
        aioice.ice.get_host_addresses = _discover
        return

    def fixed_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = fixed_addresses


def rtc_configuration(
    ice_server_urls: Sequence[str] = (), username: str = "", credential: str = ""
) -> RTCConfiguration:
    """An RTCConfiguration with only the given servers: aiortc's default
    would add a public STUN server, which we never contact unasked."""
    servers = [
        RTCIceServer(urls=url, username=username or None, credential=credential or None)
        for url in ice_server_urls
    ]
    return RTCConfiguration(iceServers=servers)
