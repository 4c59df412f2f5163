"""A loop over a namespace list of text kept as one Go string (`for tns in ns.seen`).

Such a list (core.name_sets) is one string with a NUL mark before the first item and after each one, so the items
are the runs of text between consecutive marks: the loop walks the string's bytes once and runs its body at each mark
after the first, with the text since the previous mark. It walks a copy taken when the loop starts, as Jinja iterates
over the list the name held then, whatever the body adds.
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate.core import SET_MARK, Core, Loop
from model_serving.serve.ollama.gotemplate.text import go_string


class NameWalk(Core):
    def for_nameset(self, node: nodes.For, scope: Any) -> str:
        assert isinstance(node.target, nodes.Name)
        if node.else_ or node.test is not None or any(n.name == "loop" for n in node.find_all(nodes.Name)):
            raise self.fail("a loop over a list built at render time with else, an inline if or loop.*", node, "for")
        held, start, i = self.fresh("w"), self.fresh("f"), self.fresh("i")
        # not a Go list: what needs to range over the loop's list again (a list a loop fills, read as a view) is refused
        loop = Loop(index=i, iterable=f"(print {held})", target=f"${node.target.name}", counter=self.counter)
        body = self.loop_body(node, scope, loop)
        after = f'(len (printf "%*s " {i} ""))'
        return (f"{{{{ {held} := {self.expr(node.iter)} }}}}{{{{ {start} := 1 }}}}{{{{ range {i} := len {held} }}}}"
                f"{{{{ if and {i} (eq (slice {held} {i} {after}) {go_string(SET_MARK)}) }}}}"
                f"{{{{ {loop.target} := slice {held} {start} {i} }}}}{{{{ {start} = {after} }}}}{body}{{{{ end }}}}{{{{ end }}}}")
