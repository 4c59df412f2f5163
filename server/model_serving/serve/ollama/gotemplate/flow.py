"""Where a name's value is known from the order of statements: constants set in a loop body, names set on every path."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from jinja2 import nodes


def local_constants(ast: nodes.Template) -> set[str]:
    """Names set only to constants, directly in loop bodies (or the template's body), each read after a set in its own list.

    Qwen3-Coder's `{% set handled_keys = ['name', 'type'] %}` in a loop body, read by the macro written out below it: a
    loop body is its own scope, and each read sees the set just before it in the innermost list that sets the name, so
    the value is known while converting, pass or no pass. A set in an `if` (which leaks out of it) disqualifies the name.
    """
    scoped = [ast.body] + [f.body for f in ast.find_all(nodes.For)]
    everywhere = [getattr(n, a) for n in ast.find_all(nodes.Stmt) for a in ("body", "else_") if isinstance(getattr(n, a, None), list)]
    everywhere += [e.body for n in ast.find_all(nodes.If) for e in n.elif_]
    sets: dict[str, list[tuple[list[nodes.Node], int]]] = {}
    for body in [ast.body, *everywhere]:
        for i, n in enumerate(body):
            if isinstance(n, nodes.Assign) and isinstance(n.target, nodes.Name):
                sets.setdefault(n.target.name, []).append((body, i))
    found = set()
    names = list(ast.find_all(nodes.Name))
    stored = {n.name for n in names if n.ctx in ("store", "param")}
    stores: dict[str, int] = {}
    loads: dict[str, list[nodes.Name]] = {}
    for n in names:
        if n.ctx in ("store", "param"):
            stores[n.name] = stores.get(n.name, 0) + 1
        elif n.ctx == "load":
            loads.setdefault(n.name, []).append(n)
    walked: dict[int, tuple[set[int], int]] = {}  # statement -> (ids of its nodes, their number), each walked once
    for name, places in sets.items():
        # set once, in an if too (Muse's `set nd = descriptions if descriptions is defined else {}`): a read after it in
        # the same list sees that set, and a read anywhere else is not after a set in its list, so it disqualifies the name
        if stores.get(name, 0) != len(places) or not all((len(places) == 1 or any(b is s for s in scoped)) and _constant(b[i].node, stored)  # type: ignore[attr-defined]
                                                         for b, i in places):
            continue
        if all(_read_after_set(load, places, walked) for load in loads.get(name, [])):
            found.add(name)
    return found


def _read_after_set(load: nodes.Name, places: list[tuple[list[nodes.Node], int]], walked: dict[int, tuple[set[int], int]]) -> bool:
    """Whether, in the innermost list that sets the name around this read, the read comes after the first set."""
    best: tuple[int, bool] | None = None  # (size of the enclosing statement, read after the list's first set)
    for body in {id(b): b for b, _ in places}.values():
        first = min(i for b, i in places if b is body)
        for i, stmt in enumerate(body):
            if id(stmt) not in walked:
                ids = {id(n) for n in _walk(stmt)}
                walked[id(stmt)] = (ids, len(ids))
            ids, size = walked[id(stmt)]
            if id(load) in ids and (best is None or size < best[0]):
                best = (size, i > first)
    return best is not None and best[1]


def _constant(value: nodes.Node, stored: set[str]) -> bool:
    """Literals, or a choice between them by tests of caller variables (names the template never sets: known at registration)."""
    if all(isinstance(n, (nodes.Const, nodes.List, nodes.Tuple, nodes.Dict, nodes.Pair)) for n in _walk(value)):
        return True
    chosen = (nodes.Const, nodes.List, nodes.Tuple, nodes.Dict, nodes.Pair, nodes.CondExpr, nodes.Test, nodes.Not, nodes.And, nodes.Or, nodes.Name)
    return all(isinstance(n, chosen) and not (isinstance(n, nodes.Name) and (n.name in stored or n.name in _GIVEN)) for n in _walk(value))


_GIVEN = {"messages", "tools", "add_generation_prompt", "bos_token", "eos_token", "loop"}  # names a TEMPLATE is handed


def definitely_set(name: str, body: list[nodes.Node], never_undefined: Callable[[nodes.Node], bool]) -> bool:
    """Whether running `body` always sets `name` to a defined value (a `set` in an `if` counts when every branch has one)."""
    for stmt in body:
        if isinstance(stmt, nodes.Assign) and isinstance(stmt.target, nodes.Name) and stmt.target.name == name and never_undefined(stmt.node):
            return True
        if isinstance(stmt, nodes.If) and stmt.else_ and all(definitely_set(name, b, never_undefined)
                                                             for b in (stmt.body, *(e.body for e in stmt.elif_), stmt.else_)):
            return True
    return False


def tagged_names(ast: nodes.Template) -> set[str]:
    """Names some `set` gives text holding a literal <think> or </think> (directly, or through another such name)."""
    found: set[str] = set()
    while True:
        before = len(found)
        for a in ast.find_all(nodes.Assign):
            parts = _pieces(a.node)
            if any(isinstance(n, nodes.Const) and isinstance(n.value, str) and ("<think>" in n.value or "</think>" in n.value) for n in parts) \
                    or any(isinstance(n, nodes.Name) and n.name in found for n in parts):
                found |= {t.name for t in _walk(a.target) if isinstance(t, nodes.Name)}
        if len(found) == before:
            return found


def floor_values(ast: nodes.Template, namespaces: set[str], negative: set[str]) -> dict[str, int]:
    """Of the Go names that may be negative, those whose every negative assignment is one and the same constant, and
    whose other assignments read no negative name and hold no negative constant (a loop index, a length)."""
    values: dict[str, set[int]] = {}
    tainted: set[str] = set()
    for a in ast.find_all(nodes.Assign):
        pairs: list[tuple[str, nodes.Node]] = []
        if isinstance(a.target, nodes.NSRef):
            pairs = [(f"{a.target.name}_{a.target.attr}", a.node)]
        elif isinstance(a.target, nodes.Name) and a.target.name in namespaces and isinstance(a.node, nodes.Call):
            pairs = [(f"{a.target.name}_{kw.key}", kw.value) for kw in a.node.kwargs]
        elif isinstance(a.target, nodes.Name):
            pairs = [(a.target.name, a.node)]
        for go, value in pairs:
            if go not in negative:
                continue
            low = _negative_constant(value)
            if low is not None:
                values.setdefault(go, set()).add(low)
            elif any(isinstance(n, nodes.Neg) or (isinstance(n, nodes.Name) and n.name in negative) or _negative_constant(n) is not None
                     or (isinstance(n, nodes.Getattr) and isinstance(n.node, nodes.Name) and f"{n.node.name}_{n.attr}" in negative)
                     for n in _walk(value)):
                tainted.add(go)
    return {go: next(iter(lows)) for go, lows in values.items() if len(lows) == 1 and go not in tainted}


def _negative_constant(value: nodes.Node) -> int | None:
    if isinstance(value, nodes.Neg) and isinstance(value.node, nodes.Const) and type(value.node.value) is int and value.node.value > 0:
        return -value.node.value
    if isinstance(value, nodes.Const) and type(value.value) is int and value.value < 0:
        return int(value.value)
    return None


def queue_names(ast: nodes.Template, namespaces: set[str]) -> set[str]:
    """Namespace attributes (as 'ns.attr') that start as [], change only by `set _ = ns.attr.append(x)` (the `_` never read)
    and `set y = ns.attr.pop(0)`, and are otherwise only tested for emptiness (`if ns.attr`)."""
    def key(node: nodes.Node | None) -> str | None:
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name in namespaces:
            return f"{node.node.name}.{node.attr}"
        return None

    starts = {f"{a.target.name}.{kw.key}" for a in ast.find_all(nodes.Assign) if isinstance(a.target, nodes.Name) and a.target.name in namespaces
              and isinstance(a.node, nodes.Call) for kw in a.node.kwargs if isinstance(kw.value, nodes.List) and not kw.value.items}
    loaded = {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}
    allowed: set[int] = set()
    for a in ast.find_all(nodes.Assign):
        call = a.node
        if isinstance(a.target, nodes.NSRef):
            starts.discard(f"{a.target.name}.{a.target.attr}")
        if not (isinstance(call, nodes.Call) and isinstance(call.node, nodes.Getattr) and key(call.node.node) and not call.kwargs):
            continue
        appends = call.node.attr == "append" and len(call.args) == 1 and isinstance(a.target, nodes.Name) and a.target.name not in loaded
        pops = call.node.attr == "pop" and len(call.args) == 1 and isinstance(call.args[0], nodes.Const) and call.args[0].value == 0
        if appends or pops:
            allowed.add(id(call.node.node))
    for test in [n.test for n in ast.find_all(nodes.If)] + [e.test for n in ast.find_all(nodes.If) for e in n.elif_]:
        allowed.add(id(test.node if isinstance(test, nodes.Not) else test))
    return {k for k in starts if all(id(g) in allowed for g in ast.find_all(nodes.Getattr) if key(g) == k)}


def collected_lists(ast: nodes.Template, namespaces: set[str], skip: set[str]) -> set[str]:
    """Namespace attributes ('ns.attr') that start as [], grow only by `+ [x]` or `+ [x.field]` in one loop over x, under
    that loop's ifs (no else), and are read only outside that loop."""
    def key(node: nodes.Node | None) -> str | None:
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name in namespaces:
            return f"{node.node.name}.{node.attr}"
        return None

    starts = {f"{a.target.name}.{kw.key}" for a in ast.find_all(nodes.Assign) if isinstance(a.target, nodes.Name) and a.target.name in namespaces
              and isinstance(a.node, nodes.Call) for kw in a.node.kwargs if isinstance(kw.value, nodes.List) and not kw.value.items} - skip
    loops: dict[str, set[int]] = {}
    growth: set[int] = set()
    for loop in ast.find_all(nodes.For):
        if not isinstance(loop.target, nodes.Name):
            continue
        for a in _under_ifs(loop.body):
            k = f"{a.target.name}.{a.target.attr}" if isinstance(a.target, nodes.NSRef) else None
            if k in starts and _grows(a.node, k, loop.target.name, key):
                loops.setdefault(k, set()).add(id(loop))
                growth.add(id(a.node.left))  # type: ignore[attr-defined]
    found = set()
    ns_sets: dict[str, list[nodes.Assign]] = {}
    for a in ast.find_all(nodes.Assign):
        if isinstance(a.target, nodes.NSRef):
            ns_sets.setdefault(f"{a.target.name}.{a.target.attr}", []).append(a)
    reads: dict[str, list[nodes.Getattr]] = {}
    for g in ast.find_all(nodes.Getattr):
        if (k := key(g)) in starts:
            reads.setdefault(k, []).append(g)
    for k in starts:
        sets = ns_sets.get(k, [])
        grown = [a for a in sets if isinstance(a.node, nodes.Add) and id(a.node.left) in growth]
        if len(loops.get(k, ())) != 1 or len(sets) != len(grown):
            continue
        loop = next(f for f in ast.find_all(nodes.For) if id(f) in loops[k])
        inside = {id(n) for n in _walk(loop)}
        if all(id(g) in growth or id(g) not in inside for g in reads.get(k, [])):
            found.add(k)
    return found


def _under_ifs(body: list[nodes.Node]) -> list[nodes.Assign]:
    """Assignments in `body` or in the bodies (not elif or else branches) of its ifs, at any depth of ifs."""
    out: list[nodes.Assign] = []
    for n in body:
        if isinstance(n, nodes.Assign):
            out.append(n)
        elif isinstance(n, nodes.If) and not n.elif_ and not n.else_:
            out.extend(_under_ifs(n.body))
    return out


def _grows(value: nodes.Node, k: str, target: str, key: Callable[[nodes.Node | None], str | None]) -> bool:
    if not (isinstance(value, nodes.Add) and key(value.left) == k and isinstance(value.right, nodes.List) and len(value.right.items) == 1):
        return False
    item = value.right.items[0]
    if isinstance(item, nodes.Getattr) or (isinstance(item, nodes.Getitem) and isinstance(item.arg, nodes.Const)):
        item = item.node
    return isinstance(item, nodes.Name) and item.name == target


def _pieces(value: nodes.Node) -> list[nodes.Node]:
    """The parts whose text ends up in the value: operands of `~` and `+`, both sides of an inline if, a filter's subject."""
    if isinstance(value, (nodes.Add, nodes.Concat, nodes.CondExpr, nodes.Filter)):
        children = value.nodes if isinstance(value, nodes.Concat) else \
            [value.left, value.right] if isinstance(value, nodes.Add) else \
            [value.expr1, value.expr2] if isinstance(value, nodes.CondExpr) else [value.node]
        return [p for c in children if c is not None for p in _pieces(c)]
    return [value]


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    yield from node.find_all(nodes.Node)


def joined_lists(ast: nodes.Template, namespaces: set[str]) -> dict[str, str]:
    """Namespace attributes ('ns.attr') that a `namespace(...)` sets to a list literal, that grow only by `+ [item]`, and
    that are read only by `| join(sep)` with one constant separator: each maps to that separator.

    GigaChat's `sections`, started with `'namespace ' ~ name ~ ' {'` and joined with newlines: the joined text can be
    built as the list grows, each item printed after the separator, so Go needs no list.
    """
    def ref(node: nodes.Node | None) -> str | None:
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name in namespaces and node.ctx == "load":
            return f"{node.node.name}.{node.attr}"
        return None

    starts: set[str] = set()
    bad: set[str] = set()
    for a in ast.find_all(nodes.Assign):
        if isinstance(a.target, nodes.Name) and a.target.name in namespaces and isinstance(a.node, nodes.Call):
            for kw in a.node.kwargs:
                (starts if isinstance(kw.value, nodes.List) else bad).add(f"{a.target.name}.{kw.key}")
    allowed: set[int] = set()
    for a in ast.find_all(nodes.Assign):
        if isinstance(a.target, nodes.NSRef):
            grown = f"{a.target.name}.{a.target.attr}"
            if isinstance(a.node, nodes.Add) and ref(a.node.left) == grown and isinstance(a.node.right, nodes.List) and len(a.node.right.items) == 1:
                allowed.add(id(a.node.left))
            else:
                bad.add(grown)
    seps: dict[str, set[str]] = {}
    for f in ast.find_all(nodes.Filter):
        joined = ref(f.node) if f.name == "join" and not f.kwargs and f.dyn_args is None and f.dyn_kwargs is None else None
        sep = f.args[0] if len(f.args) == 1 else nodes.Const("") if not f.args else None
        if joined is not None and isinstance(sep, nodes.Const) and isinstance(sep.value, str):
            seps.setdefault(joined, set()).add(sep.value)
            allowed.add(id(f.node))
    bad |= {read for g in ast.find_all(nodes.Getattr) if (read := ref(g)) is not None and id(g) not in allowed}
    return {key: next(iter(found)) for key, found in seps.items() if key in starts - bad and len(found) == 1}
