"""A namespace list of text used as a queue: `ids.append(x)` at the back, `ids.pop(0)` from the front, `if ids`.

Kimi K2 pairs tool results with the ids of its calls this way. Go has no list to build, but such a list can be one
string with a mark after each item: append prints the item and the mark, pop(0) cuts the text before the first mark,
and the list is non-empty while the string is.
"""

from __future__ import annotations

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate.core import SET_MARK, Core
from model_serving.serve.ollama.gotemplate.text import go_string

QUEUE_NOTE = "A list of text used as a queue (append, pop(0)) is kept as one string with a NUL mark after each item; an item holding a NUL splits wrongly."


class Queues(Core):
    def queue_of(self, node: nodes.Node | None) -> str | None:
        """The Go variable of a queue that `node` reads (`ns.ids`), else None."""
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and f"{node.node.name}.{node.attr}" in self.queues:
            return f"${node.node.name}_{node.attr}"
        return None

    def queue_append(self, value: nodes.Node) -> str | None:
        """`set _ = ns.ids.append(item)`: the item and a mark printed at the end of the queue's string."""
        if not (isinstance(value, nodes.Call) and isinstance(value.node, nodes.Getattr) and value.node.attr == "append"):
            return None
        var = self.queue_of(value.node.node)
        if var is None:
            return None
        item = value.args[0]
        if self.kind(item) not in ("string", "int"):
            raise self.fail("a queue of values that are not text", value, "append")
        self.note(QUEUE_NOTE)
        return f"{{{{ {var} = print {var} {self.expr(item)} {go_string(SET_MARK)} }}}}"

    def queue_pop(self, base: nodes.Node) -> str | None:
        """`ns.ids.pop(0)`: the text before the first mark, which the queue then loses (an empty queue gives "")."""
        var = self.queue_of(base)
        if var is None:
            return None
        out, i = self.fresh("pop"), self.fresh("i")
        self.emit(f'{{{{ {out} := "" }}}}{{{{ range {i} := len {var} }}}}{{{{ if eq (slice {var} {i} (len (printf "%*s " {i} ""))) '
                  f'{go_string(SET_MARK)} }}}}{{{{ {out} = slice {var} 0 {i} }}}}{{{{ {var} = slice {var} (len (printf "%*s " {i} "")) }}}}'
                  f"{{{{ break }}}}{{{{ end }}}}{{{{ end }}}}")
        return out
