"""Keys read from a JSON value Ollama hands over as it was decoded (a tool property's `items`, a call argument's value).

Ollama keeps a property's `items` as decoded JSON (`any` in its api), so `spec['items']['type']` is real data: a
mapping's key, or nothing when the value is a list, text, a number, a bool or null, or a mapping without the key
(Jinja reads all of these as undefined, and `index` fails in Go on anything but a map). The read is guarded by the
value's Go type and holds "" where Jinja's is undefined. A missing key and JSON null both read as Go's nil there, so
the read converts only where Jinja's answer is the same for each of them: its truth (nil, "" and the empty values are
false in both), and `==` / `!=` with text that is not empty (true only for the same text, which Go's `eq` cannot test
on a value that may be a number: its type and text are compared as one string). Any other use (printing it, `is
defined`, a type test, a key of it) is refused, naming the key. A key that names an attribute of a JSON value's Python
type (`items`, `count`, `real`, ...) is refused too: Jinja finds the method first on some values.
"""

from __future__ import annotations

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate.core import Core
from model_serving.serve.ollama.gotemplate.text import go_string

_JSON_TYPES: tuple[object, ...] = ({}, [], "", 0, 0.0, True, None)
_GO_MAP = "map[string]interface {}"


class JSONFields(Core):
    def json_field(self, node: nodes.Node | None) -> tuple[nodes.Node, str] | None:
        """(the JSON value, the key) of `v.key` / `v['key']` on a decoded JSON value; None for any other node."""
        if isinstance(node, nodes.Getattr):
            key: object = node.attr
        elif isinstance(node, nodes.Getitem) and not isinstance(node.arg, nodes.Slice):
            folded = self.fold(node.arg)
            key = folded.value if folded is not None else None
        else:
            return None
        if not isinstance(key, str) or self.kind(node.node) not in ("value", "scalar"):
            return None
        return node.node, key

    def field_read(self, node: nodes.Node) -> str:
        """The key's value where the value is a mapping that has it (nil for JSON null), "" anywhere else."""
        found = self.json_field(node)
        assert found is not None
        base, key = found
        if key.startswith("_") or any(hasattr(t, key) for t in _JSON_TYPES):
            raise self.fail(f"the key {key!r} of a JSON value (Jinja finds the method of that name on some values)", node, key)
        go, var = self.expr(base), self.fresh("field")
        self.emit(f'{{{{ {var} := "" }}}}{{{{ if eq (printf "%T" {go}) {go_string(_GO_MAP)} }}}}{{{{ {var} = index {go} {go_string(key)} }}}}'
                  "{{ end }}")
        return var

    def field_compare(self, left: nodes.Node, op: str, right: nodes.Node) -> str | None:
        """`v.key == 'text'` (or `!=`, either side) with text that is not empty: true for that text alone."""
        for field, other in ((left, right), (right, left)):
            if self.json_field(field) is None:
                continue
            text = self.fold(other)
            if op not in ("eq", "ne") or text is None or not isinstance(text.value, str) or not text.value:
                return None  # any other comparison is refused where the key is read
            var = self.field_read(field)
            test = f'(eq (printf "%T %v" {var} {var}) {go_string("string " + text.value)})'
            return test if op == "eq" else f"(not {test})"
        return None

    def field_refused(self, node: nodes.Node, use: str) -> Exception:
        found = self.json_field(node)
        key = found[1] if found is not None else ""
        return self.fail(f"the key {key!r} of a JSON value Ollama hands over as decoded (a property's items, a call argument) {use} "
                         "(converted: its truth, and == or != with text)", node, key)
