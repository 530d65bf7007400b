"""An extension's description (its class docstring) as a page shows it.

Handler classes describe themselves in their docstrings, written for Python readers in a
mix of reStructuredText and Markdown: ``code``, :class:`Name` roles, **bold**, "- " and
"1. " lists, ``Example::`` blocks. Shown raw, an administrator reads backticks and roles.
:func:`docstring_html` turns the few constructs docstrings use into simple, escaped HTML
(paragraphs, lists, ``<code>``, ``<strong>``, ``<em>``, ``<pre>``) and drops the rest of
the markup; :func:`docstring_summary` gives the first paragraph as plain text, for lists.

The text is a third party's: everything is escaped first and only the tags above are
made, so no markup of its own reaches a page.
"""

from __future__ import annotations

import html
import inspect
import re

# A role with its target: :class:`~pkg.Name`, :func:`name`, :ref:`text <target>`.
_ROLE = re.compile(r":[a-zA-Z][\w:+-]*:`([^`]+)`")
# Inline literals: ``text`` (reStructuredText) or `text` (Markdown / default role).
_CODE = re.compile(r"``(.+?)``|`([^`]+)`")
# A hyperlink reference, `text <url>`_, reads as its text.
_LINK = re.compile(r"`([^`<]+?)\s*<[^`>]+>`__?")
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*\\])\*(?=[^\s*])([^*\n]+?)(?<=\S)\*(?![\w*])")
_BULLET = re.compile(r"^(\s*)([-*+•])\s+(.*)$")
_NUMBERED = re.compile(r"^(\s*)(\d{1,3})[.)]\s+(.*)$")
_UNDERLINE = re.compile(r"^([-=~^\"'`#*+])\1{2,}\s*$")


def _role_text(match: re.Match[str]) -> str:
    target = match.group(1)
    titled = re.fullmatch(r"(.+?)\s*<[^>]+>", target)
    if titled:
        return f"``{titled.group(1)}``"
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"``{target}``"


def _inline(text: str) -> str:
    """One paragraph's text as escaped HTML with its inline markup converted."""
    text = _LINK.sub(r"\1", text)
    text = _ROLE.sub(_role_text, text)
    parts: list[str] = []
    position = 0
    for match in _CODE.finditer(text):
        parts.append(_emphasis(text[position : match.start()]))
        literal = match.group(1) if match.group(1) is not None else match.group(2)
        parts.append(f"<code>{html.escape(literal)}</code>")
        position = match.end()
    parts.append(_emphasis(text[position:]))
    return "".join(parts)


def _emphasis(text: str) -> str:
    escaped = html.escape(text)
    escaped = _STRONG.sub(r"<strong>\1</strong>", escaped)
    return _EMPHASIS.sub(r"<em>\1</em>", escaped)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _marker(line: str) -> tuple[str, int, str] | None:
    """("ul" or "ol", the marker's indentation, the item's first text) for a list line."""
    bullet = _BULLET.match(line)
    if bullet and not _UNDERLINE.match(line.strip()):
        return "ul", len(bullet.group(1)), bullet.group(3)
    numbered = _NUMBERED.match(line)
    if numbered:
        return "ol", len(numbered.group(1)), numbered.group(3)
    return None


def _blocks(lines: list[str]) -> list[str]:
    """The HTML of a run of lines: paragraphs, lists, literal blocks, headings."""
    out: list[str] = []
    i = 0
    literal_next = False
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        base = _indent(line)
        if literal_next and out:
            # The indented block after a paragraph ending in "::" is shown as it is.
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) >= base):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            shift = min(_indent(b) for b in block if b.strip())
            text = "\n".join(b[shift:] for b in block)
            out.append(f"<pre>{html.escape(text)}</pre>")
            literal_next = False
            continue
        marker = _marker(line)
        if marker is not None:
            kind, indent, _ = marker
            items: list[str] = []
            while i < len(lines):
                current = _marker(lines[i])
                if current is None or current[0] != kind or current[1] != indent:
                    break
                body = [" " * (indent + 2) + current[2]]
                i += 1
                while i < len(lines):
                    following = lines[i]
                    if following.strip() and _indent(following) <= indent:
                        break
                    if not following.strip():
                        # A blank line ends the item unless indented text follows.
                        ahead = next((x for x in lines[i + 1 :] if x.strip()), None)
                        if ahead is None or _indent(ahead) <= indent:
                            break
                    body.append(following)
                    i += 1
                shift = min(_indent(b) for b in body if b.strip())
                inner = _blocks([b[shift:] for b in body])
                # A one-paragraph item reads without its <p>.
                if len(inner) == 1 and inner[0].startswith("<p>"):
                    inner = [inner[0][3:-4]]
                items.append(f"<li>{''.join(inner)}</li>")
                # Blank lines between two items of the same list keep the list going.
                ahead = next((x for x in lines[i:] if x.strip()), None)
                if ahead is not None and _same_list(ahead, kind, indent):
                    while not lines[i].strip():
                        i += 1
            out.append(f"<{kind}>{''.join(items)}</{kind}>")
            continue
        paragraph: list[str] = []
        while i < len(lines) and lines[i].strip() and _marker(lines[i]) is None:
            if paragraph and _UNDERLINE.match(lines[i].strip()):
                # A section title underlined with ---- or ====.
                title = " ".join(p.strip() for p in paragraph)
                out.append(f"<p><strong>{_inline(title)}</strong></p>")
                paragraph = []
                i += 1
                continue
            paragraph.append(lines[i].strip())
            i += 1
        if not paragraph:
            continue
        text = " ".join(paragraph)
        if text.endswith("::"):
            literal_next = True
            text = text[:-2].rstrip()
            text = f"{text}:" if text and not text.endswith(":") else text
        if text:
            out.append(f"<p>{_inline(text)}</p>")
    return out


def _same_list(line: str, kind: str, indent: int) -> bool:
    marker = _marker(line)
    return marker is not None and marker[0] == kind and marker[1] == indent


def docstring_html(doc: str) -> str:
    """The docstring as escaped HTML: paragraphs, lists, code, emphasis, literal blocks."""
    text = inspect.cleandoc(doc or "").replace("\t", "    ")
    if not text:
        return ""
    return "\n".join(_blocks(text.splitlines()))


def docstring_summary(doc: str, *, limit: int = 200) -> str:
    """The first paragraph as plain text (markup dropped), cut to ``limit`` characters."""
    text = inspect.cleandoc(doc or "")
    first = text.split("\n\n", 1)[0]
    first = " ".join(first.split())
    first = _LINK.sub(r"\1", first)
    first = _ROLE.sub(lambda m: _role_text(m).strip("`"), first)
    first = _CODE.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), first)
    first = _STRONG.sub(r"\1", first)
    first = _EMPHASIS.sub(r"\1", first)
    if len(first) > limit:
        first = first[: limit - 1].rsplit(" ", 1)[0] + "…"
    return first
