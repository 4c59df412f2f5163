"""A namespace list of text that only grows and is only joined, with one separator, built as joined text as it grows.

GigaChat writes its tool namespace as `namespace(sections=['namespace ' ~ name ~ ' {'])`, adds each tool's text with
`ns.sections + [text]`, and reads the list once, as `ns.sections | join('\n')`. Go has no list to build, but the joined
text can grow with the list: the first item, then the separator and the item for each one added, in order. The Go
string is empty while the list is, and otherwise starts with one NUL mark (read off by the join) ahead of the items, so
an empty list and a list of one empty item stay apart. No item is searched for a mark: any text converts exactly.
"""

from __future__ import annotations

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate.core import SET_MARK, Core
from model_serving.serve.ollama.gotemplate.text import go_string


class Joins(Core):
    def joined_item(self, item: nodes.Node, node: nodes.Node) -> str:
        """An item's Go text; the list holds text only (Jinja's join would write another value's str())."""
        folded = self.fold(item)
        if folded is not None and isinstance(folded.value, str):
            return go_string(folded.value)
        if folded is not None or self.kind(item) != "string":
            raise self.fail("a list joined at render time with items that are not text", node, "[")
        return self.expr(item)

    def joined_start(self, var: str, key: str, start: nodes.List) -> str:
        """The list a `namespace(...)` starts with, already joined."""
        if not start.items:
            return f'{{{{ {var} = "" }}}}'
        sep = go_string(self.joined[key])
        items = [self.joined_item(i, start) for i in start.items]
        return f"{{{{ {var} = print {go_string(SET_MARK)} {f' {sep} '.join(items)} }}}}"

    def joined_append(self, var: str, key: str, value: nodes.Add, node: nodes.Node) -> str:
        """`ns.x = ns.x + [item]`: the separator (none before the first item) and the item, printed at the end."""
        assert isinstance(value.right, nodes.List)  # joined_lists checked the shape
        item = self.joined_item(value.right.items[0], node)
        sep = go_string(self.joined[key])
        return f"{{{{ if {var} }}}}{{{{ {var} = print {var} {sep} {item} }}}}{{{{ else }}}}{{{{ {var} = print {go_string(SET_MARK)} {item} }}}}{{{{ end }}}}"

    def joined_text(self, node: nodes.Node) -> str:
        """`ns.x | join(sep)`: the text without its mark."""
        held, out = self.expr(node), self.fresh("j")
        self.emit(f'{{{{ {out} := "" }}}}{{{{ if {held} }}}}{{{{ {out} = slice {held} 1 }}}}{{{{ end }}}}')
        return out
