"""Where the platform listens, where it is reached, and which Host headers it answers.

Three addresses are kept apart (issue 17): the *bind* address the web server listens on
(``CERTYARD_HOST``, ``CERTYARD_PORT``; ``0.0.0.0`` or ``::`` is every interface), the
*public* URL people, agents and relying parties reach it at (``CERTYARD_PUBLIC_URL``: the
banner, the registration line, issued certificates' CRL and OCSP URLs), and the *local*
URL `make run` itself uses on this machine (its health check, the demo orchestrator),
always a loopback address when the bind is a wildcard. A wildcard is never advertised.

Nothing here needs Django: ``settings`` and ``certyard_run`` both use it.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

WILDCARD_HOSTS = ("0.0.0.0", "::")  # noqa: S104 (names, not a bind)
LOOPBACK_HOST_NAMES = ("localhost", "127.0.0.1", "[::1]")
PUBLIC_URL_SETTING = "CERTYARD_PUBLIC_URL"


def host_bare(host: str) -> str:
    """``host`` without the brackets of an IPv6 literal, lowercased."""
    host = host.strip().lower()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def host_is_wildcard(host: str) -> bool:
    """Whether listening on ``host`` means every interface."""
    bare = host_bare(host)
    try:
        return ipaddress.ip_address(bare).is_unspecified
    except ValueError:
        return bare == ""


def host_is_loopback(host: str) -> bool:
    """Whether ``host`` is reached from this machine only (a loopback address or name)."""
    bare = host_bare(host)
    if bare in ("localhost", "localhost.") or bare.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def host_for_url(host: str) -> str:
    """``host`` as written in a URL or a Host header: an IPv6 literal in brackets."""
    bare = host_bare(host)
    return f"[{bare}]" if ":" in bare else bare


def bind_address(host: str, port: int) -> str:
    """The ``--bind`` value of the web server for ``host`` and ``port``."""
    return f"{host_for_url(host)}:{port}"


def local_url(host: str, port: int | str) -> str:
    """The URL `make run` uses on this machine to reach the web server it started: a loopback
    address of the right family when the bind is a wildcard, the bound address otherwise
    (the only one the server then answers on)."""
    if host_is_wildcard(host):
        host = "::1" if ":" in host_bare(host) else "127.0.0.1"
    return f"http://{host_for_url(host)}:{port}"


def public_url_host(public_url: str) -> str | None:
    """The host of a public URL as Django's ALLOWED_HOSTS writes it (IPv6 in brackets), or
    None when the URL has none."""
    try:
        host = urlsplit(public_url.strip()).hostname
    except ValueError:
        return None
    return host_for_url(host) if host else None


def public_url_problem(public_url: str) -> str | None:
    """Why ``public_url`` cannot be the platform's public address, or None when it can."""
    value = public_url.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as error:
        return f"{PUBLIC_URL_SETTING}={value!r} is not a URL ({error})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return (
            f"{PUBLIC_URL_SETTING}={value!r} must be an http:// or https:// URL with a host, "
            "e.g. http://certyard.example.com:8000"
        )
    if host_is_wildcard(parts.hostname):
        return (
            f"{PUBLIC_URL_SETTING}={value!r} names no machine ({parts.hostname} means every "
            "interface): give the name or address others reach this machine by"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        return (
            f"{PUBLIC_URL_SETTING}={value!r} must be a plain base URL (no user, query or fragment)"
        )
    return None


def public_url_missing_message(host: str, port: int) -> str:
    """What to set when listening beyond loopback without a public URL."""
    example = f"http://certyard.example.com:{port}"
    return (
        f"listening on {host} reaches beyond this machine, so Certyard must know the address "
        f"others reach it at: set {PUBLIC_URL_SETTING}, e.g. {PUBLIC_URL_SETTING}={example} "
        "(this machine's name or address as agents, browsers and relying parties use it; "
        "https://... behind a TLS proxy). The banner and the agents' registration line show "
        "it, and certificates Certyard issues name their CRL and OCSP responder under it."
    )


def default_public_url(host: str, port: int | str) -> str:
    """The public URL when none is set: the address the platform listens at (`make run`
    refuses to listen beyond loopback without a public URL, so this is a loopback one)."""
    return local_url(host, port)


def allowed_hosts(*, configured: str | None, bind_host: str | None, public_url: str) -> list[str]:
    """Django's ALLOWED_HOSTS: ``CERTYARD_ALLOWED_HOSTS`` (default: the loopback names), the
    address the server is bound to, the loopback names when it is bound to every interface
    (so `make run`'s health check and demo orchestrator are answered), and the host of the
    public URL (so the address the banner gives works)."""
    names = [h.strip() for h in (configured or ",".join(LOOPBACK_HOST_NAMES)).split(",")]
    hosts = [name for name in names if name]
    if bind_host:
        if host_is_wildcard(bind_host):
            hosts.extend(LOOPBACK_HOST_NAMES)
        else:
            hosts.append(host_for_url(bind_host))
    if public_url and (public_host := public_url_host(public_url)):
        hosts.append(public_host)
    return list(dict.fromkeys(hosts))
