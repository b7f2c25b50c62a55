# -*- coding: utf-8 -*-

"""A small TOML writer for vfio-gen profiles.

Python's standard library reads TOML (tomllib, 3.11) but does not write it, and the collection
depends on nothing beyond ansible-core, so this module turns a dict of strings, booleans,
integers, floats, lists and dicts into TOML 1.0 text. What it follows, from the TOML 1.0.0
specification (docs/ansible.md lists the sections):

- basic strings are quoted with ``"``; ``"`` and ``\\`` are escaped, and so is every control
  character (U+0000 to U+001F and U+007F): ``\\b \\t \\n \\f \\r`` by name, the rest as ``\\uXXXX``;
- a bare key holds only ``A-Za-z0-9_-``; any other key is written as a quoted basic string;
- a table's plain keys come before its sub-tables (after a ``[table]`` header every key belongs
  to that table), and sub-tables are written as ``[parent.child]`` headers;
- a list of dicts is an array of tables (``[[name]]``); a dict inside a list of values is an
  inline table;
- TOML has no null: a None value is an error naming its key, never written as a string.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_NAMED_ESCAPES = {
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
    '"': '\\"',
    "\\": "\\\\",
}


class TomlWriteError(ValueError):
    """A value TOML cannot hold; the message names the key path."""


def quote_string(value):
    """A TOML basic string for ``value``."""
    out = ['"']
    for ch in value:
        if ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\u%04X" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_key(key, path):
    if not isinstance(key, str):
        raise TomlWriteError("%s: key %r is not a string" % (_name(path), key))
    if _BARE_KEY.match(key):
        return key
    return quote_string(key)


def _name(path):
    return ".".join(path) if path else "the profile"


def _is_table(value):
    return isinstance(value, dict)


def _is_table_array(value):
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(_is_table(v) for v in value)


def format_value(value, path):
    """An inline TOML value: string, boolean, integer, float, array or inline table."""
    if value is None:
        raise TomlWriteError(
            "%s is null, and TOML has no null value: remove the key or give it a value" % _name(path)
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, (list, tuple)):
        items = [format_value(v, path + ["[%d]" % i]) for i, v in enumerate(value)]
        return "[" + ", ".join(items) + "]"
    if isinstance(value, dict):
        items = [
            "%s = %s" % (format_key(k, path), format_value(v, path + [str(k)]))
            for k, v in value.items()
        ]
        return "{" + ", ".join(items) + "}" if items else "{}"
    raise TomlWriteError(
        "%s has a value of type %s, which TOML cannot hold" % (_name(path), type(value).__name__)
    )


def _write_table(table, keys, path, header, lines):
    """Appends ``table`` to ``lines``: its plain keys under ``header``, then its sub-tables.
    ``keys`` are the table's key names (for headers), ``path`` the same with list indices (for
    error messages)."""
    plain = [(k, v) for k, v in table.items() if not _is_table(v) and not _is_table_array(v)]
    nested = [(k, v) for k, v in table.items() if _is_table(v) or _is_table_array(v)]
    if header is not None:
        if lines:
            lines.append("")
        lines.append(header)
    for key, value in plain:
        lines.append("%s = %s" % (format_key(key, path), format_value(value, path + [str(key)])))
    for key, value in nested:
        sub_keys = keys + [format_key(key, path)]
        sub_path = path + [str(key)]
        dotted = ".".join(sub_keys)
        if _is_table(value):
            # An empty sub-table still gets its header: [vfio] with nothing in it is valid.
            _write_table(value, sub_keys, sub_path, "[%s]" % dotted, lines)
        else:
            for i, item in enumerate(value):
                _write_table(item, sub_keys, sub_path + ["[%d]" % i], "[[%s]]" % dotted, lines)


def dumps(document, comment=None):
    """TOML text for ``document`` (a dict), one trailing newline; ``comment`` lines go first."""
    if not isinstance(document, dict):
        raise TomlWriteError("the profile must be a dict of tables, not %s" % type(document).__name__)
    lines = []
    if comment:
        lines.extend("# " + line if line else "#" for line in comment.splitlines())
    _write_table(document, [], [], None, lines)
    return "\n".join(lines) + "\n"
