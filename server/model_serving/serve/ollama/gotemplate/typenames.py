"""A tool property's type read as Jinja sees it, and the length of text counted in characters.

Ollama holds a property's type as a list of names; Jinja sees one name as text and several as a list. So its first item
(`type[0]`) is the name's first character or the first name, `type | length` counts characters or names, `type | join(sep)`
joins characters or names, and `type is string` holds for one name only (gpt-oss's and Apertus's `Union` types). A
comparison of `text | length` with a number counts characters as Python does: Go's precision in `printf "%.*s"` counts
runes, so text is longer than n characters exactly when its first n are not all of it.
"""

from __future__ import annotations

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate.core import Core
from model_serving.serve.ollama.gotemplate.text import go_string

_GO = {"eq": "eq", "ne": "ne", "lt": "lt", "lteq": "le", "gt": "gt", "gteq": "ge"}  # Jinja's comparison -> Go's
_FLIP = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge", "eq": "eq", "ne": "ne"}


class TypeNames(Core):
    def type_names(self, node: nodes.Node | None) -> str | None:
        """The Go list of names behind a property's `type` (`p.type`, `p['type']`), else None."""
        if node is None or self.field_key(node) != ("property", "type"):
            return None
        assert isinstance(node, (nodes.Getattr, nodes.Getitem))
        return f"{self.expr(node.node)}.Type"

    def first_of_type(self, node: nodes.Getitem) -> str | None:
        """`p.type[0]`: the name's first character, or the first name; Jinja fails on an unset type, and so does Go's index."""
        names = self.type_names(node.node)
        key = self.fold(node.arg)
        if names is None or key is None or key.value != 0:
            return None
        return f'(or (and (eq (len {names}) 1) (printf "%.1s" (index {names} 0))) (index {names} 0))'

    def type_name_test(self, node: nodes.Test) -> str | None:
        """`p.type is string` (one name) and `p.type[0] is defined` (a name that is not empty, or several)."""
        names = self.type_names(node.node)
        if names is not None and node.name == "string" and not node.args:
            return f"(eq (len {names}) 1)"
        if not (isinstance(node.node, nodes.Getitem) and node.name in ("defined", "undefined") and not node.args):
            return None
        names, key = self.type_names(node.node.node), self.fold(node.node.arg)
        if names is None or key is None or key.value != 0:
            return None
        # an unset type is Jinja's undefined, whose [0] fails: so does Go's index of an empty list
        test = (f'(or (gt (len {names}) 1) (and (eq (len {names}) 1) (ne (index {names} 0) "")) '
                f"(and (eq (len {names}) 0) (index {names} 0)))")
        return test if node.name == "defined" else f"(not {test})"

    def type_join(self, node: nodes.Filter) -> str | None:
        """`p.type | join(sep)`: the names joined, or one name's characters joined."""
        names = self.type_names(node.node)
        sep = self.fold(node.args[0]) if len(node.args) == 1 else None
        if names is None or len(node.args) > 1 or (node.args and (sep is None or not isinstance(sep.value, str))) or node.kwargs:
            return None
        out, name, done, k, item = self.fresh("j"), self.fresh("n"), self.fresh("d"), self.fresh("k"), self.fresh("x")
        glue = go_string(sep.value if sep is not None else "")
        step = f'(len (printf "%.*s" (len (printf "%*s " {k} "")) {name}))'
        self.emit(f'{{{{ {out} := "" }}}}{{{{ if eq (len {names}) 1 }}}}{{{{ {name} := index {names} 0 }}}}{{{{ {done} := 0 }}}}'
                  f"{{{{ range {k} := len {name} }}}}{{{{ if lt {done} {step} }}}}{{{{ if {done} }}}}{{{{ {out} = print {out} {glue} }}}}{{{{ end }}}}"
                  f"{{{{ {out} = print {out} (slice {name} {done} {step}) }}}}{{{{ {done} = {step} }}}}{{{{ end }}}}{{{{ end }}}}"
                  f"{{{{ else }}}}{{{{ range {k}, {item} := {names} }}}}{{{{ if {k} }}}}{{{{ {out} = print {out} {glue} }}}}{{{{ end }}}}"
                  f"{{{{ {out} = print {out} {item} }}}}{{{{ end }}}}{{{{ end }}}}")
        return out

    def length_compare(self, left: nodes.Node, op: str, right: nodes.Node) -> str | None:
        """`x | length <op> n` (either side) of text or of a property's type, n a whole number: counted as Python counts."""
        if op not in _GO:
            return None
        for subject, other, go_op in ((left, right, _GO[op]), (right, left, _FLIP[_GO[op]])):
            bound = self.fold(other)
            if not (isinstance(subject, nodes.Filter) and subject.name in ("length", "count") and subject.node is not None
                    and bound is not None and type(bound.value) is int):
                continue
            counted = self.json_length_compare(subject.node, go_op, bound.value)
            if counted is not None:
                return counted
            names = self.type_names(subject.node)
            if names is not None:
                text = f"(index {names} 0)"
                return (f"(or (and (ne (len {names}) 1) ({go_op} (len {names}) {bound.value})) "
                        f"(and (eq (len {names}) 1) {self.chars_compare(text, go_op, bound.value)}))")
            if self.kind(subject.node) == "string":
                return self.chars_compare(self.expr(subject.node), go_op, bound.value)
        return None

    def chars_compare(self, text: str, op: str, n: int) -> str:
        """Python's `len(text) <op> n`, its length in characters."""
        def longer(k: int) -> str:  # more than k characters
            return "true" if k < 0 else f'(lt (len (printf "%.*s" {k} {text})) (len {text}))'
        tests = {"gt": longer(n), "ge": longer(n - 1), "lt": f"(not {longer(n - 1)})", "le": f"(not {longer(n)})",
                 "eq": f"(and {longer(n - 1)} (not {longer(n)}))", "ne": f"(not (and {longer(n - 1)} (not {longer(n)})))"}
        return tests[op]
