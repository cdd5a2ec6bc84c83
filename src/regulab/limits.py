"""How deep the tables and lists a user hands in may nest, checked before anything recurses.

Python's parsers (``tomllib``, ``json``) and regulab's own walks over a config recurse once per
level; a TOML table header 3000 keys deep, an array 5000 deep or a JSON spec 10^5 deep would
end in a ``RecursionError`` and a 3000-line traceback. Every file, ``--set`` value and spec
is measured first, without recursing, and refused with one line when it nests deeper than
``MAX_DEPTH`` -- far more than any config needs (a config is 3 levels: a section, a key, a
table or list as its value).

``text_depth`` scans TOML or JSON text: it counts the brackets (``[``, ``{``) open outside
strings and comments, plus the dots of a dotted key (``a.b.c = 1``, ``[a.b.c]``), an upper
bound of how deep the parsed value nests. ``value_depth`` measures a value already parsed (a
dict given from Python).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regulab.errors import ConfigError

__all__ = ["MAX_DEPTH", "text_depth", "value_depth", "check_text_depth", "check_value_depth"]

MAX_DEPTH = 32      # levels of nested tables and lists a config, study, sweep file or spec may hold

_OPEN, _CLOSE = "[{", "]}"
_RESET = "=,\n" + _OPEN + _CLOSE      # what ends a dotted key


def text_depth(text: str, syntax: str = "toml", stop: int = MAX_DEPTH) -> int:
    """An upper bound of how deep ``text`` (``syntax``: "toml" or "json") nests: open brackets
    outside strings and comments, plus the dots of the dotted key being read; the scan stops
    once it passes ``stop``. Linear in the text, no recursion."""
    depth = deepest = dots = 0
    i, n = 0, len(text)
    toml = syntax == "toml"
    while i < n:
        c = text[i]
        if c == '"' or (toml and c == "'"):
            i = _string_end(text, i, toml)
            continue
        if toml and c == "#":
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth = max(depth - 1, 0)
        elif c == "." and toml:
            dots += 1
        if c in _RESET:
            dots = 0
        deepest = max(deepest, depth + dots)
        if deepest > stop:
            return deepest
        i += 1
    return deepest


def _string_end(text: str, i: int, toml: bool) -> int:
    """The index after the string that opens at ``i`` (basic or literal, single- or
    multi-line; an unterminated one runs to the end: the parser reports it)."""
    q = text[i]
    if toml and text.startswith(q * 3, i):
        end = text.find(q * 3, i + 3)
        while end >= 0 and q == '"' and _escaped(text, end):
            end = text.find(q * 3, end + 1)
        return len(text) if end < 0 else end + 3
    j = i + 1
    while j < len(text) and text[j] != q and text[j] != "\n":
        j += 2 if text[j] == "\\" and q == '"' else 1
    return j + 1


def _escaped(text: str, i: int) -> bool:
    """Whether the character at ``i`` follows an odd number of backslashes."""
    k = i
    while k > 0 and text[k - 1] == "\\":
        k -= 1
    return (i - k) % 2 == 1


def value_depth(value: Any, stop: int = MAX_DEPTH) -> int:
    """How deep ``value`` nests (a scalar 0, ``[1]`` 1, ``{"a": [1]}`` 2), measured without
    recursion; the walk stops once it passes ``stop``."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, Mapping):
            children = v.values()
        elif isinstance(v, (list, tuple)):
            children = v
        else:
            continue
        deepest = max(deepest, d + 1)
        if deepest > stop:
            return deepest
        todo.extend((x, d + 1) for x in children)
    return deepest


def _refuse(what: str) -> ConfigError:
    return ConfigError(f"{what} nests more than {MAX_DEPTH} levels deep; allowed: at most "
                       f"{MAX_DEPTH} levels of tables and lists (regulab.limits.MAX_DEPTH)")


def check_text_depth(text: str, what: str, syntax: str = "toml") -> None:
    """Refuse ``text`` (what: "config file 'c.toml'") nesting deeper than ``MAX_DEPTH``."""
    if text_depth(text, syntax) > MAX_DEPTH:
        raise _refuse(what)


def check_value_depth(value: Any, what: str) -> None:
    """Refuse a parsed ``value`` nesting deeper than ``MAX_DEPTH``."""
    if value_depth(value) > MAX_DEPTH:
        raise _refuse(what)
