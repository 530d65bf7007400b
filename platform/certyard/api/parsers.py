"""The APIs' JSON parser: refuses bodies nested too deeply before Python's json reads them,
and hands the body over marked as JSON, so serializers type it strictly (``strict``).

``json.loads`` recurses once per level and raises ``RecursionError`` near a thousand
levels; a few kilobytes of ``[`` would otherwise be a 500. No Certyard body nests
beyond a handful of levels.
"""

import codecs
import json
import re
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json as drf_json

from certyard.api import strict

strict.install()

# The deepest nesting of arrays and objects a body may have.
JSON_MAX_DEPTH = 64

# Outside a string: a bracket or the quote opening a string. From inside a string: the rest
# of it, escapes included, up to its closing quote (matched at one position only: linear).
_OUTSIDE_STRING = re.compile(r'[\[\]{}"]')
_REST_OF_STRING = re.compile(r'(?:[^"\\]++|\\.)*+"', re.DOTALL)


def json_depth_exceeds(text: str, limit: int = JSON_MAX_DEPTH) -> bool:
    """Whether ``text`` nests arrays and objects deeper than ``limit``.

    One pass that jumps from bracket to string to bracket (the regular expressions do the
    scanning), so a large flat body costs little. Malformed text is left to the JSON
    parser: this only answers the depth question.
    """
    depth = 0
    position = 0
    while True:
        found = _OUTSIDE_STRING.search(text, position)
        if found is None:
            return False
        char = found.group()
        position = found.end()
        if char == '"':
            rest = _REST_OF_STRING.match(text, position)
            if rest is None:
                return False  # an unterminated string: the JSON parser says so
            position = rest.end()
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, with the nesting depth checked before ``json.loads`` sees the body."""

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"the body is not valid {encoding} text: {exc}") from exc
        if json_depth_exceeds(text):
            raise ParseError(
                f"the JSON body nests arrays or objects more than {JSON_MAX_DEPTH} levels deep",
                code="too_deep",
            )
        parse_constant = drf_json.strict_constant if self.strict else None
        try:
            body = json.loads(text, parse_constant=parse_constant)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        return strict.json_body(body)
