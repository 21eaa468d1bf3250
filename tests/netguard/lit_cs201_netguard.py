"""Refuse socket connections to anything but loopback and local (unix) sockets."""

from __future__ import annotations

import ipaddress
import socket

_LOCAL_NAMES = {"localhost", "ip6-localhost", ""}


class NetworkAccessError(RuntimeError):
    """A test tried to reach the network."""


def _is_local(address: object) -> bool:
    if not isinstance(address, tuple) or not address:
        return True  # AF_UNIX paths and abstract sockets
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode()
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost needs DNS: refuse


def _guard(method):
    def guarded(self, address, *args, **kwargs):
        if not _is_local(address):
            raise NetworkAccessError(f"network access is not allowed in tests (tried to connect to {address!r})")
        return method(self, address, *args, **kwargs)

    return guarded


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local((host,)):
        raise NetworkAccessError(f"network access is not allowed in tests (tried to resolve {host!r})")
    return _original_getaddrinfo(host, *args, **kwargs)


_original_getaddrinfo = socket.getaddrinfo


def install() -> None:
    if getattr(socket.socket, "_lit_cs201_guarded", False):
        return
    socket.socket.connect = _guard(socket.socket.connect)
    socket.socket.connect_ex = _guard(socket.socket.connect_ex)
    socket.getaddrinfo = _guarded_getaddrinfo
    socket.socket._lit_cs201_guarded = True
