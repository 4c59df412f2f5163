"""The kind of value each Jinja expression has once Ollama's data stands in for transformers' dicts."""

from __future__ import annotations

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate import kinds as K
from model_serving.serve.ollama.gotemplate.core import Core, is_undefined

_LOOP = {"index": "int", "index0": "int", "length": "int", "revindex": "int", "revindex0": "int", "first": "bool", "last": "bool"}
_BOOL = (nodes.Compare, nodes.Test, nodes.Not)
_TEXT_FILTERS = {"tojson", "string", "trim", "join", "upper", "lower", "capitalize", "title", "replace", "indent"}


class Infer(Core):
    def kind(self, node: nodes.Node | None) -> str | None:
        if node is None:
            return None
        if isinstance(node, nodes.Name) and node.name in self.aliases:
            return self.kind(self.aliases[node.name])
        if not self.depends(node):
            folded = self.fold(node)
            return _value_kind(folded.value) if folded is not None else None
        if isinstance(node, nodes.Name):
            return self.kinds.get(node.name)
        if isinstance(node, _BOOL):
            return "bool"
        if isinstance(node, (nodes.And, nodes.Or)):
            # Python's and/or (like Go's) give one of their operands, not a bool
            left, right = self.kind(node.left), self.kind(node.right)
            if left != right and _empty(self.fold(node.right)):
                return left  # `message.tool_calls or []`: the empty default holds no items of another kind
            return left if left == right else None
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            return self.member_kind(node)
        if isinstance(node, nodes.Filter):
            return self.filter_kind(node)
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            attr = node.node.attr
            if attr in ("startswith", "endswith"):
                return "bool"
            if attr == "pop" and self.queue_of(node.node.node) is not None:
                return "string"
            if attr == "get" and node.args and isinstance(node.args[0], nodes.Const):
                return K.FIELDS.get(self.kind(node.node.node) or "", {}).get(node.args[0].value, (None, None))[1]
            return "string" if attr in ("strip", "lstrip", "rstrip", "upper", "lower", "replace") else None
        if isinstance(node, nodes.Add):
            left, right = self.kind(node.left), self.kind(node.right)
            return "int" if left == right == "int" else (left if left in K.SEQUENCES else "string")
        if isinstance(node, (nodes.Sub, nodes.Mod)):
            return "int"
        if isinstance(node, nodes.Concat):
            return "string"
        if isinstance(node, nodes.CondExpr):
            return self.kind(node.expr1) or self.kind(node.expr2)
        return None

    def member_kind(self, node: nodes.Getattr | nodes.Getitem) -> str | None:
        base = node.node
        if isinstance(node, nodes.Getitem):
            if self.is_think_split(base) or self.is_built_split(base, node.arg) or self.split_of(base) is not None:
                return "string"
            if isinstance(node.arg, nodes.Slice):
                return self.kind(base)
            key = self.fold(node.arg)
            if key is None or not isinstance(key.value, str):
                seq = self.kind(base) or ""
                return {"args": "value", "properties": "property", "string": "string"}.get(seq) or K.ELEMENT.get(seq)
            attr = key.value
        else:
            attr = node.attr
        if isinstance(base, nodes.Name) and base.name == "loop":
            if attr in ("previtem", "nextitem") and self.loops:
                return self.kinds.get(self.loops[-1].target[1:])
            return _LOOP.get(attr)
        if isinstance(base, nodes.Name) and base.name in self.namespaces:
            return self.kinds.get(f"{base.name}_{attr}")
        field_of_record = self.record_field(base, attr)
        if field_of_record is not None:
            return field_of_record[1]
        kind = self.kind(base)
        if kind in ("value", "scalar") and self.is_present_field(node):
            return "value"
        if (kind, attr) in K.FIXED:
            return "string"
        return K.FIELDS.get(kind or "", {}).get(attr, (None, None))[1]

    def filter_kind(self, node: nodes.Filter) -> str | None:
        name = node.name
        if name in ("length", "count"):
            return "int"
        if name in _TEXT_FILTERS:
            return "string"
        if name in ("first", "last"):
            return K.ELEMENT.get(self.kind(node.node) or "")
        if name in ("list", "selectattr", "rejectattr", "select", "reject", "default", "safe"):
            return self.kind(node.node)
        if name == "map" and node.node is not None:
            attr = next((kw.value.value for kw in node.kwargs if kw.key == "attribute" and isinstance(kw.value, nodes.Const)), "")
            element = K.FIELDS.get(K.ELEMENT.get(self.kind(node.node) or "", ""), {}).get(attr, (None, None))[1]
            return next((s for s, e in K.ELEMENT.items() if e == element), None)
        return None


def _empty(folded: object) -> bool:
    value = getattr(folded, "value", False)
    return value is None or is_undefined(value) or value in ([], {}, ()) or value == ""


def _value_kind(value: object) -> str | None:
    if is_undefined(value) or value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "values"
    return "mapping" if isinstance(value, dict) else None
