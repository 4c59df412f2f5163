"""Counters that start below zero: `ns.last_user_idx = -1`, then a loop index.

Go templates count with lengths, which are never negative, so `x + 1` or `seq[x]` of such a counter is written twice:
once for the one negative value it can hold (a constant, so the result is computed now), once for a count.
"""

from __future__ import annotations

import copy
from typing import Any

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate.core import Core


class Negative(Core):
    def floor_ref(self, node: nodes.Node) -> tuple[str, int] | None:
        """(Go name, its one negative value) when `node` reads a counter whose only negative value is a constant."""
        go = None
        if isinstance(node, nodes.Name):
            go = node.name
        elif isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name in self.namespaces:
            go = f"{node.node.name}_{node.attr}"
        if go is None or go not in self.floors:
            return None
        return go, self.floors[go]

    def floored(self, node: nodes.Add | nodes.Sub) -> str | None:
        """`x + 1`, `n - x` and the like where x is such a counter: the result for its negative value, else for the count."""
        refs = {r for n in (node, *node.find_all((nodes.Name, nodes.Getattr))) if (r := self.floor_ref(n)) is not None}
        if len(refs) != 1 or any(n.name in self.negative for n in node.find_all(nodes.Name) if self.floor_ref(n) is None):
            return None
        go, low = next(iter(refs))
        below = _normalised(_substituted(copy.deepcopy(node), go, low, self))
        self.kept_nodes.append(below)  # folds are cached by node id: keep the node alive
        folded = self.fold(below)
        if folded is not None and isinstance(folded.value, int) and folded.value < 0:
            return None  # the result itself may be negative
        self.counts.add(go)
        try:
            when_negative = str(folded.value) if folded is not None else self.int_expr(below)
            otherwise = self.int_expr(node)
        finally:
            self.counts.discard(go)
        var = self.fresh("z")
        self.emit(f"{{{{ {var} := 0 }}}}{{{{ if lt ${go} 0 }}}}{{{{ {var} = {when_negative} }}}}{{{{ else }}}}{{{{ {var} = {otherwise} }}}}{{{{ end }}}}")
        return var

    def floored_index(self, seq: str, arg: nodes.Node) -> str | None:
        """`seq[x]` for such a counter: Python's seq[-1] (counted from the end) while x is negative."""
        ref = self.floor_ref(arg)
        if ref is None:
            return None
        go, low = ref
        var = self.fresh("p")
        self.emit(f'{{{{ {var} := "" }}}}{{{{ if lt ${go} 0 }}}}{{{{ {var} = {self.index_at(seq, low)} }}}}'
                  f"{{{{ else }}}}{{{{ {var} = index {seq} ${go} }}}}{{{{ end }}}}")
        return var


def _substituted(node: nodes.Node, go: str, value: int, conv: Any) -> nodes.Node:
    if conv.floor_ref(node) is not None and conv.floor_ref(node)[0] == go:
        return nodes.Const(value, lineno=node.lineno)
    for field in node.fields:
        child = getattr(node, field, None)
        if isinstance(child, nodes.Node):
            setattr(node, field, _substituted(child, go, value, conv))
    return node


def _normalised(node: nodes.Node) -> nodes.Node:
    """`x - (-k)` as `x + k` and `x + (-k)` as `x - k`, so no negative constant reaches Go's length arithmetic."""
    if isinstance(node, (nodes.Add, nodes.Sub)):
        left, right = _normalised(node.left), _normalised(node.right)
        if isinstance(right, nodes.Const) and isinstance(right.value, int) and right.value < 0 and not isinstance(left, nodes.Const):
            flipped = nodes.Const(-right.value, lineno=node.lineno)
            return (nodes.Add if isinstance(node, nodes.Sub) else nodes.Sub)(left, flipped, lineno=node.lineno)
        if isinstance(node, nodes.Add) and isinstance(left, nodes.Const) and isinstance(left.value, int) and left.value < 0 \
                and not isinstance(right, nodes.Const):
            return nodes.Sub(right, nodes.Const(-left.value, lineno=node.lineno), lineno=node.lineno)
        return type(node)(left, right, lineno=node.lineno)
    return node
