"""`tojson` on Ollama's tool data, written the way Python's json.dumps writes the same dicts.

Ollama's own `json` helper writes compact JSON in Go's struct field order; transformers' `tojson`
writes `", "`/`": "` separators (or an indent) in the order the dicts were built. So the converter
writes the JSON itself: the keys in the order OpenAI-style tool dicts carry them, strings quoted
with `printf "%q"` (JSON's escapes for printable text), objects and lists with Jinja's separators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate import kinds as K
from model_serving.serve.ollama.gotemplate.core import Core
from model_serving.serve.ollama.gotemplate.text import go_string

# kind -> [(JSON key, Go field, kind, optional)] in the order tool dicts are written
SCHEMAS = {
    "tool": [("type", "Type", "string", False), ("function", "Function", "toolfunc", False)],
    "toolfunc": [("name", "Name", "string", False), ("description", "Description", "string", True), ("parameters", "Parameters", "params", False)],
    "params": [("type", "Type", "string", False), ("properties", "Properties", "properties", False), ("required", "Required", "strings", True)],
    # transformers' get_json_schema order; Ollama keeps no other keys of a property (nested properties are not written)
    "property": [("type", "Type", "ptype", False), ("items", "Items", "value", True), ("description", "Description", "string", True),
                 ("enum", "Enum", "values", True)],
    "callfunc": [("name", "Name", "string", False), ("arguments", "Arguments", "args", False)],
}
LISTS = {"tools": "tool", "toolcalls": "toolcall", "strings": "string", "values": "value"}
MAPS = {"properties": "property", "args": "value"}
ASCII_NOTE = ("tojson(ensure_ascii=True) writes characters beyond ASCII as \\u escapes; one beyond the Basic Multilingual Plane "
              "(an emoji) comes out as Go's \\U00XXXXXX, where Python writes a surrogate pair.")
JSON_NOTE = ("`tojson` of tool data is written key by key in the order tool dicts carry them (type, function, name, description, "
             "parameters, properties, required; a property's type, items, description, enum); values nested two levels "
             "deep inside arguments or items as compact JSON; a property's own nested properties are not written.")


@dataclass
class Style:
    item: str
    key: str
    indent: int | None

    def newline(self, level: int) -> str:
        return "" if self.indent is None else "\n" + " " * (self.indent * level)


class ToolJSON(Core):
    def tojson(self, node: nodes.Filter) -> str:
        assert node.node is not None  # x_Filter refused the filter block (a filter with no subject)
        # jinja2 annotates a filter's kwargs as Pair; its parser builds Keyword nodes (a name and a value)
        options = {kw.key: self.fold(kw.value) for kw in cast("list[nodes.Keyword]", node.kwargs)}
        if any(v is None for v in options.values()) or node.args:
            raise self.fail("tojson with options computed at render time", node, "tojson")
        values = {k: v.value for k, v in options.items() if v is not None}
        if values.get("sort_keys"):
            raise self.fail("tojson(sort_keys=True)", node, "tojson")
        self.json_ascii = bool(values.get("ensure_ascii"))
        if self.json_ascii:
            self.note(ASCII_NOTE)
        indent = values.get("indent")
        item_sep, key_sep = values.get("separators") or ((", " if indent is None else ","), ": ")
        kind = self.kind(node.node)
        view = self.seq_view(node.node) if self.is_view(node.node) else None
        if kind is None or kind in ("messages", "message", "bool"):
            raise self.fail(f"tojson of {kind or 'a value of unknown type'} at render time", node, "tojson")
        if kind == "anyof" or kind in K.CASED_LISTS:  # a property's anyOf, a JSON value recased item by item: not written yet
            what = "a property's anyOf" if kind == "anyof" else "a recased list"
            raise self.fail(f"tojson of {what} at render time", node, "tojson")
        self.note(JSON_NOTE)
        if kind not in ("string", "strings", "values", "ptype", "int", "value", "record"):  # objects hold properties or arguments
            self.note(K.SORTED_KEYS_NOTE)
        var = self.fresh("json")
        self.json_var = var
        style = Style(item_sep, key_sep, indent)
        if kind == "record":
            assert isinstance(node.node, nodes.Name)  # only a name holds a record
            body = self.write_record(node.node.name, style, 0)
        else:
            body = self.write_view(view, style) if view is not None else self.write(kind, self.expr(node.node), style, 0)
        self.emit(f'{{{{ {var} := "" }}}}{body}')
        return var

    def quoted(self, go: str) -> str:
        return _quoted(go, getattr(self, "json_ascii", False))

    def put(self, text: str) -> str:
        return f"{{{{ {self.json_var} = print {self.json_var} {go_string(text)} }}}}" if text else ""

    def put_value(self, go: str) -> str:
        return f"{{{{ {self.json_var} = print {self.json_var} {go} }}}}"

    def write(self, kind: str, go: str, style: Style, level: int) -> str:
        if kind == "string":
            return self.put_value(self.quoted(go))
        if kind == "ptype":
            return self.put_value(f"(json {go})")  # one type name, quoted
        if kind == "int":
            return self.put_value(go)
        if kind in ("value", "scalar"):
            # generic JSON as Ollama decodes it: text quoted as JSON quotes it; one level of lists and objects (Go maps, so
            # sorted keys) with Jinja's separators; anything else, or deeper, as Go's encoder writes it
            typ = f'(printf "%T" {go})'
            text, other = self.put_value(self.quoted(go)), self.put_value(f"(json {go})")
            if kind == "scalar":
                return f'{{{{ if eq {typ} "string" }}}}{text}{{{{ else }}}}{other}{{{{ end }}}}'
            return (f'{{{{ if eq {typ} "string" }}}}{text}{{{{ else if eq {typ} "[]interface {{}}" }}}}{self.write_list("scalar", go, style, level)}'
                    f'{{{{ else if eq {typ} "map[string]interface {{}}" }}}}{self.write_map("scalar", go, style, level)}{{{{ else }}}}{other}{{{{ end }}}}')
        if kind == "toolcall":
            call = self.write("callfunc", f"{go}.Function", style, level + 1)
            head = self.put("{" + style.newline(level + 1))
            ident_value = self.put('"id"' + style.key) + self.put_value(self.quoted(f"{go}.ID")) + self.put(style.item + style.newline(level + 1))
            ident = f"{{{{ if {go}.ID }}}}{ident_value}{{{{ end }}}}"
            typ = self.put(f'"type"{style.key}"function"{style.item}{style.newline(level + 1)}"function"{style.key}')
            return head + ident + typ + call + self.put(style.newline(level) + "}")
        if kind in SCHEMAS:
            return self.write_object(kind, go, style, level)
        if kind in LISTS:
            return self.write_list(LISTS[kind], go, style, level)
        if kind in MAPS:
            return self.write_map(MAPS[kind], go, style, level)
        raise self.fail(f"tojson of a {kind} value", None)

    def write_object(self, kind: str, go: str, style: Style, level: int) -> str:
        out = [self.put("{")]
        for i, (key, field, sub, optional) in enumerate(SCHEMAS[kind]):
            lead = ("" if i == 0 else style.item) + style.newline(level + 1) + f'"{key}"{style.key}'
            part = self.put(lead) + self.write(sub, f"{go}.{field}", style, level + 1)
            out.append(f"{{{{ if {go}.{field} }}}}{part}{{{{ end }}}}" if optional else part)
        out.append(self.put(style.newline(level) + "}"))
        return "".join(out)

    def write_list(self, element: str, go: str, style: Style, level: int) -> str:
        i, item = self.fresh("k"), self.fresh("v")
        sep = f"{{{{ if {i} }}}}{self.put(style.item)}{{{{ end }}}}{self.put(style.newline(level + 1))}"
        items = f"{{{{ range {i}, {item} := {go} }}}}{sep}{self.write(element, item, style, level + 1)}{{{{ end }}}}"
        return f'{{{{ if {go} }}}}{self.put("[")}{items}{self.put(style.newline(level) + "]")}{{{{ else }}}}{self.put("[]")}{{{{ end }}}}'

    def write_view(self, view: Any, style: Style, level: int = 0) -> str:
        """A filtered or mapped list (selectattr, map(attribute=...)): only kept items, each item's field if mapped."""
        item, started = self.fresh("v"), self.fresh("s")
        value = f"{item}.{view.attr}" if view.attr else item
        sep = f"{{{{ if {started} }}}}{self.put(style.item)}{{{{ end }}}}{{{{ {started} = true }}}}{self.put(style.newline(level + 1))}"
        one = sep + self.write(view.element, value, style, level + 1)
        if view.pred is not None:
            one = f"{{{{ if {view.pred(item)} }}}}{one}{{{{ end }}}}"
        head = f"{{{{ {started} := false }}}}"
        items = f"{{{{ range {item} := {view.base} }}}}{one}{{{{ end }}}}"
        # "[]" when nothing was kept: the opening bracket is written first, so an empty list closes at once
        close = f"{{{{ if {started} }}}}{self.put(style.newline(level) + ']')}{{{{ else }}}}{self.put(']')}{{{{ end }}}}"
        return head + self.put("[") + items + close

    def write_map(self, element: str, go: str, style: Style, level: int) -> str:
        key, item, started = self.fresh("k"), self.fresh("v"), self.fresh("s")
        sep = f"{{{{ if {started} }}}}{self.put(style.item)}{{{{ end }}}}{{{{ {started} = true }}}}{self.put(style.newline(level + 1))}"
        head = self.put_value(self.quoted(key)) + self.put(style.key)
        items = f"{{{{ {started} := false }}}}{{{{ range {key}, {item} := {go} }}}}{sep}{head}{self.write(element, item, style, level + 1)}{{{{ end }}}}"
        return f'{{{{ if {go} }}}}{self.put("{")}{items}{self.put(style.newline(level) + "}")}{{{{ else }}}}{self.put("{}")}{{{{ end }}}}'


def _quoted(go: str, ascii_only: bool = False) -> str:
    if ascii_only:
        return f'(printf "%+q" {go})'  # \u escapes for what is not ASCII, as json.dumps(ensure_ascii=True) writes
    return f'(printf "%q" {go})'
