"""Where a webhook may point: public addresses only, unless the deployment allows more.

A webhook URL is checked twice: when the user saves it (``Profiles.update``, a clear
``InvalidInput`` on ``webhook_url``) and at every delivery (``events.reminders.notifications``),
because what a name resolves to can change. A host is refused when any of its addresses is not
a public unicast address: loopback, private, link-local (cloud metadata at 169.254.169.254),
unique-local, shared (CGNAT), multicast, unspecified or reserved. Self-hosters whose hooks live
inside their own network allow them with ``TODO_WEBHOOK_ALLOWED_NETWORKS`` (CIDRs, e.g.
``["10.0.0.0/8"]``) or ``TODO_WEBHOOK_ALLOWED_HOSTS`` (host names, e.g. ``["n8n.internal"]``).

    policy = WebhookPolicy.of(allowed_networks=["10.0.0.0/8"], allowed_hosts=[])
    target = policy.resolve("https://hooks.example.com/x")   # or raises InvalidInput
    target.addresses                                          # the checked addresses to connect to
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from tasks.errors import InvalidInput

FIELD: Final = "webhook_url"
MAX_URL: Final = 2000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


class UnresolvableHost(InvalidInput):
    """The webhook's host name did not resolve (now: it may later)."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, as a connection would use)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class WebhookTarget:
    """A checked URL: its parts, and the addresses it may be connected to (in resolver order)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class WebhookPolicy:
    """Which webhook targets are allowed; the default allows public addresses only."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_hosts: frozenset[str] = frozenset()
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def of(
        cls, *, allowed_networks: Iterable[str] = (), allowed_hosts: Iterable[str] = (),
        resolver: Resolver = system_resolver,
    ) -> WebhookPolicy:  # fmt: skip
        networks = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in allowed_networks if n.strip())
        hosts = frozenset(h.strip().lower().rstrip(".") for h in allowed_hosts if h.strip())
        return cls(allowed_networks=networks, allowed_hosts=hosts, resolver=resolver)

    def resolve(self, url: str) -> WebhookTarget:
        """Check ``url`` and resolve its host; raises ``InvalidInput`` (field ``webhook_url``)
        saying why when it may not be used."""
        scheme, host, port = _parts(url)
        try:
            addresses = self.resolver(host, port)
        except (OSError, UnicodeError, ValueError) as exc:
            raise UnresolvableHost(
                FIELD, f"The webhook's host '{host}' could not be resolved; check the URL."
            ) from exc
        if not addresses:
            raise UnresolvableHost(FIELD, f"The webhook's host '{host}' has no address; check the URL.")
        if host.rstrip(".") not in self.allowed_hosts:
            for address in addresses:
                self._check(host, address)
        return WebhookTarget(url=url, scheme=scheme, host=host, port=port, addresses=tuple(addresses))

    def _check(self, host: str, address: str) -> None:
        ip = _unmapped(ipaddress.ip_address(address.split("%", 1)[0]))
        if any(ip in network for network in self.allowed_networks):
            return
        if not is_public(ip):
            raise InvalidInput(
                FIELD,
                f"The webhook's host '{host}' resolves to {ip}, a {_kind(ip)} address; webhooks "
                "must reach a public address (a self-hosted server can allow its own networks "
                "with TODO_WEBHOOK_ALLOWED_NETWORKS).",
            )


def is_public(ip: IPAddress) -> bool:
    """A global unicast address: not loopback, private, link-local, shared, multicast, reserved..."""
    ip = _unmapped(ip)
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def _unmapped(ip: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 IPv6 address (checked as itself)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def _kind(ip: IPAddress) -> str:
    kinds: Sequence[tuple[bool, str]] = (
        (ip.is_loopback, "loopback"), (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"), (ip.is_unspecified, "unspecified"),
        (ip.is_private, "private"), (ip.is_reserved, "reserved"),
    )  # fmt: skip
    return next((name for hit, name in kinds if hit), "non-public")


def _parts(url: str) -> tuple[str, str, int]:
    """The scheme, host and port of an http(s) URL, or ``InvalidInput`` saying what is wrong."""
    if len(url) > MAX_URL:
        raise InvalidInput(FIELD, f"The webhook URL is {len(url)} characters long; the limit is {MAX_URL}.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(FIELD, f"The webhook URL is not a valid URL ({exc}).") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidInput(FIELD, "The webhook must be an http:// or https:// URL.")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidInput(FIELD, "The webhook URL has no host; e.g. https://hooks.example.com/todo.")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(FIELD, "The webhook URL may not carry a user name or password.")
    return scheme, host, port or (443 if scheme == "https" else 80)
