"""Loopback only: a Python process started with this folder on PYTHONPATH (Python imports sitecustomize at start)
resolves and connects to loopback addresses only.

The live fuzz run starts `taas serve` (its API and worker inherit the environment) with it: the fuzzer makes
webhooks to arbitrary hosts, and the server would resolve them (webhook URL check) and post to them (deliveries).
Here a name other than localhost, or an address that is not loopback, does not resolve (socket.gaierror, as for
an unknown name) and cannot be connected to (ENETUNREACH), so no test traffic leaves the machine."""

import errno
import ipaddress
import socket


def _local(host: object) -> bool:
    if host is None:
        return True  # passive (bind) lookups
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    host = host.strip().removeprefix("[").removesuffix("]").split("%")[0].rstrip(".").lower()
    if host in ("", "localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _refuse(host: object) -> socket.gaierror:
    return socket.gaierror(socket.EAI_NONAME, f"{host!r} refused by the loopback-only test guard")


_getaddrinfo = socket.getaddrinfo
_gethostbyname = socket.gethostbyname
_gethostbyname_ex = socket.gethostbyname_ex
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def getaddrinfo(host, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
    if not _local(host):
        raise _refuse(host)
    return _getaddrinfo(host, *args, **kwargs)


def gethostbyname(host):  # noqa: ANN001, ANN201
    if not _local(host):
        raise _refuse(host)
    return _gethostbyname(host)


def gethostbyname_ex(host):  # noqa: ANN001, ANN201
    if not _local(host):
        raise _refuse(host)
    return _gethostbyname_ex(host)


def _check(sock: socket.socket, address: object) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and not _local(address[0]):
        raise OSError(errno.ENETUNREACH, f"{address[0]!r} refused by the loopback-only test guard")


def connect(self, address):  # noqa: ANN001, ANN201
    _check(self, address)
    return _connect(self, address)


def connect_ex(self, address):  # noqa: ANN001, ANN201
    _check(self, address)
    return _connect_ex(self, address)


socket.getaddrinfo = getaddrinfo
socket.gethostbyname = gethostbyname
socket.gethostbyname_ex = gethostbyname_ex
socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
