"""Destination URL rules: scheme, credentials, private and metadata addresses, allowed hosts."""

from __future__ import annotations

import ipaddress

import pytest

from integrations.core._urls import address_problem, host_allowed, validate_destination
from streams import EventValidationError


async def _refused(url: str, *, allow_http: bool = True, allowed_hosts: tuple[str, ...] = ()) -> str:
    with pytest.raises(EventValidationError) as caught:
        await validate_destination(url, allow_http=allow_http, allowed_hosts=allowed_hosts)
    assert caught.value.field == "url"
    return caught.value.problem


async def test_https_public_ip_literal_is_accepted() -> None:
    url = "https://93.184.216.34/hook"
    assert await validate_destination(url, allow_http=False, allowed_hosts=()) == url


async def test_url_is_normalised() -> None:
    result = await validate_destination("HTTPS://93.184.216.34:443/Hook?a=1#frag", allow_http=False, allowed_hosts=())
    assert result == "https://93.184.216.34/Hook?a=1"
    assert await validate_destination("https://93.184.216.34", allow_http=False, allowed_hosts=()) == (
        "https://93.184.216.34/"
    )
    assert await validate_destination("https://93.184.216.34:8443/x", allow_http=False, allowed_hosts=()) == (
        "https://93.184.216.34:8443/x"
    )
    assert await validate_destination("https://[2606:4700::1]/x", allow_http=False, allowed_hosts=()) == (
        "https://[2606:4700::1]/x"
    )


async def test_plain_http_needs_the_flag() -> None:
    problem = await _refused("http://93.184.216.34/hook", allow_http=False)
    assert "use https, or set WEBHOOK_ALLOW_HTTP=true" in problem
    url = "http://93.184.216.34/hook"
    assert await validate_destination(url, allow_http=True, allowed_hosts=()) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://localhost:8080/hook", "loopback"),
        ("http://127.0.0.1/hook", "loopback"),
        ("http://10.0.0.1/hook", "private"),
        ("http://192.168.1.10/hook", "private"),
        ("http://172.16.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://169.254.1.1/", "link-local"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://[::ffff:7f00:1]/hook", "loopback"),
        ("http://[64:ff9b::a00:1]/hook", "private"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://[fe80::1]/", "link-local"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://100.64.0.1/", "not a public address"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("http://METADATA.google.internal./", "metadata"),
    ],
)
async def test_private_addresses_are_refused(url: str, reason: str) -> None:
    problem = await _refused(url)
    assert reason in problem
    assert "WEBHOOK_ALLOWED_HOSTS" in problem


async def test_refusal_names_the_resolved_address() -> None:
    problem = await _refused("http://localhost/hook")
    assert problem.startswith("localhost resolves to ")
    assert "a loopback address; list the host in WEBHOOK_ALLOWED_HOSTS to allow it" in problem


@pytest.mark.parametrize("url", ["http://127.1/", "http://2130706433/", "http://0x7f.0.0.1/", "http://017700000001/"])
async def test_legacy_ipv4_forms_are_refused(url: str) -> None:
    assert "canonical IPv4" in await _refused(url)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://localhost:8080/hook", ("localhost",)),
        ("http://LocalHost:8080/hook", ("LOCALHOST",)),
        ("http://localhost:8080/hook", ("localhost:8080",)),
        ("http://127.0.0.1:9000/hook", ("127.0.0.1",)),
        ("http://127.0.0.1:9000/hook", ("127.0.0.1:9000",)),
        ("http://[::1]:9000/hook", ("::1",)),
        ("http://[::1]:9000/hook", ("[::1]:9000",)),
        ("http://10.0.0.1/hook", ("10.0.0.1:80",)),
    ],
)
async def test_allowed_hosts_may_be_private(url: str, allowed: tuple[str, ...]) -> None:
    result = await validate_destination(url, allow_http=True, allowed_hosts=allowed)
    assert result.lower() == url.lower()


async def test_allowed_host_with_another_port_is_still_refused() -> None:
    assert "loopback" in await _refused("http://localhost:8080/", allowed_hosts=("localhost:9090",))


async def test_allowed_hosts_do_not_lift_the_http_rule() -> None:
    assert "use https" in await _refused("http://localhost/", allow_http=False, allowed_hosts=("localhost",))


@pytest.mark.parametrize("url", ["ftp://93.184.216.34/x", "file:///etc/passwd", "gopher://93.184.216.34/", "//x/y"])
async def test_other_schemes_are_refused(url: str) -> None:
    assert "https://" in await _refused(url)


@pytest.mark.parametrize(
    "url",
    ["https://user:pass@93.184.216.34/hook", "https://user@93.184.216.34/hook", "https://:pw@93.184.216.34/"],
)
async def test_credentials_are_refused(url: str) -> None:
    assert "credentials" in await _refused(url)


@pytest.mark.parametrize(
    "url",
    ["", "   ", "https://", "https:///path", "https://93.184.216.34:99999/", "https://exa mple.com/", "not a url"],
)
async def test_malformed_urls_are_refused(url: str) -> None:
    await _refused(url)


async def test_unresolvable_name_is_refused() -> None:
    problem = await _refused("https://does-not-exist.invalid/hook")
    assert "does not resolve" in problem


async def test_resolve_false_skips_dns() -> None:
    url = "https://does-not-exist.invalid/hook"
    assert await validate_destination(url, allow_http=False, allowed_hosts=(), resolve=False) == url
    assert "loopback" in await _refused_without_dns("https://127.0.0.1/")


async def _refused_without_dns(url: str) -> str:
    with pytest.raises(EventValidationError) as caught:
        await validate_destination(url, allow_http=False, allowed_hosts=(), resolve=False, field="destination")
    assert caught.value.field == "destination"
    return caught.value.problem


def test_address_problem() -> None:
    assert address_problem(ipaddress.ip_address("93.184.216.34")) is None
    assert address_problem(ipaddress.ip_address("::ffff:93.184.216.34")) is None
    assert address_problem(ipaddress.ip_address("2002:7f00:1::")) == "a loopback address"
    assert address_problem(ipaddress.ip_address("fe80::1%eth0")) == "a link-local address"


def test_host_allowed() -> None:
    assert host_allowed("Example.COM.", 443, ["example.com"])
    assert host_allowed("example.com", 443, [" EXAMPLE.com:443 "])
    assert not host_allowed("example.com", 443, ["example.com:80"])
    assert host_allowed("::1", 80, ["[::1]"])
    assert not host_allowed("sub.example.com", 443, ["example.com"])
