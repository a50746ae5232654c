"""Where a provider's credential may go: which environment variable it may be read from, and which hosts
it may be sent to.

A provider names an environment variable (`credential_env`) and a `base_url`; the availability refresh
sends the variable's value to that URL as a bearer token. Without limits, whoever may edit the policy
could send the server's own secrets (SECRET_KEY, DATABASE_URL, AWS credentials) to a listener of theirs,
or reach the cloud's metadata service from inside the network. So:

- `credential_env` must match PROVIDER_CREDENTIAL_ENV_PATTERN (by default names ending in `_API_KEY`),
  and is never a variable Switchboard, Django, Celery or the AWS SDK read for themselves;
- `base_url` is https on a public host, unless PROVIDER_ALLOW_PRIVATE_BASE_URLS allows plain http and
  private, loopback and internal hosts (a gateway on the local network, a test stand-in);
- link-local addresses (169.254.0.0/16, fe80::/10) and the clouds' metadata endpoints are always refused,
  by name, by address and, at refresh time, by what the name resolves to.
"""

import ipaddress
import re
import socket
import urllib.parse

from django.conf import settings

# Variables the process reads for itself, whatever the pattern allows.
SERVER_VARIABLES = frozenset({
    "SECRET_KEY", "SECRETS_ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL", "REDIS_SENTINELS", "METRICS_TOKEN",
    "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CELERY_TEST_BROKER_URL", "SWITCHBOARD_ENV_FILE",
    "PROMETHEUS_MULTIPROC_DIR", "HOME", "PATH", "USER", "PWD", "SHELL",
})
SERVER_PREFIXES = ("DJANGO_", "AWS_", "CELERY_", "DATABASE_", "REDIS_", "ROUTER_", "SECURE_", "SECRET", "PROVIDER_", "EMAIL_", "ALERTS_",
                   "SWITCHBOARD_", "PG", "GUNICORN_", "SENTRY_")
# Host names of cloud metadata services; their addresses are refused below whatever the settings say.
METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal",
                            "metadata.azure.com", "metadata.tencentyun.com"})
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "168.63.129.16", "192.0.0.192",
))
INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".intranet", ".lan", ".home.arpa", ".corp")


class EgressRefused(ValueError):
    """A credential variable or a base URL a provider may not use; the message says why and what to set."""


def check_credential_env(name: str) -> None:
    """Raises EgressRefused unless `name` is a variable the operator allows providers to read."""
    if not name:
        return
    upper = name.upper()
    if upper in SERVER_VARIABLES or upper.startswith(SERVER_PREFIXES):
        raise EgressRefused(f"{name} is a variable the server reads for itself: name the variable that holds this "
                            "provider's API key (e.g. OPENAI_API_KEY)")
    pattern = settings.PROVIDER_CREDENTIAL_ENV_PATTERN
    if not re.fullmatch(pattern, name):
        raise EgressRefused(f"{name} does not match PROVIDER_CREDENTIAL_ENV_PATTERN ({pattern}): name a variable such as "
                            "OPENAI_API_KEY, or ask the operator to allow this name")


def check_base_url(url: str) -> str:
    """Raises EgressRefused unless a credential may be sent to `url` as written; returns its host."""
    if not url:
        return ""
    parts = urllib.parse.urlsplit(url)
    allow_private = settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS
    if parts.username is not None or parts.password is not None:
        raise EgressRefused("must not carry a user name or password: set credential_env or store a secret")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise EgressRefused("names no host")
    address = _literal_address(host)
    if address is not None:
        check_address(address, host)
    elif host in METADATA_HOSTS:
        raise EgressRefused(f"{host} is a cloud metadata service: never a provider")
    elif not allow_private and (host == "localhost" or host.endswith(INTERNAL_SUFFIXES) or "." not in host):
        raise EgressRefused(f"{host} is not a public host name (set PROVIDER_ALLOW_PRIVATE_BASE_URLS=1 for a local gateway)")
    if parts.scheme not in (("https", "http") if allow_private else ("https",)):
        raise EgressRefused("must start with https:// (plain http only with PROVIDER_ALLOW_PRIVATE_BASE_URLS=1)")
    return host


def check_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, host: str) -> None:
    """Raises EgressRefused for an address a credential may not be sent to."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    where = host if host == str(address) else f"{host} ({address})"
    if address in METADATA_ADDRESSES or address.is_link_local:
        raise EgressRefused(f"{where} is a link-local or cloud metadata address: never a provider")
    if not address.is_global and not settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS:
        raise EgressRefused(f"{where} is not a public address (set PROVIDER_ALLOW_PRIVATE_BASE_URLS=1 for a local gateway)")


def check_resolved(url: str) -> None:
    """At the moment of sending: every address `url`'s host resolves to must be allowed too."""
    host = check_base_url(url)
    if not host or _literal_address(host) is not None:
        return
    port = urllib.parse.urlsplit(url).port or 443
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise EgressRefused(f"{host} could not be resolved ({exc.strerror or exc})") from exc
    for *_, sockaddr in answers:
        check_address(ipaddress.ip_address(sockaddr[0].split("%", 1)[0]), host)


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host written as one means, including the forms C's inet_aton takes (2852039166, 0xa9.0xfe.0xa9.0xfe)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if all(re.fullmatch(r"0x[0-9a-f]*|[0-9]+", part) for part in host.split(".")):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None
