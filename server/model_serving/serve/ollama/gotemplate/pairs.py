"""Lists of pairs written in place: Kimi K3's `open_tag('call', [('tool', fn.name), ('index', loop.index)])`.

Kimi K3 hands its tag writer a list of (name, value) pairs, some read from the conversation, and the writer loops over
them, writing each pair. Go has no list literal, but the list's length and each item's expression are fixed where it
is written, so a loop over such a literal whose body only writes text is written out pass by pass, each `attr[0]` /
`attr[1]` replaced by that item's own expression. The body changes no state, so reading an item where the body writes
it gives Jinja's text. A name set to such a list and grown once under an if (`set attrs = [('role', 'user')]`, then
`if message.get('name')`: `set attrs = attrs + [('name', message.name)]`) is one literal or the other: the statements
after the if that read it are written under the same test twice, once with each literal. Both rewrites run before the
conversion; a template that reads the list any other way is left as it is, and the conversion refuses it.
"""

from __future__ import annotations

import copy

from jinja2 import nodes
from jinja2.visitor import NodeTransformer

_STATE = (nodes.Assign, nodes.AssignBlock, nodes.ExprStmt, nodes.CallBlock, nodes.Macro, nodes.For, nodes.FilterBlock)


def written_pairs(ast: nodes.Template) -> nodes.Template:
    """The template with grown lists of pairs resolved into branches and loops over pair literals written out."""
    if not any(_literal_loop(f) is not None for f in ast.find_all(nodes.For)) and not any(
            isinstance(a.target, nodes.Name) and isinstance(a.node, nodes.List) for a in ast.find_all(nodes.Assign)):
        return ast
    out = copy.deepcopy(ast)
    grown = _Grown()
    grown.lists(out)
    if any(n.name in grown.names and n.ctx == "load" for n in out.find_all(nodes.Name)):
        out = copy.deepcopy(ast)  # the list is read elsewhere too: left as it is, for the conversion to refuse
    _written_out(out)
    return out


def _bodies(node: nodes.Node) -> list[list[nodes.Node]]:
    """The statement lists a node holds: its body and else, each elif's body, a template's body."""
    lists = [getattr(node, attr) for attr in ("body", "else_") if isinstance(getattr(node, attr, None), list)]
    return lists + [e.body for e in getattr(node, "elif_", [])]


def _pure(expr: nodes.Node) -> bool:
    """An expression that only reads: constants, names, fields, items, literals and `.get()`."""
    allowed = (nodes.Const, nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Tuple, nodes.List, nodes.Call, nodes.Keyword)
    calls_get = all(isinstance(c.node, nodes.Getattr) and c.node.attr == "get" and not c.dyn_args and not c.dyn_kwargs
                    for c in expr.find_all(nodes.Call))
    return calls_get and all(isinstance(n, allowed) for n in [expr, *expr.find_all(nodes.Node)])


def _pair_list(node: nodes.Node) -> bool:
    return isinstance(node, nodes.List) and all(isinstance(i, nodes.Tuple) and _pure(i) for i in node.items)


class _Grown:
    """`set x = [pairs]`, then `if test: set x = x + [pairs]`, then statements reading x: each literal under the test."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def lists(self, node: nodes.Node) -> None:
        for body in _bodies(node):
            self.resolve(body)
            for child in body:
                self.lists(child)

    def resolve(self, body: list[nodes.Node]) -> None:
        i = 0
        while i + 1 < len(body):
            found = self.grown_at(body, i)
            if found is None:
                i += 1
                continue
            name, base, test, extra = found
            reads = [j for j in range(i + 2, len(body)) if _reads(body[j], name)]
            span = body[i + 2:reads[-1] + 1] if reads else []
            if not reads or any(_stores(s, _names_in(test) | _names_in(base) | _names_in(extra)) for s in span):
                i += 1
                continue
            both = nodes.List([*base.items, *extra.items], lineno=extra.lineno)
            branch = nodes.If(test, _with(span, name, both), [], _with(span, name, base), lineno=test.lineno)
            body[i:reads[-1] + 1] = [branch]
            self.names.add(name)
            i += 1

    def grown_at(self, body: list[nodes.Node], i: int) -> tuple[str, nodes.List, nodes.Expr, nodes.List] | None:
        first, second = body[i], body[i + 1]
        if not (isinstance(first, nodes.Assign) and isinstance(first.target, nodes.Name) and _pair_list(first.node)):
            return None
        name = first.target.name
        if not (isinstance(second, nodes.If) and not second.elif_ and not second.else_ and len(second.body) == 1 and _pure(second.test)):
            return None
        grow = second.body[0]
        if not (isinstance(grow, nodes.Assign) and isinstance(grow.target, nodes.Name) and grow.target.name == name
                and isinstance(grow.node, nodes.Add) and isinstance(grow.node.left, nodes.Name) and grow.node.left.name == name
                and _pair_list(grow.node.right)):
            return None
        if _reads(second.test, name):
            return None
        assert isinstance(first.node, nodes.List) and isinstance(grow.node.right, nodes.List) and isinstance(second.test, nodes.Expr)
        return name, first.node, second.test, grow.node.right


def _reads(node: nodes.Node, name: str) -> bool:
    return any(n.name == name and n.ctx == "load" for n in [node, *node.find_all(nodes.Name)] if isinstance(n, nodes.Name))


def _names_in(node: nodes.Node) -> set[str]:
    return {n.name for n in [node, *node.find_all(nodes.Name)] if isinstance(n, nodes.Name)}


def _stores(node: nodes.Node, names: set[str]) -> bool:
    stored = {n.name for n in node.find_all(nodes.Name) if n.ctx in ("store", "param")} | {r.name for r in node.find_all(nodes.NSRef)}
    return bool(stored & names)


def _with(span: list[nodes.Node], name: str, value: nodes.Expr) -> list[nodes.Node]:
    return [_Replace({name: value}).visit(copy.deepcopy(s)) for s in span]


class _Replace(NodeTransformer):
    def __init__(self, values: dict[str, nodes.Expr]) -> None:
        self.values = values

    def visit_Name(self, node: nodes.Name) -> nodes.Node:
        if node.ctx == "load" and node.name in self.values:
            return copy.deepcopy(self.values[node.name])
        return node


class _Items(NodeTransformer):
    """`t[k]` of a loop target read as the item's k-th expression."""

    def __init__(self, target: str, item: nodes.Tuple) -> None:
        self.target, self.item = target, item

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        if isinstance(node.node, nodes.Name) and node.node.name == self.target:
            assert isinstance(node.arg, nodes.Const)  # _literal_loop checked every read
            return copy.deepcopy(self.item.items[int(node.arg.value)])
        visited: nodes.Node = self.generic_visit(node)
        return visited


def _literal_loop(node: nodes.For) -> tuple[str, list[nodes.Tuple]] | None:
    """(target, items) of `for t in [(a, b), ...]` with a value read at render time, whose body only writes text."""
    if not (isinstance(node.target, nodes.Name) and _pair_list(node.iter)) or node.else_ or node.test is not None or node.recursive:
        return None
    assert isinstance(node.iter, nodes.List)
    items = [i for i in node.iter.items if isinstance(i, nodes.Tuple)]
    if all(isinstance(e, nodes.Const) for i in items for e in i.items):
        return None  # known at registration: the conversion writes it out with loop.* as well
    body = nodes.Template(node.body)
    if any(True for _ in body.find_all(_STATE)) or any(n.name == "loop" for n in body.find_all(nodes.Name)):
        return None
    width = min((len(i.items) for i in items), default=0)
    target = node.target.name
    reads = [n for n in body.find_all(nodes.Name) if n.name == target]
    indexed = [g for g in body.find_all(nodes.Getitem) if isinstance(g.node, nodes.Name) and g.node.name == target]
    if len(reads) != len(indexed) or not all(isinstance(g.arg, nodes.Const) and type(g.arg.value) is int and 0 <= g.arg.value < width
                                             for g in indexed):
        return None
    return target, items


def _written_out(node: nodes.Node) -> None:
    for body in _bodies(node):
        i = 0
        while i < len(body):
            stmt = body[i]
            found = _literal_loop(stmt) if isinstance(stmt, nodes.For) else None
            if found is None or not isinstance(stmt, nodes.For):
                _written_out(stmt)
                i += 1
                continue
            target, items = found
            passes = [_Items(target, item).visit(copy.deepcopy(s)) for item in items for s in stmt.body]
            body[i:i + 1] = passes
            i += len(passes)
