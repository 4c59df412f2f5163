"""A namespace list that a loop over messages fills with each message (or one of its fields) that passes its ifs.

Solar Open collects the system messages' text this way (`ns.system_messages + [message.content]` under
`if message.role == 'system'`). Go cannot build the list, but it is a filtered view of the sequence the loop ranges
over: the same ifs as the item's test, the field as the item. Read after the loop, it is that view (counted, ranged
over, tested for emptiness).

A loop that may stop early (Kimi K3 gathers the run of tool messages after this one: `for m in messages[i:]`, `break` at
the first that is not a tool's, then `run.tool_messages + [m]`) fills a prefix of its sequence, when it adds each item
it reaches, unconditionally, and never skips one (`continue`): the list is the sequence sliced to the number of items
added, so Go keeps that slice and widens it by one at each add.
"""

from __future__ import annotations

import re

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate import kinds as K
from model_serving.serve.ollama.gotemplate.core import Core, View


class Collect(Core):
    def collect_item(self, key: str, value: nodes.Node, node: nodes.Node) -> str:
        """The append inside the loop: nothing to write (a view of the loop's sequence), or the slice widened by one."""
        assert isinstance(value, nodes.Add) and isinstance(value.right, nodes.List)  # collected_lists checked the shape
        item = value.right.items[0]
        loop = self.loops[-1] if self.loops else None
        tests = [test for depth, test in self.conditions if depth == len(self.loops)]
        owner = next((f for f in self.ast.find_all(nodes.For) if any(a is node for a in _under_ifs(f.body))), None)
        exits = _exits(owner.body) if owner is not None else []
        if loop is None or loop.fixed is not None or loop.total or loop.prev or None in tests or (exits and (tests or not loop.iterable)) \
                or any(isinstance(e, nodes.Continue) for e in exits) \
                or not (exits or re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", loop.iterable)):  # the view is read later: a plain variable
            raise self.fail("a list built at render time in a loop over a filtered list, under an if in a loop that stops early, "
                            "or under an else branch", node, "+")
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
        if exits:
            var = "$" + key.replace(".", "_")  # the namespace attribute's Go variable: the sequence's first items
            self.collected_views[key] = View(var, element, None, attr)
            return f'{{{{ {var} = slice {loop.iterable} 0 (len (printf "%*s " (len {var}) "")) }}}}'
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


def _under_ifs(body: list[nodes.Node]) -> list[nodes.Node]:
    """The statements of `body` and of its ifs' branches, at any depth of ifs (not inside loops)."""
    out: list[nodes.Node] = []
    for n in body:
        out.append(n)
        if isinstance(n, nodes.If):
            out.extend(_under_ifs([*n.body, *(s for e in n.elif_ for s in e.body), *n.else_]))
    return out


def _exits(body: list[nodes.Node]) -> list[nodes.Node]:
    """The `break` and `continue` statements of the loop whose body this is (not those of loops inside it)."""
    out: list[nodes.Node] = []
    for n in body:
        if isinstance(n, (nodes.Break, nodes.Continue)):
            out.append(n)
        elif isinstance(n, nodes.For):
            out.extend(_exits(n.else_))  # a nested loop's else runs in this loop's body
        else:
            out.extend(_exits([c for c in n.iter_child_nodes() if isinstance(c, nodes.Stmt)]))
    return out
