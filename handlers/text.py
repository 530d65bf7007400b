"""Untrusted text made visible: the one escaping rule for everything Certyard shows people.

Certificate names (subject, issuer, SANs), an agent's name, machine and parameters, and
whatever else arrives from outside can carry characters that change how the text around
them reads without being seen themselves: a right-to-left override (U+202E) turns
``evil\\u202Egpj.exe`` into what looks like ``evilexe.jpg``, a zero-width space makes two
different names look alike, and a CR/LF starts a forged line in a mail body. :func:`visible`
replaces each such character by an escape that shows it (``\\u202E``, ``\\r``, ``\\n``,
``\\x00``) and leaves every other character, backslashes included, as it is: normal text
reads exactly as before.

Handlers and the agent import nothing of Django or the platform; this module is plain
Python so the handlers (email bodies) and the platform (console, Django admin) share it.
"""

from __future__ import annotations

import re
from functools import cache

__all__ = ["FORMATTING_CHARACTERS", "visible", "visible_lines"]

# Bidirectional controls, zero-width and other invisible formatting characters, and the
# Unicode line and paragraph separators: none of them shows, all of them change how the
# text around them reads.
FORMATTING_CHARACTERS: frozenset[int] = frozenset(
    [
        0x061C,  # arabic letter mark
        *range(0x200B, 0x2010),  # zero-width space, ZWNJ, ZWJ, LRM, RLM
        0x2028,  # line separator
        0x2029,  # paragraph separator
        *range(0x202A, 0x202F),  # LRE, RLE, PDF, LRO, RLO
        *range(0x2060, 0x2065),  # word joiner, invisible operators
        *range(0x2066, 0x206A),  # LRI, RLI, FSI, PDI
        *range(0x206A, 0x2070),  # deprecated formatting characters
        0xFEFF,  # zero-width no-break space (BOM)
    ]
)

_C0_NAMES = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


def _escape(code: int) -> str:
    if code in _C0_NAMES:
        return _C0_NAMES[code]
    if code <= 0xFF:  # C0, DEL and C1 controls
        return f"\\x{code:02x}"
    return f"\\u{code:04X}"


# Everything escaped: C0 (tab, CR and LF too), DEL, C1, and the formatting characters.
_ESCAPED: frozenset[int] = frozenset(
    [*range(0x00, 0x20), *range(0x7F, 0xA0), *FORMATTING_CHARACTERS]
)


@cache
def _pattern(keep: str) -> re.Pattern[str]:
    """One character class of everything escaped but ``keep``: the regular expression engine
    scans a whole page for it in C, so text without such characters (nearly all) costs a
    scan and no copy, where ``str.translate`` would look up every character."""
    kept = {ord(char) for char in keep}
    escaped = "".join(re.escape(chr(code)) for code in sorted(_ESCAPED - kept))
    return re.compile(f"[{escaped}]")


def _replacement(match: re.Match[str]) -> str:
    return _escape(ord(match.group()))


def visible(text: str, *, keep: str = "") -> str:
    """``text`` with every control and invisible formatting character shown as an escape.

    C0 controls read ``\\n``, ``\\r``, ``\\t`` or ``\\x1b``; DEL and C1 controls ``\\x7f``,
    ``\\x85``; bidirectional and zero-width characters ``\\u202E``, ``\\u200B``. ``keep``
    names characters to leave as they are (``keep="\\n"`` for text that may span lines; a
    page's own markup keeps ``"\\t\\n\\r"``). For a single-line field keep nothing, so a
    line break inside it shows and cannot start a line of its own.
    """
    return _pattern(keep).sub(_replacement, text)


def visible_lines(text: str) -> str:
    """Text that may span lines (an error, a script's output): line breaks stay, every
    other control and invisible character is shown as in :func:`visible`."""
    return visible(text.replace("\r\n", "\n"), keep="\n")
