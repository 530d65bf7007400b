"""A small DER reader for the certificates strict parsers refuse.

It reads one element at a time (tag, length, content) and never recurses on its
own, so no input nests it into a RecursionError; every read is bounded by the
element around it, so no input makes it quadratic. Errors are ``DerError``s
whose messages are short phrases for people; ``parse`` turns them into its own.

Text decoders never raise on bad bytes: they show them as ``\\xNN`` escapes and
say what was wrong, so a certificate with one odd string still reads.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

UNIVERSAL, APPLICATION, CONTEXT, PRIVATE = 0, 1, 2, 3

BOOLEAN = 1
INTEGER = 2
BIT_STRING = 3
OCTET_STRING = 4
NULL = 5
OBJECT_IDENTIFIER = 6
ENUMERATED = 10
UTF8_STRING = 12
SEQUENCE = 16
SET = 17
NUMERIC_STRING = 18
PRINTABLE_STRING = 19
T61_STRING = 20
VIDEOTEX_STRING = 21
IA5_STRING = 22
UTC_TIME = 23
GENERALIZED_TIME = 24
GRAPHIC_STRING = 25
VISIBLE_STRING = 26
GENERAL_STRING = 27
UNIVERSAL_STRING = 28
BMP_STRING = 30

# An OID arc of more bytes than this is no identifier anyone uses (a UUID arc takes 19).
MAX_OID_ARC_BYTES = 32
# Lengths of more bytes than this cannot describe data that fits in memory.
_MAX_LENGTH_BYTES = 8
# Five base-128 bytes give 35 bits: more than any tag number in use.
_MAX_TAG_BYTES = 5

_CLASS_NAMES = ("UNIVERSAL", "APPLICATION", "", "PRIVATE")
_UNIVERSAL_NAMES = {
    BOOLEAN: "BOOLEAN",
    INTEGER: "INTEGER",
    BIT_STRING: "BIT STRING",
    OCTET_STRING: "OCTET STRING",
    NULL: "NULL",
    OBJECT_IDENTIFIER: "OBJECT IDENTIFIER",
    ENUMERATED: "ENUMERATED",
    UTF8_STRING: "UTF8String",
    SEQUENCE: "SEQUENCE",
    SET: "SET",
    NUMERIC_STRING: "NumericString",
    PRINTABLE_STRING: "PrintableString",
    T61_STRING: "TeletexString",
    VIDEOTEX_STRING: "VideotexString",
    IA5_STRING: "IA5String",
    UTC_TIME: "UTCTime",
    GENERALIZED_TIME: "GeneralizedTime",
    GRAPHIC_STRING: "GraphicString",
    VISIBLE_STRING: "VisibleString",
    GENERAL_STRING: "GeneralString",
    UNIVERSAL_STRING: "UniversalString",
    BMP_STRING: "BMPString",
}
STRING_TAGS = frozenset(
    {
        UTF8_STRING,
        NUMERIC_STRING,
        PRINTABLE_STRING,
        T61_STRING,
        VIDEOTEX_STRING,
        IA5_STRING,
        GRAPHIC_STRING,
        VISIBLE_STRING,
        GENERAL_STRING,
        UNIVERSAL_STRING,
        BMP_STRING,
    }
)
_PRINTABLE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"
)
_NUMERIC = frozenset(b"0123456789 ")
_UTC_TIME = re.compile(rb"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(Z|[+-]\d{4})")
_GENERALIZED_TIME = re.compile(
    rb"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})?(\d{2})?(?:[.,](\d+))?(Z|[+-]\d{4})?"
)


class DerError(ValueError):
    """The bytes are not the DER expected here; the message is a short phrase for people."""


class DerTruncatedError(DerError):
    """An element says it holds more bytes than there are."""

    def __init__(self, message: str, *, needed: int = 0, available: int = 0) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available


class DerIndefiniteLengthError(DerError):
    """An element uses BER's indefinite length, which DER does not allow."""


@dataclass(frozen=True, slots=True)
class Element:
    """One DER element: where it lies in ``data`` and what its tag says."""

    data: bytes
    start: int
    content_start: int
    end: int
    tag_class: int
    constructed: bool
    number: int

    @property
    def content(self) -> bytes:
        """The content octets (without tag and length)."""
        return self.data[self.content_start : self.end]

    @property
    def encoded(self) -> bytes:
        """The whole element: tag, length and content."""
        return self.data[self.start : self.end]

    def is_universal(self, number: int) -> bool:
        """Whether this is the universal type ``number`` (constructed or not)."""
        return self.tag_class == UNIVERSAL and self.number == number

    def is_context(self, number: int) -> bool:
        """Whether this is the context-specific tag ``[number]``."""
        return self.tag_class == CONTEXT and self.number == number

    def children(self) -> list[Element]:
        """The elements in this element's content, in order."""
        return read_all(self.data, self.content_start, self.end)

    def only_child(self) -> Element:
        """The single element inside this one (an EXPLICIT tag's content)."""
        inner = self.children()
        if len(inner) != 1:
            raise DerError(f"{self.describe()} should hold one element, not {len(inner)}")
        return inner[0]

    def describe(self) -> str:
        """The tag as a person reads it: 'a SEQUENCE', '[APPLICATION 9]', '[0]'."""
        if self.tag_class == UNIVERSAL and self.number in _UNIVERSAL_NAMES:
            name = _UNIVERSAL_NAMES[self.number]
            return f"{'an' if name[0] in 'AEIOU' else 'a'} {name}"
        prefix = _CLASS_NAMES[self.tag_class]
        return f"[{prefix} {self.number}]" if prefix else f"[{self.number}]"


def read_element(data: bytes, offset: int = 0, end: int | None = None) -> Element:
    """The element starting at ``offset``, which must end by ``end`` (default: the data's end)."""
    limit = len(data) if end is None else end
    if offset >= limit:
        raise DerTruncatedError("the data ends where an element was expected", needed=1)
    first = data[offset]
    position = offset + 1
    number = first & 0x1F
    if number == 0x1F:
        number = 0
        for _ in range(_MAX_TAG_BYTES):
            if position >= limit:
                raise DerTruncatedError("the data ends inside a tag", needed=1)
            byte = data[position]
            position += 1
            number = (number << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        else:
            raise DerError("a tag number is too large")
    if position >= limit:
        raise DerTruncatedError("the data ends inside a length", needed=1)
    length = data[position]
    position += 1
    if length & 0x80:
        count = length & 0x7F
        if count == 0:
            raise DerIndefiniteLengthError(
                "an element uses an indefinite length (BER), which DER does not allow"
            )
        if count > _MAX_LENGTH_BYTES:
            raise DerError("an element's length field is too long")
        if position + count > limit:
            raise DerTruncatedError("the data ends inside a length", needed=count)
        length = int.from_bytes(data[position : position + count], "big")
        position += count
    available = limit - position
    if length > available:
        raise DerTruncatedError(
            f"an element says it holds {length} bytes but only {available} follow",
            needed=length,
            available=available,
        )
    return Element(
        data, offset, position, position + length, first >> 6, bool(first & 0x20), number
    )


def read_all(data: bytes, start: int, end: int) -> list[Element]:
    """Every element from ``start`` to ``end``, one after the other."""
    elements = []
    position = start
    while position < end:
        element = read_element(data, position, end)
        elements.append(element)
        position = element.end
    return elements


def readable_children(element: Element) -> tuple[list[Element], bool]:
    """The elements inside ``element`` up to the first unreadable one, and whether one was."""
    found: list[Element] = []
    position = element.content_start
    while position < element.end:
        try:
            child = read_element(element.data, position, element.end)
        except DerError:
            return found, True
        found.append(child)
        position = child.end
    return found, False


def read_one(data: bytes) -> Element:
    """The single element that ``data`` holds, with nothing after it."""
    element = read_element(data)
    if element.end != len(data):
        raise DerError(f"{len(data) - element.end} bytes follow the element")
    return element


def expect(element: Element, number: int) -> Element:
    """``element`` itself, if it is the universal type ``number``; else a DerError."""
    if not element.is_universal(number):
        raise DerError(
            f"expected {_UNIVERSAL_NAMES.get(number, number)}, found {element.describe()}"
        )
    return element


def decode_oid(content: bytes) -> str:
    """An OBJECT IDENTIFIER's content as a dotted string."""
    if not content:
        raise DerError("an object identifier is empty")
    if content[-1] & 0x80:
        raise DerError("an object identifier ends in the middle of a number")
    arcs: list[int] = []
    value = 0
    arc_bytes = 0
    for byte in content:
        if arc_bytes == 0 and byte == 0x80:
            raise DerError("an object identifier has a number with leading zeros")
        arc_bytes += 1
        if arc_bytes > MAX_OID_ARC_BYTES:
            raise DerError("an object identifier has a number that is too large")
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
            arc_bytes = 0
    first = arcs[0]
    head = [first // 40, first % 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + arcs[1:])


def oid(element: Element) -> str:
    """The dotted OID of an OBJECT IDENTIFIER element."""
    return decode_oid(expect(element, OBJECT_IDENTIFIER).content)


def decode_integer(content: bytes) -> int:
    """An INTEGER's content as a Python int (two's complement, big-endian)."""
    if not content:
        raise DerError("an integer is empty")
    return int.from_bytes(content, "big", signed=True)


def integer(element: Element) -> int:
    """The value of an INTEGER element."""
    return decode_integer(expect(element, INTEGER).content)


def boolean(element: Element) -> bool:
    """The value of a BOOLEAN element (any non-zero byte is true, as BER reads it)."""
    content = expect(element, BOOLEAN).content
    if len(content) != 1:
        raise DerError("a boolean is not one byte long")
    return content[0] != 0


def bit_string(element: Element) -> tuple[bytes, int]:
    """A BIT STRING's bytes and its number of unused bits at the end."""
    content = expect(element, BIT_STRING).content
    if not content:
        raise DerError("a bit string is empty")
    unused = content[0]
    if unused > 7 or (unused and len(content) == 1):
        raise DerError("a bit string says it has an impossible number of unused bits")
    return content[1:], unused


_VISIBLE = frozenset(range(0x20, 0x7F))
# Undecodable byte b is marked as the lone surrogate U+DC00 + b, which no valid decoding
# produces (Python's own "surrogateescape" does the same for bytes 0x80 to 0xFF).
_MARKER_BASE = 0xDC00
_MARKERS = re.compile("[\udc00-\udcff]")
_CODECS = {UTF8_STRING: "utf-8", BMP_STRING: "utf-16-be", UNIVERSAL_STRING: "utf-32-be"}
_TEXT_PROBLEMS = {
    UTF8_STRING: "text that is not valid UTF-8",
    BMP_STRING: "a BMPString that is not valid UTF-16",
    UNIVERSAL_STRING: "a UniversalString that is not valid UTF-32",
}
_ALLOWED_BYTES = {
    PRINTABLE_STRING: _PRINTABLE,
    VISIBLE_STRING: _VISIBLE,
    NUMERIC_STRING: _NUMERIC,
}


def _marker(byte: int) -> str:
    return chr(_MARKER_BASE + byte)


def _decode_units(content: bytes, width: int) -> str:
    """UTF-16-BE (width 2) or UTF-32-BE (width 4), undecodable units as markers."""
    characters: list[str] = []
    index = 0
    while index + width <= len(content):
        unit = int.from_bytes(content[index : index + width], "big")
        following = int.from_bytes(content[index + width : index + 2 * width], "big")
        if width == 2 and 0xD800 <= unit < 0xDC00 and 0xDC00 <= following < 0xE000:
            characters.append(chr(0x10000 + ((unit - 0xD800) << 10) + following - 0xDC00))
            index += 2 * width
            continue
        if unit < 0x110000 and not 0xD800 <= unit < 0xE000:
            characters.append(chr(unit))
        else:
            characters.extend(_marker(byte) for byte in content[index : index + width])
        index += width
    characters.extend(_marker(byte) for byte in content[index:])
    return "".join(characters)


def show_undecodable(text: str) -> str:
    """``text`` with the markers of ``decode_text(..., marked=True)`` shown as ``\\xNN``."""
    return _MARKERS.sub(lambda match: f"\\x{ord(match[0]) - _MARKER_BASE:02x}", text)


def decode_text(content: bytes, number: int, *, marked: bool = False) -> tuple[str, str]:
    """Text of the universal string type ``number`` and, if its bytes are wrong for it, why.

    Undecodable bytes come out as ``\\xNN`` escapes, so the text never holds a lone
    surrogate; with ``marked``, they come out as markers (lone surrogates U+DC00 to
    U+DCFF) for the caller to escape the text around them first, then to pass to
    ``show_undecodable``. TeletexString and the rare legacy types read as Latin-1,
    as most software reads them.
    """
    if number in _TEXT_PROBLEMS:
        try:
            return content.decode(_CODECS[number]), ""
        except UnicodeDecodeError:
            if number == UTF8_STRING:
                text = content.decode("utf-8", "surrogateescape")
            else:
                text = _decode_units(content, 2 if number == BMP_STRING else 4)
            return (text if marked else show_undecodable(text)), _TEXT_PROBLEMS[number]
    if number in (IA5_STRING, PRINTABLE_STRING, VISIBLE_STRING, NUMERIC_STRING):
        allowed = _ALLOWED_BYTES.get(number)
        if content.isascii() and (allowed is None or all(byte in allowed for byte in content)):
            return content.decode("ascii"), ""
        name = _UNIVERSAL_NAMES[number]
        article = "an" if name[0] in "AEIOU" else "a"
        text = content.decode("utf-8", "surrogateescape")
        return (text if marked else show_undecodable(text)), (
            f"{article} {name} with characters it may not hold"
        )
    return content.decode("latin-1"), ""


def text(element: Element, *, marked: bool = False) -> tuple[str, str]:
    """A string element's text and, if its bytes are wrong for its type, what is wrong.

    Raises DerError if the element is no string type.
    """
    if element.tag_class != UNIVERSAL or element.number not in STRING_TAGS:
        raise DerError(f"expected a string, found {element.describe()}")
    return decode_text(element.content, element.number, marked=marked)


def time_phrase(content: bytes) -> str:
    """A time's text quoted, if it is short printable ASCII; else its length."""
    if len(content) <= 32 and all(0x20 <= byte < 0x7F for byte in content):
        return f"'{content.decode('ascii')}'"
    return f"of {len(content)} bytes"


def time(element: Element) -> tuple[dt.datetime, bool]:
    """A UTCTime or GeneralizedTime as an aware UTC datetime, and whether it is in DER form.

    Accepts the forms BER allows (no seconds, an offset, fractions); raises DerError
    when the text is no time at all.
    """
    content = element.content
    if element.is_universal(UTC_TIME):
        match = _UTC_TIME.fullmatch(content)
        if match is None:
            raise DerError(f"the time {time_phrase(content)} is not a valid UTCTime")
        year = int(match[1])
        year += 1900 if year >= 50 else 2000
        fields = (year, int(match[2]), int(match[3]), int(match[4]), int(match[5]))
        seconds, fraction, zone = match[6], None, match[7]
        strict = seconds is not None and zone == b"Z"
    elif element.is_universal(GENERALIZED_TIME):
        match = _GENERALIZED_TIME.fullmatch(content)
        if match is None:
            raise DerError(f"the time {time_phrase(content)} is not a valid GeneralizedTime")
        fields = (int(match[1]), int(match[2]), int(match[3]), int(match[4]), int(match[5] or 0))
        seconds, fraction, zone = match[6], match[7], match[8]
        strict = (
            match[5] is not None
            and seconds is not None
            and zone == b"Z"
            and (fraction is None or not fraction.endswith(b"0"))
        )
    else:
        raise DerError(f"expected a time, found {element.describe()}")
    try:
        moment = dt.datetime(*fields, int(seconds or 0), tzinfo=dt.UTC)
        if fraction:
            moment += dt.timedelta(microseconds=int(fraction[:6].ljust(6, b"0")))
        if zone and zone != b"Z":
            sign = 1 if zone[:1] == b"+" else -1
            moment -= sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    except (ValueError, OverflowError) as exc:
        raise DerError(f"the time {time_phrase(content)} is not a real date") from exc
    return moment, strict
