"""The outbound URL guard: which URLs ocrq may fetch or post to, and the address it
connects to.

Loopback, private, link-local (cloud metadata 169.254.169.254 included),
multicast, reserved and unspecified addresses are refused unless private
addresses are allowed, and so are IPv6 forms that embed one of them (IPv4-mapped,
NAT64, 6to4). The address is resolved once, within the caller's
deadline, and the connection is pinned to it, so a second DNS answer
(rebinding) cannot send the request elsewhere.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

# idna is what requests encodes host names with: a name it would refuse is refused here.
import idna

from ocrq.errors import OcrqError

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}
RESOLVE_LIMIT_S = 5.0  # check_url: the longest a name lookup may take
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 forms that carry an IPv4 address in their last 32 bits and reach it through
# a translator or tunnel: NAT64 (RFC 6052), IPv4-translated (RFC 2765), and the
# deprecated IPv4-compatible form. ipaddress calls them global whatever they embed.
_EMBEDS_IPV4 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "::ffff:0:0:0/96",
                                                        "::/96"))
# RFC 8215 local-use NAT64: by definition inside one network, never public.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


class UnsafeURL(OcrqError):
    """Refused by the guard: not http(s), no host, or a non-public address."""

    code = "unsafe_url"


class BadURL(UnsafeURL):
    """Not a URL that can be fetched at all: a port out of range, a host name that
    is not a valid (internationalised) name, broken brackets."""

    code = "bad_url"


class FetchFailed(OcrqError):
    """A well-formed, allowed URL that could not be fetched. ``reason``:
    unresolvable, connection_refused, connection_failed, tls, timeout (one socket
    operation), deadline (the whole exchange), http_status, redirects, protocol."""

    code = "fetch_failed"


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # ASCII (punycode), lower case, no trailing dot; an IP literal unbracketed
    port: int

    @property
    def literal(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def parse(url: str) -> Target:
    """The URL's scheme, ASCII host and port; :class:`BadURL` / :class:`UnsafeURL`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # port out of range or not a number, broken [IPv6]
        raise BadURL(f"malformed URL {url!r}: {exc}", url=url) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"URL must be http(s) with a host: {url!r}", url=url)
    if port == 0:
        raise BadURL(f"malformed URL {url!r}: port 0", url=url)
    host = ascii_host(parts.hostname, url)
    return Target(url, parts.scheme, host, port or (443 if parts.scheme == "https" else 80))


def ascii_host(host: str, url: str) -> str:
    host = host.rstrip(".").lower()
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        name = host if host.isascii() else idna.encode(host, uts46=True).decode("ascii")
        if "xn--" in name:
            idna.decode(name)  # an A-label must be valid punycode
    except (idna.IDNAError, UnicodeError) as exc:
        raise BadURL(f"URL host {host!r} is not a valid host name: {exc}", url=url) from exc
    labels = name.split(".")
    if len(name) > 253 or not all(len(x) <= 63 and _LABEL.fullmatch(x) for x in labels):
        raise BadURL(f"URL host {host!r} is not a valid host name", url=url)
    return name


def resolve(target: Target, until: float) -> list[IPAddress]:
    """The addresses of the target's host, looked up before ``until`` (monotonic).

    ``getaddrinfo`` cannot be interrupted: it runs on a daemon thread that is
    left to finish on its own when the deadline passes first.
    """
    literal = target.literal
    if literal is not None:
        return [literal]
    box: dict[str, object] = {}

    def lookup() -> None:
        try:
            box["infos"] = socket.getaddrinfo(target.host, target.port, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:
            box["error"] = exc

    thread = threading.Thread(target=lookup, name="ocrq-resolve", daemon=True)
    thread.start()
    thread.join(max(0.0, until - time.monotonic()))
    if thread.is_alive():
        raise FetchFailed(f"looking up {target.host!r} did not finish within the deadline",
                          reason="deadline", url=target.url)
    if "error" in box or not box.get("infos"):
        raise FetchFailed(f"URL host {target.host!r} does not resolve ({box.get('error')})",
                          reason="unresolvable", url=target.url)
    infos = box["infos"]
    assert isinstance(infos, list)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _check_public(target: Target, addresses: list[IPAddress]) -> None:
    host = target.host
    if host in METADATA_HOSTS or host == "localhost" or host.endswith(".localhost"):
        raise UnsafeURL(f"URL host {host!r} is not allowed", url=target.url)
    for addr in addresses:
        addr = _reached(addr)
        if not addr.is_global or addr.is_multicast:
            raise UnsafeURL(f"URL host {host!r} resolves to non-public address {addr}",
                            url=target.url, address=str(addr))


def _reached(addr: IPAddress) -> IPAddress:
    """The address a connection to ``addr`` ends at: an embedded IPv4 where there is one
    (so [::ffff:127.0.0.1], [64:ff9b::a00:1] or 6to4 [2002:7f00:1::] are judged
    as 127.0.0.1 / 10.0.0.1), else ``addr`` itself."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return addr
    if addr in _LOCAL_NAT64:
        return ipaddress.IPv4Address("10.0.0.0")  # private, whatever it embeds
    embedded = addr.ipv4_mapped or addr.sixtofour
    if embedded is not None:
        return embedded
    if any(addr in net for net in _EMBEDS_IPV4):  # :: and ::1 become 0.0.0.0/0.0.0.1: refused
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr


def connect_address(url: str, allow_private: bool, until: float) -> tuple[Target, str]:
    """The parsed URL and the one address to connect to (every address of the
    host checked unless ``allow_private``); the lookup ends before ``until``."""
    target = parse(url)
    if not allow_private:
        _check_public(target, [])  # named hosts refused before any lookup
    addresses = resolve(target, until)
    if not allow_private:
        _check_public(target, addresses)
    else:  # pinned all the same (the lookup is bounded); IPv4 first, as most servers listen
        addresses.sort(key=lambda a: a.version)
    return target, str(addresses[0])


def check_url(url: str, allow_private: bool) -> str | None:
    """Raise :class:`UnsafeURL` (:class:`BadURL` when malformed) unless ``url`` is
    http(s) to a public address.

    Every address the host resolves to must be public (a host with one private
    A record is refused). Returns the checked address to connect to (None when
    private addresses are allowed: nothing is looked up then).
    """
    target = parse(url)
    if allow_private:
        return None
    try:
        return connect_address(url, False, time.monotonic() + RESOLVE_LIMIT_S)[1]
    except FetchFailed as exc:  # a callback_url whose host does not resolve is refused
        raise UnsafeURL(exc.message, url=target.url) from exc
