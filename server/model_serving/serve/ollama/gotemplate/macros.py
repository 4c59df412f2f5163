"""Macros written out where they are called, before the conversion sees the template.

A Go template has no function that returns text into an expression, but a macro called on its own in an output
(`{{ render_content(message) }}`) only writes text, so its body can stand in place of the call, with each
parameter replaced by the argument's expression. The names a macro sets are renamed per call, so they neither leak
into nor clobber the caller's (Jinja gives a macro its own scope). A recursive macro, a macro called inside an
expression, with `caller`, `varargs` or `kwargs`, is left as it is, and the conversion refuses it, naming it.
"""

from __future__ import annotations

import copy
from itertools import count

from jinja2 import nodes
from jinja2.visitor import NodeTransformer

_ids = count(1)


def inline_macros(ast: nodes.Template) -> nodes.Template:
    macros = {m.name: m for m in ast.body if isinstance(m, nodes.Macro) and _inlinable(m)}
    if not macros:
        return ast
    calls = [c for c in ast.find_all(nodes.Call) if isinstance(c.node, nodes.Name) and c.node.name in macros]
    in_output = {id(c) for o in ast.find_all(nodes.Output) for c in o.nodes if isinstance(c, nodes.Call)}
    usable = {name for name in macros if all(id(c) in in_output for c in calls if c.node.name == name)}  # type: ignore[attr-defined]
    if not usable:
        return ast
    ast = copy.deepcopy(ast)
    for _ in range(8):  # macros that call other macros: expand until none is left
        expander = _Expand({m.name: m for m in ast.body if isinstance(m, nodes.Macro) and m.name in usable})
        ast = expander.visit(ast)
        if not expander.expanded:
            break
    ast.body = [n for n in ast.body if not (isinstance(n, nodes.Macro) and n.name in usable)]
    return ast


def _inlinable(macro: nodes.Macro) -> bool:
    names = {n.name for n in macro.find_all(nodes.Name)}
    return macro.name not in names and not names & {"caller", "varargs", "kwargs"}


class _Expand(NodeTransformer):
    def __init__(self, macros: dict[str, nodes.Macro]) -> None:
        self.macros = macros
        self.expanded = False

    def visit_Macro(self, node: nodes.Macro) -> nodes.Node:
        return node  # bodies are expanded where they are written out

    def visit_Output(self, node: nodes.Output) -> list[nodes.Node]:
        out: list[nodes.Node] = []
        pending: list[nodes.Expr] = []
        for child in node.nodes:
            call = child if isinstance(child, nodes.Call) and isinstance(child.node, nodes.Name) else None
            macro = self.macros.get(call.node.name) if call is not None and isinstance(call.node, nodes.Name) else None
            if call is None or macro is None or call.dyn_args or call.dyn_kwargs:
                pending.append(self.visit(child))
                continue
            if pending:
                out.append(nodes.Output(pending, lineno=node.lineno))
                pending = []
            out.extend(self.body(macro, call))
            self.expanded = True
        if pending:
            out.append(nodes.Output(pending, lineno=node.lineno))
        return out

    def body(self, macro: nodes.Macro, call: nodes.Call) -> list[nodes.Node]:
        params = [a.name for a in macro.args]
        defaults = dict(zip(params[len(params) - len(macro.defaults):], macro.defaults, strict=True))
        bound: dict[str, nodes.Expr] = {}
        for name, value in zip(params, call.args, strict=False):
            bound[name] = value
        for kw in call.kwargs:
            bound[kw.key] = kw.value
        for name in params:
            bound.setdefault(name, defaults.get(name, nodes.Const(None)))
        suffix = f"__m{next(_ids)}"
        local = {n.name for n in macro.find_all(nodes.Name) if n.ctx in ("store", "param")} - set(params)
        return _Substitute(bound, {name: name + suffix for name in local}).visit_body(copy.deepcopy(macro.body))


class _Substitute(NodeTransformer):
    def __init__(self, bound: dict[str, nodes.Expr], renamed: dict[str, str]) -> None:
        self.bound, self.renamed = bound, renamed

    def visit_body(self, body: list[nodes.Node]) -> list[nodes.Node]:
        out: list[nodes.Node] = []
        for n in body:
            done = self.visit(n)
            out.extend(done if isinstance(done, list) else [done])
        return out

    def visit_Name(self, node: nodes.Name) -> nodes.Node:
        if node.ctx == "load" and node.name in self.bound:
            return copy.deepcopy(self.bound[node.name])
        if node.name in self.renamed:
            return nodes.Name(self.renamed[node.name], node.ctx, lineno=node.lineno)
        return node

    def visit_NSRef(self, node: nodes.NSRef) -> nodes.Node:
        return nodes.NSRef(self.renamed.get(node.name, node.name), node.attr, lineno=node.lineno)
