"""Macros written out where they are called, before the conversion sees the template.

A Go template has no function that returns text into an expression, but a macro called on its own in an output
(`{{ render_content(message) }}`) only writes text, so its body can stand in place of the call, with each
parameter replaced by the argument's expression. The names a macro sets are renamed per call, so they neither leak
into nor clobber the caller's (Jinja gives a macro its own scope). A macro called inside an expression
(`{% set text = render_content(message.content) | trim %}`) becomes a `{% set __macroN %}body{% endset %}` block just
before the statement, and the call reads `__macroN`: the converter builds such a block's text up in a Go variable.
A recursive macro, one with `caller`, `varargs` or `kwargs`, or a call whose evaluation Jinja may skip (behind `if`,
`and`, `or`, or in an `elif` test) of a macro that changes namespace state, is left as it is, and the conversion
refuses it, naming it.
"""

from __future__ import annotations

import copy
from itertools import count
from typing import Any, cast

from jinja2 import nodes
from jinja2.visitor import NodeTransformer

_ids = count(1)
UNFOLD_DEPTH = 4  # nested calls of a macro that calls itself written out where its text is captured (a schema's depth)
TOO_DEEP = "__nested_too_deep"  # called where a call is nested deeper: the TEMPLATE stops with an error there
# Written-out copies of a macro that calls itself grow as (its calls of itself) ** depth: past this many parse nodes in all
# (GigaChat's json_schema_to_typescript: 337 nodes, 3 calls of itself, 40 copies down to 4 calls), the call is left to be
# refused, naming it, rather than converted slowly into a TEMPLATE too large to send
UNFOLD_BUDGET = 4000
UNSET = "__unset_in_ollama"  # a name no template sets: Jinja reads it as undefined, the converter folds it so


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


def kept_calls_to_output(ast: nodes.Template) -> nodes.Template:
    """`set x = f(...)` of a macro f that calls itself, where x is read once, as a piece of the output right after it (GigaChat's
    `set type_str = json_schema_to_typescript(val, indent + '  ')` then `{{ indent + key + ': ' + type_str + ',' }}`): the
    call is written in that output instead, where a Go define can write its text. The text is the same: the pieces before
    it are plain expressions, and the macro changes no state of the caller's (it may make its own namespace only)."""
    recursive = {m.name for m in ast.body if isinstance(m, nodes.Macro) and _unfoldable(m)}
    if not recursive:
        return ast
    loads: dict[str, int] = {}
    for n in ast.find_all(nodes.Name):
        loads[n.name] = loads.get(n.name, 0) + 1 if n.ctx == "load" else loads.get(n.name, 0)
    # a name set once, by a plain `set` (never a parameter, a loop target or a block)
    stores = [a.target.name for a in ast.find_all(nodes.Assign) if isinstance(a.target, nodes.Name)]
    stores += [n.name for n in ast.find_all(nodes.Name) if n.ctx in ("param", "store")]
    ast = copy.deepcopy(ast)
    for owner in [ast, *ast.find_all(nodes.Node)]:
        for attr in ("body", "else_"):
            body = getattr(owner, attr, None)
            if isinstance(body, list) and body and isinstance(body[0], nodes.Node):
                setattr(owner, attr, _moved(body, recursive, loads, stores))
    return ast


def _moved(body: list[nodes.Node], recursive: set[str], loads: dict[str, int], stores: list[str]) -> list[nodes.Node]:
    out: list[nodes.Node] = []
    for i, node in enumerate(body):
        after = body[i + 1] if i + 1 < len(body) else None
        kept = isinstance(node, nodes.Assign) and isinstance(node.target, nodes.Name) and isinstance(node.node, nodes.Call) \
            and isinstance(node.node.node, nodes.Name) and node.node.node.name in recursive
        if kept and isinstance(after, nodes.Output):
            assert isinstance(node, nodes.Assign) and isinstance(node.target, nodes.Name)
            name = node.target.name
            if loads.get(name) == 1 and stores.count(name) == 2 and _replace_piece(after, name, cast("nodes.Expr", node.node)):
                continue
        out.append(node)
    return out


def _replace_piece(output: nodes.Output, name: str, call: nodes.Expr) -> bool:
    """Replace the load of `name` that is an operand of a concatenation (`+`, `~`) or an item of the output, if there is one."""
    for i, item in enumerate(output.nodes):
        if isinstance(item, nodes.Name) and item.name == name:
            output.nodes[i] = call
            return True
        if _replace_operand(item, name, call):
            return True
    return False


def _replace_operand(expr: nodes.Node, name: str, call: nodes.Expr) -> bool:
    if isinstance(expr, nodes.Concat):
        for i, part in enumerate(expr.nodes):
            if isinstance(part, nodes.Name) and part.name == name:
                expr.nodes[i] = call
                return True
        return any(_replace_operand(part, name, call) for part in expr.nodes)
    if isinstance(expr, nodes.Add):
        for side in ("left", "right"):
            part = getattr(expr, side)
            if isinstance(part, nodes.Name) and part.name == name:
                setattr(expr, side, call)
                return True
        return _replace_operand(expr.left, name, call) or _replace_operand(expr.right, name, call)
    return False


def hoist_macro_calls(ast: nodes.Template) -> nodes.Template:
    """Macro calls inside expressions, each rendered first into a `set` block the expression then reads."""
    macros = {m.name: m for m in ast.body if isinstance(m, nodes.Macro) and (_inlinable(m) or _unfoldable(m))}
    if not macros or not any(isinstance(c.node, nodes.Name) and c.node.name in macros for c in ast.find_all(nodes.Call)):
        return ast
    ast = copy.deepcopy(ast)
    body = {m.name: m for m in ast.body if isinstance(m, nodes.Macro) and m.name in macros}
    hoister = _Hoist({k: m for k, m in body.items() if _inlinable(m)}, {k: copy.deepcopy(m) for k, m in body.items() if not _inlinable(m)})
    ast.body = hoister.statements(ast.body)
    rest = [n for n in ast.body if not (isinstance(n, nodes.Macro) and n.name in hoister.macros)]
    called = {c.node.name for n in rest for c in n.find_all(nodes.Call) if isinstance(c.node, nodes.Name)}
    ast.body = [n for n in ast.body if not (isinstance(n, nodes.Macro) and n.name in hoister.macros and n.name not in called)]
    return ast


class _Hoist:
    def __init__(self, macros: dict[str, nodes.Macro], recursive: dict[str, nodes.Macro]) -> None:
        self.macros = macros
        self.recursive = recursive  # macros that call themselves: unfolded where their text is captured
        self.depth = 0
        self.unfolding = 0  # how many bodies of macros that call themselves enclose the statement
        self.defining = 0  # inside the definition of a macro that calls itself
        self.in_output = False  # an output outside such bodies writes a call as a Go define does (gotemplate/recursion.py)
        self.alone: nodes.Node | None = None  # the call a statement evaluates before anything else, if any

    def statements(self, body: list[nodes.Node]) -> list[nodes.Node]:
        out: list[nodes.Node] = []
        for node in body:
            if isinstance(node, nodes.Macro) and node.name in self.macros:
                out.append(node)  # a body is hoisted where it is expanded
                continue
            if isinstance(node, nodes.Macro) and node.name in self.recursive:
                self.defining += 1  # the body of a Go define: its own calls stay calls, which the define writes out
                try:
                    node.body = self.statements(node.body)
                finally:
                    self.defining -= 1
                out.append(node)
                continue
            for attr in ("body", "else_"):
                if isinstance(getattr(node, attr, None), list):
                    setattr(node, attr, self.statements(getattr(node, attr)))
            for branch in getattr(node, "elif_", []):
                branch.body = self.statements(branch.body)
            out.extend(self.hoisted(node))
            out.append(node)
        return out

    def hoisted(self, node: nodes.Node) -> list[nodes.Node]:
        """`set` blocks for the macro calls in the node's own expressions (not in its nested statements), the calls replaced."""
        exprs: list[tuple[nodes.Node, str, int | None]]
        if isinstance(node, nodes.Output):
            exprs = [(node, "nodes", i) for i in range(len(node.nodes))]
        elif isinstance(node, (nodes.Assign, nodes.For, nodes.If)):
            exprs = [(node, {nodes.Assign: "node", nodes.For: "iter", nodes.If: "test"}[type(node)], None)]
        else:
            return []
        blocks: list[nodes.Node] = []
        for owner, attr, index in exprs:
            value = getattr(owner, attr) if index is None else getattr(owner, attr)[index]
            # Written out before the statement, a macro runs before the rest of it: one that changes state must be all
            # the statement evaluates before it (the whole value, under filters; the first thing an output writes)
            first = index is None or all(isinstance(n, nodes.TemplateData) for n in owner.nodes[:index])  # type: ignore[attr-defined]
            self.alone = _subject(value) if first else None
            self.in_output = isinstance(owner, nodes.Output)
            new = self.replace(value, blocks, guarded=False)
            if index is None:
                setattr(owner, attr, new)
            else:
                getattr(owner, attr)[index] = new
        return blocks

    def replace(self, expr: nodes.Node, blocks: list[nodes.Node], *, guarded: bool) -> nodes.Node:
        if isinstance(expr, nodes.Call) and isinstance(expr.node, nodes.Name) and expr.node.name in self.recursive \
                and not self.defining and (self.unfolding or not self.in_output):
            return self.unfold(expr, blocks, guarded=guarded)
        if isinstance(expr, nodes.Call) and isinstance(expr.node, nodes.Name) and expr.node.name in self.macros:
            macro = self.macros[expr.node.name]
            local = {n.target.name for n in macro.find_all(nodes.Assign) if isinstance(n.target, nodes.Name)}
            stateful = any(ref.name not in local for ref in macro.find_all(nodes.NSRef))  # a namespace of the caller's
            if expr.dyn_args or expr.dyn_kwargs or (stateful and (guarded or expr is not self.alone)) or self.depth > 16:
                return expr  # refused by the conversion, which names the macro
            expr.args = [cast("nodes.Expr", self.replace(a, blocks, guarded=guarded)) for a in expr.args]
            name = f"__macro{next(_ids)}"
            self.depth += 1
            try:
                body = self.statements(_Expand(self.macros).body(macro, expr))
            finally:
                self.depth -= 1
            blocks.append(nodes.AssignBlock(nodes.Name(name, "store", lineno=expr.lineno), None, body, lineno=expr.lineno))
            return nodes.Name(name, "load", lineno=expr.lineno)
        for field in expr.fields:
            child = getattr(expr, field, None)
            inner = guarded or (isinstance(expr, nodes.CondExpr) and field != "test") or (isinstance(expr, (nodes.And, nodes.Or)) and field == "right")
            if isinstance(child, nodes.Node) and not isinstance(child, nodes.Stmt):
                setattr(expr, field, self.replace(child, blocks, guarded=inner))
            elif isinstance(child, list):
                setattr(expr, field, [self.replace(c, blocks, guarded=inner) if isinstance(c, nodes.Node) else c for c in child])
        return expr


    def unfold(self, call: nodes.Call, blocks: list[nodes.Node], *, guarded: bool) -> nodes.Node:
        """A call of a macro that calls itself, whose text is captured: its body written out like any macro's, down to
        UNFOLD_DEPTH nested calls; a call nested deeper calls TOO_DEEP, which stops Go's render there."""
        if guarded or call.dyn_args or call.dyn_kwargs:
            return call  # the call would run where Jinja may not (and may fail there): refused by the conversion
        if self.unfolding >= UNFOLD_DEPTH:
            return nodes.Call(nodes.Name(TOO_DEEP, "load", lineno=call.lineno), [], [], None, None, lineno=call.lineno)
        assert isinstance(call.node, nodes.Name)
        macro = self.recursive[call.node.name]
        sites = sum(1 for c in macro.find_all(nodes.Call) if isinstance(c.node, nodes.Name) and c.node.name == macro.name)
        if sum(1 for _ in macro.find_all(nodes.Node)) * sum(sites ** d for d in range(UNFOLD_DEPTH)) > UNFOLD_BUDGET:
            return call  # too large written out: refused by the conversion, which names the macro
        call.args = [cast("nodes.Expr", self.replace(a, blocks, guarded=guarded)) for a in call.args]
        name = f"__macro{next(_ids)}"
        self.unfolding += 1
        try:
            body = self.statements(_Expand({}).body(macro, call))
        finally:
            self.unfolding -= 1
        blocks.append(nodes.AssignBlock(nodes.Name(name, "store", lineno=call.lineno), None, body, lineno=call.lineno))
        return nodes.Name(name, "load", lineno=call.lineno)


def _subject(expr: nodes.Node) -> nodes.Node:
    """The innermost subject under a chain of filters (`render(x) | trim` -> `render(x)`)."""
    while isinstance(expr, nodes.Filter) and expr.node is not None:
        expr = expr.node
    return expr


def _unfoldable(macro: nodes.Macro) -> bool:
    """A macro that calls itself, and uses no caller, varargs or kwargs, and changes no namespace but its own."""
    names = {n.name for n in macro.find_all(nodes.Name)}
    own = {a.target.name for a in macro.find_all(nodes.Assign) if isinstance(a.target, nodes.Name)}
    return macro.name in names and not names & {"caller", "varargs", "kwargs"} and all(r.name in own for r in macro.find_all(nodes.NSRef))


def _inlinable(macro: nodes.Macro) -> bool:
    names = {n.name for n in macro.find_all(nodes.Name)}
    return macro.name not in names and not names & {"caller", "varargs", "kwargs"}


def macro_body(macro: nodes.Macro, bound: dict[str, nodes.Expr]) -> list[nodes.Node]:
    """The macro's statements with each parameter replaced by its bound expression and its own names renamed."""
    call = nodes.Call(nodes.Name(macro.name, "load"), [], [nodes.Keyword(k, v) for k, v in bound.items()], None, None)
    return _Expand({}).body(macro, call)


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
        # a parameter the body sets again (`set call = call.function`) is a local that starts as the argument
        reset = [name for name in params if any(n.name == name and n.ctx == "store" for n in macro.find_all(nodes.Name))]
        starts = [nodes.Assign(nodes.Name(name + suffix, "store", lineno=macro.lineno), bound.pop(name), lineno=macro.lineno) for name in reset]
        body = _Substitute(bound, {name: name + suffix for name in local | set(reset)}).visit_body(copy.deepcopy(macro.body))
        return [DictReads().visit(n) for n in [*starts, *body]]  # a dict literal passed in (`{'role': r}`) read by its keys


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


class DictReads:
    """`{"type": t}.type` (and `["type"]`) read as `t`, and a key the literal lacks as unset, as Jinja reads a dict."""

    def visit(self, node: nodes.Node) -> nodes.Node:
        for field in node.fields:
            child = getattr(node, field, None)
            if isinstance(child, nodes.Node):
                setattr(node, field, self.visit(child))
            elif isinstance(child, list):
                setattr(node, field, [self.visit(c) if isinstance(c, nodes.Node) else c for c in child])
        if isinstance(node, (nodes.Getattr, nodes.Getitem)) and isinstance(node.node, nodes.Dict):
            if isinstance(node, nodes.Getattr):
                key: Any = node.attr
                if hasattr(dict, key):
                    return node  # Jinja finds the dict's method first
            elif isinstance(node.arg, nodes.Const):
                key = node.arg.value
            else:
                return node
            if all(isinstance(p.key, nodes.Const) for p in node.node.items):
                found = [p.value for p in node.node.items if isinstance(p.key, nodes.Const) and p.key.value == key]
                return found[-1] if found else nodes.Name(UNSET, "load", lineno=node.lineno)
        return node
