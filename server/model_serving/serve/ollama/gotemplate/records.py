"""A dict with constant keys built at render time (Cohere's `{"content": message.content}`), held field by field.

Go templates have no dict literal, but such a dict is only ever read by its keys or written by `tojson`: each value is
kept in a Go variable of its own (`$wrapper_k_content`), a read of a key is that variable, and `tojson` writes the
keys in their order with each value written as its kind is.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate.core import Core

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def record_keys(value: nodes.Node | None) -> list[str] | None:
    """The keys of a dict literal whose keys are all constant identifiers, else None."""
    if not isinstance(value, nodes.Dict):
        return None
    keys = [p.key.value if isinstance(p.key, nodes.Const) else None for p in value.items]
    return [str(k) for k in keys] if all(isinstance(k, str) and _KEY.match(k) for k in keys) else None


class Records(Core):
    def assign_record(self, name: str, value: nodes.Node, node: nodes.Node) -> str | None:
        keys = record_keys(value)
        known = self.records.get(name)
        if keys is None:
            if known is not None:
                raise self.fail("a name that holds a dict built at render time and, elsewhere, another value", node, "set")
            return None
        if known is not None and list(known) != keys:
            raise self.fail("a name that holds dicts of different keys built at render time", node, "set")
        assert isinstance(value, nodes.Dict)
        out, fields = [], {}
        for pair, key in zip(value.items, keys, strict=True):
            fields[key] = self.kind(pair.value)
            if fields[key] not in ("string", "int", "value", "strings", "values"):
                raise self.fail(f"a dict built at render time holding a {fields[key] or 'value of unknown type'}", pair, key)
            out.append(f"{{{{ ${name}_k_{key} = {self.expr(pair.value)} }}}}")
        self.records[name] = fields
        self.kinds[name] = "record"
        return "".join(out)

    def record_field(self, base: nodes.Node, attr: str) -> tuple[str, str | None] | None:
        """(Go variable, kind) of a key read from a record, else None."""
        if not (isinstance(base, nodes.Name) and self.kinds.get(base.name) == "record" and base.name in self.records):
            return None
        fields = self.records[base.name]
        if attr not in fields:
            return '""', None  # a key the dict does not have reads as undefined, empty
        return f"${base.name}_k_{attr}", fields[attr]

    def write_record(self, name: str, style: Any, level: int) -> str:
        out = [self.put("{")]  # type: ignore[attr-defined]  # ToolJSON's writer, joined in Converter
        for i, (key, kind) in enumerate(self.records[name].items()):
            lead = ("" if i == 0 else style.item) + style.newline(level + 1) + f'"{key}"{style.key}'
            out.append(self.put(lead) + self.write(kind or "value", f"${name}_k_{key}", style, level + 1))  # type: ignore[attr-defined]
        out.append(self.put(style.newline(level) + "}"))  # type: ignore[attr-defined]
        return "".join(out)
