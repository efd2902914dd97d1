"""Which webhook URLs are accepted: absolute http(s); with webhook_deny_private, public addresses only (SSRF)."""

import ipaddress
import socket
from urllib.parse import urlsplit

from app.config import get_settings
from app.errors import Invalid


def check_url(url: str) -> str:
    """422 unless url is an absolute http(s) URL; with webhook_deny_private, also unless its host is public."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise Invalid("the webhook URL is not a valid URL", code="invalid_webhook_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() or ord(c) < 32 for c in url):
        raise Invalid("the webhook URL must be an absolute http:// or https:// URL", code="invalid_webhook_url")
    if get_settings().webhook_deny_private:
        check_public_address(url)
    return url


def check_public_address(url: str) -> None:
    """422 webhook_url_forbidden when url's host is or resolves to an address that is not globally routable."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise Invalid(f"the webhook host {parts.hostname!r} does not resolve",
                      code="webhook_url_unresolvable") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if not ip.is_global or ip.is_multicast:
            raise Invalid(f"the webhook host {parts.hostname!r} is a private, loopback or reserved address; "
                          "this server only calls public addresses", code="webhook_url_forbidden",
                          details={"address": str(ip)})
