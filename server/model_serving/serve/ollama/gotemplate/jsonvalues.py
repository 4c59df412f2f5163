"""More reads of a key of a decoded JSON value (a schema nested in a property's items): its first item, its length, its
items joined, and text added to it, each as Jinja reads it on every JSON type (gpt-oss's and Apertus's `type[0]`,
`type | length > 1`, `type | join(" | ")`, `enum | join('" | "')`, `"// " + variant.description`).

Where Jinja fails (a length or a join of a number, text added to a number, an item of a missing key) the Go expression
fails too, lazily, only where Jinja evaluates it: `len 0` is an error in Go.
"""

from __future__ import annotations

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate.core import Core
from model_serving.serve.ollama.gotemplate.text import go_string

_LIST, _MAP = '"[]interface {}"', '"map[string]interface {}"'
_FAIL = "(len 0)"  # an error where Go evaluates it: Jinja fails at the same point
_OPS = {"gt": lambda a, b: a > b, "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
        "eq": lambda a, b: a == b, "ne": lambda a, b: a != b}


class JSONValues(Core):
    def json_key(self, node: nodes.Node | None) -> tuple[str, str] | None:
        """(value, whether the key is there) Go variables of a key of a JSON value, else None."""
        if node is None or self.json_field(node) is None:
            return None
        var, there, _ = self.json_field_parts(node)
        return var, there

    def json_first_defined(self, node: nodes.Test) -> str | None:
        """`v.key[0] is defined`: a list or text that is not empty; Jinja fails on a missing key's [0], and so does Go."""
        item = node.node
        if not (isinstance(item, nodes.Getitem) and node.name in ("defined", "undefined") and not node.args):
            return None
        key, read = self.fold(item.arg), self.json_key(item.node)
        if read is None or key is None or key.value != 0:
            return None
        var, there = read
        test = (f'(or (and (eq (printf "%T" {var}) {_LIST} "string") (gt (len {var}) 0)) '
                f"(and (not {there}) {_FAIL}))")
        return test if node.name == "defined" else f"(not {test})"

    def json_first(self, node: nodes.Getitem) -> str | None:
        """`v.key[0]`: str() of a list's first item, text's first character, nothing on any other value (Jinja's undefined)."""
        key, read = self.fold(node.arg), self.json_key(node.node)
        if read is None or key is None or key.value != 0:
            return None
        var, there = read
        out, item = self.fresh("first"), self.fresh("it")
        self.emit(f'{{{{ {out} := "" }}}}{{{{ if and (eq (printf "%T" {var}) {_LIST}) (gt (len {var}) 0) }}}}{{{{ {item} := index {var} 0 }}}}'
                  f"{self.text_of(item, out)}{{{{ else if eq (printf \"%T\" {var}) \"string\" }}}}"
                  f'{{{{ {out} = printf "%.1s" {var} }}}}{{{{ end }}}}')
        return f"(or (and (not {there}) {_FAIL}) {out})"

    def text_of(self, item: str, out: str) -> str:
        """Go statements adding str() of a JSON scalar to `out`; a list or mapping inside stops the render (not written)."""
        return (f'{{{{ if eq (printf "%T" {item}) "string" }}}}{{{{ {out} = print {out} {item} }}}}'
                f'{{{{ else if eq (printf "%T" {item}) "float64" }}}}{{{{ {out} = print {out} (json {item}) }}}}'
                f'{{{{ else if eq (printf "%T %v" {item} {item}) "bool true" }}}}{{{{ {out} = print {out} "True" }}}}'
                f'{{{{ else if eq (printf "%T" {item}) "bool" }}}}{{{{ {out} = print {out} "False" }}}}'
                f'{{{{ else if eq (printf "%T" {item}) "<nil>" }}}}{{{{ {out} = print {out} "None" }}}}'
                f"{{{{ else }}}}{{{{ {out} = print {out} {_FAIL} }}}}{{{{ end }}}}")

    def json_length_compare(self, subject: nodes.Node, op: str, n: int) -> str | None:
        """`v.key | length <op> n`: a list's or mapping's count, text's characters, 0 where the key is missing."""
        read = self.json_key(subject)
        if read is None:
            return None
        var, there = read
        missing = "true" if _OPS[op](0, n) else "false"
        return (f'(or (and (eq (printf "%T" {var}) {_LIST} {_MAP}) ({op} (len {var}) {n})) '
                f'(and {there} (eq (printf "%T" {var}) "string") {self.chars_compare(var, op, n)}) '
                f"(and (not {there}) {missing}) "
                f'(and {there} (eq (printf "%T" {var}) "float64" "bool" "<nil>") {_FAIL}))')

    def json_join(self, node: nodes.Filter) -> str | None:
        """`v.key | join(sep)`: str() of a list's items, text's characters or a mapping's keys (sorted, as Go holds them)."""
        read = self.json_key(node.node)
        sep = self.fold(node.args[0]) if len(node.args) == 1 else None
        if read is None or len(node.args) > 1 or node.kwargs or (node.args and (sep is None or not isinstance(sep.value, str))):
            return None
        var, there = read
        out, k, item, done = self.fresh("j"), self.fresh("k"), self.fresh("x"), self.fresh("d")
        glue = f"{{{{ if {k} }}}}{{{{ {out} = print {out} {go_string(sep.value if sep is not None else '')} }}}}{{{{ end }}}}"
        step = f'(len (printf "%.*s" (len (printf "%*s " {k} "")) {var}))'
        chars = (f"{{{{ {done} := 0 }}}}{{{{ range {k} := len {var} }}}}{{{{ if lt {done} {step} }}}}{glue.replace(f'if {k}', f'if {done}')}"
                 f"{{{{ {out} = print {out} (slice {var} {done} {step}) }}}}{{{{ {done} = {step} }}}}{{{{ end }}}}{{{{ end }}}}")
        self.emit(f'{{{{ {out} := "" }}}}{{{{ if eq (printf "%T" {var}) {_LIST} }}}}{{{{ range {k}, {item} := {var} }}}}{glue}'
                  f"{self.text_of(item, out)}{{{{ end }}}}{{{{ else if eq (printf \"%T\" {var}) {_MAP} }}}}"
                  f"{{{{ {done} := 0 }}}}{{{{ range {item}, $_ := {var} }}}}{glue.replace(f'if {k}', f'if {done}')}"
                  f"{{{{ {out} = print {out} {item} }}}}{{{{ {done} = 1 }}}}{{{{ end }}}}"
                  f'{{{{ else if and {there} (eq (printf "%T" {var}) "string") }}}}{chars}'
                  f"{{{{ else if {there} }}}}{{{{ {out} = print {out} {_FAIL} }}}}{{{{ end }}}}")
        return out

    def json_operand(self, node: nodes.Node) -> str:
        """An operand of a `+` of text: a key of a JSON value must hold text (Jinja fails on any other value, and on a
        missing key), anything else is converted as it is."""
        read = self.json_key(node)
        if read is None:
            return self.expr(node)
        var, there = read
        return f'(or (and (ne (printf "%T" {var}) "string") {_FAIL}) (and (not {there}) {_FAIL}) {var})'

    def json_contains_or(self, left: nodes.Node, right: nodes.Node) -> str | None:
        """`x in (v.key or [])`: never where the key is missing or its value is false, else `in` of the value."""
        if not (isinstance(right, nodes.Or) and self.json_field(right.left) is not None):
            return None
        empty = self.fold(right.right)
        read = self.json_key(right.left)
        if read is None or empty is None or empty.value not in ([], (), "", None):
            return None
        held = self.fresh("in")[1:]
        self.kinds[held], self.runtime = "value", self.runtime | {held}
        self.emit(f"{{{{ ${held} := {read[0]} }}}}")
        name = nodes.Name(held, "load", lineno=right.lineno)
        self.alive.append(name)
        test = self.json_contains(left, name)
        return None if test is None else f"(and ${held} {test})"
