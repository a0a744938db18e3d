"""Which addresses the worker may connect to on a caller's behalf (input URLs, S3 endpoints).

A job can name URLs (input files, a per-request S3 endpoint); left unchecked, the worker
would fetch from or upload to whatever those name: ComfyUI on 127.0.0.1, a cloud metadata
service on 169.254.169.254 or in carrier-grade NAT (100.64.0.0/10), the pod's private
network. The policy: only globally routable addresses (``ip.is_global``), never multicast,
and no IPv6 form that embeds a refused IPv4 address (mapped, NAT64, 6to4, Teredo). The
worker's ``ALLOW_PRIVATE_INPUT_URLS`` setting turns the policy off (a worker on a trusted
network, tests on loopback).

Names are checked by what they resolve to. For aiohttp connections ``PublicOnlyResolver``
checks the very addresses aiohttp then connects to, so a DNS answer that changes between
check and connection (rebinding) cannot slip through. Libraries that resolve on their own
(boto3, for S3) get ``check_host`` just before use, which narrows that window but cannot
close it.
"""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Prefixes whose low 32 bits are an IPv4 address a router may lead to: NAT64 (well-known and local-use,
# RFC 6052 / 8215) and the deprecated IPv4-compatible form (::a.b.c.d), which Python still calls global.
_LOW_32_IPV4 = tuple(ipaddress.ip_network(prefix) for prefix in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96"))


class BlockedAddress(OSError):
    """A URL names or resolves to an address the worker may not connect to."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address leads to (mapped, NAT64, IPv4-compatible, 6to4, Teredo client)."""
    found = [address.ipv4_mapped, address.sixtofour, address.teredo[1] if address.teredo else None]
    if any(address in prefix for prefix in _LOW_32_IPV4):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


def address_allowed(ip: str | IPAddress) -> bool:
    """True if ``ip`` is globally routable unicast, and so is any IPv4 address it embeds."""
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        return all(address_allowed(inner) for inner in _embedded_ipv4(address))
    return True


def _refusal(host: str, address: str) -> str:
    shown = host if host == address else f"{host} resolves to {address}, which"
    return (
        f"{shown} is not a public address (private, loopback, link-local, carrier-grade NAT or "
        "reserved); URLs in a job must point to the public internet (ALLOW_PRIVATE_INPUT_URLS "
        "lifts this on a trusted network)"
    )


class PublicOnlyResolver(AbstractResolver):
    """Resolves names, then refuses the connection if any address is not public.

    The checked addresses are the ones aiohttp connects to, so DNS rebinding between the
    check and the connection is not possible.
    """

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not address_allowed(result["host"]):
                raise BlockedAddress(_refusal(host, result["host"]))
        return results

    async def close(self) -> None:
        await self._inner.close()


def check_literal_host(url: str) -> None:
    """aiohttp connects to IP literals without asking the resolver: check them here."""
    host = (yarl.URL(url).host or "").strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: PublicOnlyResolver checks what it resolves to
    if not address_allowed(address):
        raise BlockedAddress(_refusal(host, host))


async def check_host(url: str) -> None:
    """Raise BlockedAddress unless every address ``url``'s host resolves to is public.

    For clients that connect by themselves (boto3): call it right before handing them the URL.
    """
    check_literal_host(url)
    host = yarl.URL(url).host
    if not host:
        raise BlockedAddress(f"{url[:100]!r} has no host name")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return  # a literal, checked above
    except ValueError:
        pass
    resolver = PublicOnlyResolver()
    try:
        await resolver.resolve(host, 0, socket.AF_UNSPEC)
    except OSError as exc:
        if isinstance(exc, BlockedAddress):
            raise
        raise BlockedAddress(f"cannot resolve {host}: {exc.strerror or exc}") from None
    finally:
        await resolver.close()


def connector(*, allow_private: bool) -> tuple[aiohttp.TCPConnector, AbstractResolver]:
    """An aiohttp connector that enforces the policy (unless ``allow_private``), and its resolver.

    The caller closes the resolver after the session: a connector closes only resolvers it
    made itself.
    """
    resolver: AbstractResolver = DefaultResolver() if allow_private else PublicOnlyResolver()
    return aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False), resolver
