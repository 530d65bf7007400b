"""Client machine names: what an orchestrator or store may call its host."""

import ipaddress
import re
import unicodedata

CLIENT_MACHINE_MAX_LENGTH = 253  # a DNS name's limit
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def client_machine_problem(value: str) -> str | None:
    """Why ``value`` is no host name or IP address an agent may claim; None if it is one.

    A host name is dot-separated labels of ASCII letters, digits, ``-`` and ``_`` (Windows
    names have them), 1 to 63 characters each, not starting or ending with ``-``. So no
    path character, space, line break, control, markup or bidi character gets in: the
    name is shown in the console, written into events and filled into store paths.
    """
    if not value:
        return "give the agent's host name or IP address"
    if len(value) > CLIENT_MACHINE_MAX_LENGTH:
        return f"at most {CLIENT_MACHINE_MAX_LENGTH} characters"
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return None
    if all(_HOST_LABEL.fullmatch(label) for label in value.split(".")):
        return None
    odd = next(
        (char for char in value if not (char.isascii() and (char.isalnum() or char in "._-"))),
        None,
    )
    if odd is not None:
        shown = (
            repr(odd)
            if odd.isprintable() and unicodedata.category(odd) != "Cf"
            else f"U+{ord(odd):04X}"
        )
        return (
            f"not a host name or IP address: {shown} is not allowed (use letters, digits, "
            "'-' and '_' in dot-separated labels)"
        )
    return (
        "not a host name or IP address: each dot-separated label has 1 to 63 letters, "
        "digits, '-' or '_', and does not start or end with '-'"
    )
