"""Which webhook URLs are accepted, and which address a delivery connects to (SSRF).

A URL must be absolute http(s). Its host must be, or resolve only to, globally routable addresses (see refused):
loopback, private (RFC 1918, ULA), link-local (cloud metadata at 169.254.169.254), CGNAT, multicast, reserved,
documentation and the like are refused, unless the host is listed in webhook_allow_hosts. The check runs when an
endpoint is made and again before every attempt, and the attempt connects to an address that check approved
(pin): the name is resolved once per attempt, never again by the HTTP client, so a name that answers a public
address to the check and a private one to the connection (DNS rebinding) gets nowhere.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httpx

from app.config import get_settings, host_key
from app.errors import Invalid

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Not globally reachable (IANA special-purpose registries), listed here rather than left to ip.is_global, whose
# answer changed between Python patch releases. IPv6 outside 2000::/3 is refused as a whole (below).
_REFUSED_V4 = [ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8",  # "this network", 0.0.0.0 unspecified
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
    "100.64.0.0/10",  # CGNAT shared address space
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local: cloud metadata services
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",  # documentation
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
    "198.18.0.0/15",  # benchmarking
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, 255.255.255.255 broadcast
)]
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_REFUSED_V6 = [ipaddress.IPv6Network(n) for n in (
    "2001::/23",  # IETF protocol assignments: Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID
    "2001:db8::/32", "3fff::/20",  # documentation
)]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix: the last 32 bits are an IPv4 address


def refused(ip: IPAddress) -> bool:
    """Whether a delivery may not connect to ip: True unless it is a globally routable unicast address.

    IPv6 forms that embed an IPv4 address (IPv4-mapped, NAT64 64:ff9b::/96, 6to4, Teredo) are refused when the
    embedded address is: ::ffff:127.0.0.1 or 2002:7f00:1:: reach 127.0.0.1 as surely as 127.0.0.1 does.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        return any(ip in n for n in _REFUSED_V4) or not ip.is_global
    ip = ipaddress.IPv6Address(ip.packed)  # without a %scope
    if ip.ipv4_mapped is not None:
        return refused(ip.ipv4_mapped)
    if ip in _NAT64:
        return refused(ipaddress.IPv4Address(ip.packed[-4:]))
    if ip.sixtofour is not None and refused(ip.sixtofour):
        return True
    if ip.teredo is not None and any(refused(v4) for v4 in ip.teredo):
        return True
    # Outside 2000::/3: ::, ::1, ::/96, 64:ff9b:1::/48, 100::/64, ULA fc00::/7, fe80::/10, fec0::/10, ff00::/8...
    return (ip not in _GLOBAL_UNICAST_V6 or any(ip in n for n in _REFUSED_V6) or not ip.is_global
            or ip.is_multicast)


def resolve(host: str, port: int) -> list[str]:
    """The addresses host resolves to for a TCP connection, in the system resolver's order (one lookup)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Pinned:
    """Where one attempt goes: url as given, sent to one of addresses (each checked, or the host allow-listed)."""

    url: httpx.URL
    addresses: tuple[IPAddress, ...]

    def request_url(self, address: IPAddress) -> httpx.URL:
        """url with its host replaced by address: the client connects there and resolves nothing."""
        return self.url.copy_with(host=str(address))

    @property
    def headers(self) -> dict[str, str]:
        """Host as the URL names it; over https, one connection per attempt (see extensions)."""
        headers = {"host": self.url.netloc.decode("ascii")}
        if self.url.scheme == "https":
            # The client's pool keys connections by address, not by name: a kept connection, verified for another
            # name on the same address (a CDN, say), must not carry this request.
            headers["connection"] = "close"
        return headers

    @property
    def extensions(self) -> dict[str, str]:
        """Over https, SNI and certificate verification use the URL's host name, not the address connected to."""
        return {"sni_hostname": self.url.raw_host.decode("ascii")} if self.url.scheme == "https" else {}


def parse(url: str) -> httpx.URL:
    """url as the HTTP client reads it; 422 invalid_webhook_url unless it is an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
        parsed = httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        raise Invalid("the webhook URL is not a valid URL", code="invalid_webhook_url") from None
    if (parts.scheme not in ("http", "https") or not parts.hostname or parsed.scheme != parts.scheme
            or not parsed.host or any(c.isspace() or ord(c) < 32 for c in url)):
        raise Invalid("the webhook URL must be an absolute http:// or https:// URL", code="invalid_webhook_url")
    return parsed


def allowed_host(url: httpx.URL) -> bool:
    """Whether url's host is listed in webhook_allow_hosts (then its addresses are not checked)."""
    listed = {host_key(h) for h in get_settings().webhook_allow_hosts}
    return bool(listed) and (host_key(url.host) in listed or host_key(url.raw_host.decode("ascii")) in listed)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(unquote(host))
    except ValueError:
        return None


def _addresses(url: httpx.URL) -> tuple[IPAddress, ...]:
    host = url.raw_host.decode("ascii")
    if (literal := _literal(host)) is not None:
        return (literal,)
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: loopback, and never a question for DNS
        return (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))
    try:
        found = resolve(host, url.port or (443 if url.scheme == "https" else 80))
        addresses = tuple(ipaddress.ip_address(a.split("%", 1)[0]) for a in found)
    except (OSError, UnicodeError, ValueError):
        addresses = ()
    if not addresses:
        raise Invalid(f"the webhook host {url.host!r} does not resolve", code="webhook_url_unresolvable")
    return addresses


def pin(url: str) -> Pinned:
    """Resolve url's host once and check every address it has; 422 unless all of them may be called.

    webhook_url_forbidden when any address is refused (not only the first: the client could pick any),
    webhook_url_unresolvable when the name has none. A host in webhook_allow_hosts is resolved but not checked.
    """
    parsed = parse(url)
    addresses = _addresses(parsed)
    if not allowed_host(parsed):
        for ip in addresses:
            if refused(ip):
                raise Invalid(f"the webhook host {parsed.host!r} is a private, loopback or reserved address; "
                              "this server only calls public addresses (see TAAS_WEBHOOK_ALLOW_HOSTS)",
                              code="webhook_url_forbidden", details={"address": str(ip)})
    return Pinned(parsed, addresses)


def check_url(url: str) -> str:
    """At creation: 422 unless url is an absolute http(s) URL whose host may be called (see pin).

    A host in webhook_allow_hosts is not even resolved here: it may not be in DNS yet.
    """
    if not allowed_host(parse(url)):
        pin(url)
    return url
