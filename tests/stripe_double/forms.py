"""Decoding of Stripe's bracketed form encoding (a[b]=1, a[0]=x, a[]=y) into nested dicts and lists."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """A parameter name the double cannot place, reported back as Stripe reports malformed params."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _split(name: str) -> list[str]:
    """Split 'a[b][0]' into ['a', 'b', '0'] so nesting follows the brackets."""
    head, sep, rest = name.partition("[")
    if not sep:
        return [name]
    rest = "[" + rest
    parts = [head]
    pos = 0
    for match in _SEGMENT.finditer(rest):
        if match.start() != pos:
            raise FormError(name, f"Invalid parameter name: {name}")
        parts.append(match.group(1))
        pos = match.end()
    if pos != len(rest):
        raise FormError(name, f"Invalid parameter name: {name}")
    return parts


def _listify(node):
    """Turn dicts whose keys are all indices into lists, because the SDK sends lists as a[0]=, a[1]=."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            node[key] = _listify(value)
        if node and all(isinstance(k, str) and k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
        return node
    if isinstance(node, list):
        return [_listify(v) for v in node]
    return node


def decode(query: str | bytes) -> dict:
    """Decode a query string or form body the way Stripe reads it, keeping '' (Stripe's 'unset')."""
    if isinstance(query, bytes):
        query = query.decode("utf-8")
    root: dict = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        parts = _split(name)
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                if not isinstance(node, list):
                    raise FormError(name, f"Invalid array: {name}")
                if last:
                    node.append(value)
                    break
                node.append({})
                node = node[-1]
                continue
            if isinstance(node, list):
                raise FormError(name, f"Invalid array: {name}")
            if last:
                node[part] = value
                break
            nxt_is_append = parts[i + 1] == ""
            existing = node.get(part)
            if existing is None or isinstance(existing, str):
                existing = [] if nxt_is_append else {}
                node[part] = existing
            node = existing
    return _listify(root)
