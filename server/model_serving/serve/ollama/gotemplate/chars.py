"""A loop over the characters of text (`for c in name`), and over a tool property's type.

Go's range cannot walk a string, but `printf "%.*s" k s` is the first k characters of s (Go's precision counts runes,
as Python counts code points), so the k-th character is what the first k+1 add to the first k; the count of characters
is the number of prefixes shorter than the text. A property's type reaches a TEMPLATE as a list of names: Jinja sees
one name as text (and walks its characters) and several as a list (and walks the names), so the loop is written both ways.
A JSON value mapped to upper (or lower) case and listed, handed to a macro that calls itself, is walked as the value is, each
item recased as it is read.
`indent` walks the bytes of text once its line boundaries are all \n.
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate.core import Core, Loop
from model_serving.serve.ollama.gotemplate.text import go_failure, go_string


class Chars(Core):
    def for_text(self, node: nodes.For, scope: Any) -> str:
        assert isinstance(node.target, nodes.Name)
        if node.else_ or node.test is not None or node.recursive:
            raise self.fail("a loop over the characters of text with else or an inline if", node, "for")
        if self.field_key(node.iter) == ("property", "type"):
            names = self.expr(node.iter.node) + ".Type"  # type: ignore[attr-defined]  # field_key checked it is a field
            one = self.text_loop(node, scope, f"(index {names} 0)")
            loop = Loop(index=self.fresh("i"), iterable=names, target=f"${node.target.name}", counter=self.counter)
            many = self.loop_body(node, scope, loop)
            return (f"{{{{ if eq (len {names}) 1 }}}}{one}{{{{ else }}}}{self.loop_setup(loop)}"
                    f"{{{{ range {loop.index}, {loop.target} := {names} }}}}{self.loop_start(loop)}{many}{{{{ end }}}}{{{{ end }}}}")
        return self.text_loop(node, scope, self.expr(node.iter))

    def text_loop(self, node: nodes.For, scope: Any, text: str) -> str:
        assert isinstance(node.target, nodes.Name)
        held, count = self.fresh("s"), self.fresh("n")
        loop = Loop(index=self.fresh("i"), iterable=held, target=f"${node.target.name}", counter=self.counter, total=count)
        body = self.loop_body(node, scope, loop)
        k = self.fresh("k")
        counting = (f"{{{{ {held} := {text} }}}}{{{{ {count} := 0 }}}}{{{{ range {k} := len {held} }}}}"
                    f'{{{{ if lt (len (printf "%.*s" {k} {held})) (len {held}) }}}}{{{{ {count} = len (printf "%*s " {k} "") }}}}{{{{ end }}}}{{{{ end }}}}')
        char = (f'{{{{ {loop.target} := slice (printf "%.*s" (len (printf "%*s " {loop.index} "")) {held}) '
                f'(len (printf "%.*s" {loop.index} {held})) }}}}')
        return counting + self.loop_setup(loop) + f"{{{{ range {loop.index} := {count} }}}}{char}{self.loop_start(loop)}{body}{{{{ end }}}}"

    def for_value(self, node: nodes.For, scope: Any) -> str:
        """A loop over a call argument's value: its items if a list, its characters if text, its keys (sorted) if a mapping."""
        assert isinstance(node.target, nodes.Name)
        if node.else_ or node.test is not None or node.recursive:
            raise self.fail("a loop over a tool-call argument with else or an inline if", node, "for")
        held = self.fresh("v")
        code = f"{{{{ {held} := {self.expr(node.iter)} }}}}"
        items = Loop(index=self.fresh("i"), iterable=held, target=f"${node.target.name}", counter=self.counter)
        listed = self.loop_body(node, scope, items, "value")
        text = self.text_loop(node, scope, held)
        keys = Loop(index=self.fresh("i"), iterable=held, target=f"${node.target.name}", counter=self.counter, total=f"(len {held})")
        keyed = self.loop_body(node, scope, keys, "string")
        kept = f"$kept{keys.counter}"
        step = f'{{{{ {keys.index} = {kept} }}}}{{{{ {kept} = len (printf "%*s " {kept} "") }}}}'
        return (code + f'{{{{ $type{items.counter} := printf "%T" {held} }}}}{{{{ if eq $type{items.counter} "[]interface {{}}" }}}}'
                f"{self.loop_setup(items)}{{{{ range {items.index}, {items.target} := {held} }}}}{self.loop_start(items)}{listed}{{{{ end }}}}"
                f'{{{{ else if eq $type{items.counter} "string" }}}}{text}'
                f'{{{{ else if eq $type{items.counter} "map[string]interface {{}}" }}}}{self.loop_setup(keys)}{{{{ {kept} := 0 }}}}'
                f"{{{{ {keys.index} := 0 }}}}{{{{ range {keys.target}, $_ := {held} }}}}{step}{self.loop_start(keys)}{keyed}{{{{ end }}}}"
                f'{{{{ else }}}}{go_failure("a loop over a value that is not a list, text or mapping")}'
                "{{ end }}")

    def for_cased(self, node: nodes.For, scope: Any, filter_name: str) -> str:
        """A loop over `value | map('upper') | list` of a JSON value (a macro's argument): a loop over the value, each item
        read as str() of it recased; text gives its characters, a mapping its keys, and Jinja's map fails on anything else."""
        assert isinstance(node.target, nodes.Name)
        raw, held = self.fresh("raw")[1:], self.fresh("m")[1:]
        self.kinds[held] = "value"
        self.runtime |= {raw, held, node.target.name}  # the item reads the conversation, through its alias
        walk = nodes.For(nodes.Name(raw, "store"), nodes.Name(held, "load"), node.body, node.else_, node.test, False, lineno=node.lineno)
        item = nodes.Filter(nodes.Filter(nodes.Name(raw, "load"), "string", [], [], None, None), filter_name, [], [], None, None)
        self.alive += [walk, item]
        before = self.aliases.get(node.target.name)
        self.aliases[node.target.name] = item
        try:
            return f"{{{{ ${held} := {self.expr(node.iter)} }}}}" + self.for_value(walk, scope)
        finally:
            if before is None:
                self.aliases.pop(node.target.name, None)
            else:
                self.aliases[node.target.name] = before

    def loop_body(self, node: nodes.For, scope: Any, loop: Loop, kind: str = "string") -> str:
        assert isinstance(node.target, nodes.Name)
        self.kinds[node.target.name] = kind
        (self.always_text.add if kind == "string" else self.always_text.discard)(node.target.name)  # a character, a name, a key
        self.loops.append(loop)
        try:
            return self.block(node.body, self.inner_scope(node, scope, {node.target.name}))
        finally:
            self.loops.pop()

    def indented(self, node: nodes.Filter) -> str:
        """`text | indent(width, first, blank)`: Python splits lines at every line boundary it knows and joins them with \\n."""
        assert node.node is not None
        names = ["width", "first", "blank"]
        given: dict[str, nodes.Expr] = dict(zip(names, node.args, strict=False))
        given.update({str(kw.key): kw.value for kw in node.kwargs})
        folded = {k: self.fold(v) for k, v in given.items()}
        if set(given) - set(names) or node.dyn_args or node.dyn_kwargs or any(f is None for f in folded.values()):
            raise self.fail("the filter 'indent' with arguments computed at render time", node, "indent")
        values = {"width": 4, "first": False, "blank": False, **{k: f.value for k, f in folded.items() if f is not None}}
        width = values["width"]
        pad = width if isinstance(width, str) else " " * int(width)
        text = self.expr(node.node)
        for boundary in LINE_BOUNDARIES:
            text = self.replaced(text, boundary, '"\\n"')
        t, out, start, i = self.fresh("t"), self.fresh("o"), self.fresh("f"), self.fresh("i")
        after = f'(len (printf "%*s " {i} ""))'
        pads = "true" if values["blank"] else f'(and (lt {after} (len {t})) (ne (slice {t} {after} (len (printf "%*s  " {i} ""))) "\\n"))'
        self.emit(f'{{{{ {t} := {text} }}}}{{{{ {out} := {go_string(pad if values["first"] else "")} }}}}{{{{ {start} := 0 }}}}'
                  f'{{{{ range {i} := len {t} }}}}{{{{ if and (eq (slice {t} {i} {after}) "\\n") {pads} }}}}'
                  f"{{{{ {out} = print {out} (slice {t} {start} {after}) {go_string(pad)} }}}}{{{{ {start} = {after} }}}}{{{{ end }}}}{{{{ end }}}}"
                  f"{{{{ {out} = print {out} (slice {t} {start}) }}}}")
        return out


# str.splitlines() ends a line at each of these; indent joins the lines with \n (\r\n first: it is one boundary)
LINE_BOUNDARIES = ["\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
