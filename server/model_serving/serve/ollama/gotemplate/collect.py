"""A namespace list that a loop over messages fills with each message (or one of its fields) that passes its ifs.

Solar Open collects the system messages' text this way (`ns.system_messages + [message.content]` under
`if message.role == 'system'`). Go cannot build the list, but it is a filtered view of the sequence the loop ranges
over: the same ifs as the item's test, the field as the item. Read after the loop, it is that view (counted, ranged
over, tested for emptiness).
"""

from __future__ import annotations

import re

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate import kinds as K
from model_serving.serve.ollama.gotemplate.core import Core, View


class Collect(Core):
    def collect_item(self, key: str, value: nodes.Node, node: nodes.Node) -> str:
        """The append inside the loop: nothing to write; the view its reads will use is settled here."""
        assert isinstance(value, nodes.Add) and isinstance(value.right, nodes.List)  # collected_lists checked the shape
        item = value.right.items[0]
        loop = self.loops[-1] if self.loops else None
        tests = [test for depth, test in self.conditions if depth == len(self.loops)]
        if loop is None or loop.fixed is not None or loop.total or loop.prev or None in tests \
                or not re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", loop.iterable):  # the view is read later: a plain variable
            raise self.fail("a list built at render time in a loop over a filtered list, or under an else branch", node, "+")
        target = loop.target
        if any(v != target for t in tests for v in re.findall(r"\$[A-Za-z_][A-Za-z0-9_]*", str(t))):
            raise self.fail("a list built at render time under a test that reads more than the loop's item", node, "+")
        base = item.node if isinstance(item, (nodes.Getattr, nodes.Getitem)) else item
        element = self.kind(item)
        attr = None
        if isinstance(item, (nodes.Getattr, nodes.Getitem)):
            key_of = self.field_key(item)
            field = K.FIELDS.get(key_of[0], {}).get(key_of[1]) if key_of else None
            if field is None:
                raise self.fail("a list built at render time of a field Ollama's data does not have", node, "+")
            attr = field[0]
        if not isinstance(base, nodes.Name) or f"${base.name}" != target or element is None:
            raise self.fail("a list built at render time of a value other than the loop's item or its field", node, "+")
        kept = [t for t in tests if t is not None and t != "true"]
        pattern = re.compile(re.escape(target) + r"(?![A-Za-z0-9_])")

        def pred(x: str) -> str:
            return pattern.sub(x, kept[0] if len(kept) == 1 else f"(and {' '.join(kept)})")

        self.collected_views[key] = View(loop.iterable, element, pred if kept else None, attr)
        return ""

    def collected_view(self, node: nodes.Node) -> View | None:
        if not (isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and f"{node.node.name}.{node.attr}" in self.collected):
            return None
        view = self.collected_views.get(f"{node.node.name}.{node.attr}")
        if view is None:
            raise self.fail("a list built at render time, read before the loop that builds it", node, node.attr)
        return view
