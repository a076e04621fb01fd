"""Where configured connectors may reach: outbound hosts and filesystem roots.

Connector config is written through the admin API, so a config is a request to make this
process connect somewhere or read some directory. These limits decide which:

- **Outbound targets** (HTTP base URLs, IMAP hosts, SQL URL hosts). Every address a host
  name resolves to is checked, at config time and again on each connection. Link-local
  (169.254.0.0/16, fe80::/10), cloud metadata (169.254.169.254, fd00:ec2::254,
  ``metadata.google.internal``) and the service's own listener are refused unless an
  ``outbound_allow`` entry names them. With ``outbound_allow`` set, only the hosts and
  ranges it lists are reachable; without it, everything else is (self-hosted sources on
  loopback and private networks are ordinary).
- **Filesystem roots**: a connector's directory (and a SQLite file) must resolve, with
  symlinks followed, to a path under one of ``filesystem_allowed_roots``.

Config-time refusals are :class:`ConfigError` naming the field (422); a connection refused
at run time (DNS changed since) is a :class:`SourceError`, never retried.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from contextd.core.errors import ConfigError, SourceError, TransientSourceError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LINK_LOCAL: tuple[IpNetwork, ...] = (ipaddress.ip_network("169.254.0.0/16"),
                                     ipaddress.ip_network("fe80::/10"))
METADATA_ADDRESSES: frozenset[IpAddress] = frozenset({
    ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata"})

Resolver = Callable[[str, int], list[IpAddress]]


def resolve(host: str, port: int) -> list[IpAddress]:
    """Every address ``host`` resolves to (a literal address resolves to itself)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IpAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def _unmapped(address: IpAddress) -> IpAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class OutboundRefused(ConfigError):
    """A target the outbound policy does not allow."""

    code = "outbound_refused"


@dataclass(frozen=True)
class OutboundPolicy:
    """Which hosts connectors may connect to; see the module docstring for the rules."""

    allow: tuple[str, ...] = ()
    own_listener: tuple[str, int] | None = None
    resolver: Resolver = field(default=resolve, compare=False, repr=False)

    def _networks(self) -> list[IpNetwork]:
        nets = []
        for entry in self.allow:
            try:
                nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue
        return nets

    def _host_listed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for entry in self.allow:
            entry = entry.lower().rstrip(".")
            if entry == host or (entry.startswith("*.") and host.endswith(entry[1:])):
                return True
        return False

    def _own(self, address: IpAddress, port: int) -> bool:
        if self.own_listener is None or port != self.own_listener[1]:
            return False
        bound = self.own_listener[0].strip("[]")
        if address.is_loopback:
            return True
        try:
            listen = ipaddress.ip_address(bound)
        except ValueError:
            return False
        return listen.is_unspecified or listen == address or _is_local(address)

    def refusal(self, host: str, port: int, addresses: Sequence[IpAddress]) -> str | None:
        """Why ``host:port`` (resolved to ``addresses``) may not be reached, or None."""
        networks = self._networks()
        listed_host = self._host_listed(host)
        if host.lower().rstrip(".") in METADATA_HOSTS and not listed_host:
            return f"{host} is a cloud metadata service"
        for raw in addresses:
            address = _unmapped(raw)
            listed = any(address in net for net in networks if net.version == address.version)
            if listed:
                continue
            if address in METADATA_ADDRESSES:
                return f"{host} resolves to {address}, a cloud metadata address"
            if any(address in net for net in LINK_LOCAL if net.version == address.version):
                return f"{host} resolves to {address}, a link-local address"
            if self._own(address, port):
                return f"{host}:{port} is this service's own listener"
            if self.allow and not listed_host:
                return f"{host} ({address}) is not in outbound_allow"
        if self.allow and not addresses and not listed_host:
            return f"{host} is not in outbound_allow"
        return None

    def admit(self, host: str, port: int, *, field_name: str) -> None:
        """ConfigError naming ``field_name`` if the target is refused. A name that does not
        resolve now is accepted unless an allow-list must be proven (checked again on
        every connection)."""
        try:
            addresses = self.resolver(host, port)
        except OSError:
            addresses = []
        reason = self.refusal(host, port, addresses)
        if reason:
            raise OutboundRefused(f"{field_name}: outbound target refused: {reason}",
                                  details=[{"field": field_name, "message": reason}])

    def connectable(self, host: str, port: int, *, source: str) -> list[IpAddress]:
        """The checked addresses to connect to now; SourceError if any is refused.

        Connect to one of these (not the name again), so a DNS answer that changes between
        the check and the connection cannot lead elsewhere.
        """
        try:
            addresses = self.resolver(host, port)
        except OSError as exc:
            raise SourceTargetUnresolved(f"{source}: cannot resolve {host}: "
                                         f"{exc.strerror or type(exc).__name__}") from None
        reason = self.refusal(host, port, addresses)
        if reason:
            raise SourceError(f"{source}: outbound target refused: {reason}")
        return addresses


class SourceTargetUnresolved(TransientSourceError):
    """The source host does not resolve right now (retried like other transient errors)."""


def _is_local(address: IpAddress) -> bool:
    try:
        names = socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        return False
    return str(address) in names


def url_target(url: str) -> tuple[str, int] | None:
    """(host, port) of an http(s) URL, or None when it names no host."""
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


@dataclass(frozen=True)
class SourceLimits:
    """The outbound policy and the filesystem roots, as settings give them.

    ``allowed_roots`` None means unrestricted (the command line, run by an operator who
    chose the path); empty means no directory may be read.
    """

    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    allowed_roots: tuple[Path, ...] | None = None

    def admit_path(self, path: str | Path, *, field_name: str) -> None:
        """ConfigError naming ``field_name`` unless ``path`` lies under an allowed root."""
        if self.allowed_roots is None:
            return
        resolved = Path(path).expanduser().resolve()
        for root in self.allowed_roots:
            base = Path(root).expanduser().resolve()
            if resolved == base or base in resolved.parents:
                return
        roots = ", ".join(str(r) for r in self.allowed_roots) or "none configured"
        reason = (f"{resolved} is not under an allowed root (filesystem_allowed_roots: "
                  f"{roots})")
        raise ConfigError(f"{field_name}: {reason}",
                          details=[{"field": field_name, "message": reason}])

    def admit(self, targets: Iterable[tuple[str, str, Any]]) -> None:
        """Check ``(field, kind, value)`` targets: kind ``path``, ``url`` or ``host:port``."""
        for name, kind, value in targets:
            field_name = f"config.{name}"
            if kind == "path":
                self.admit_path(value, field_name=field_name)
            elif kind == "url":
                target = url_target(str(value))
                if target is not None:
                    self.outbound.admit(*target, field_name=field_name)
            elif kind == "host":
                host, port = value
                self.outbound.admit(host, port, field_name=field_name)
