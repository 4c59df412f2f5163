"""Statement handlers: output, if, for, set, loop control. One method per Jinja statement node."""

from __future__ import annotations

from dataclasses import dataclass, field

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate import kinds as K
from model_serving.serve.ollama.gotemplate.core import SET_MARK, Core, Loop, View, is_undefined, render_block, text_items, unset_callers
from model_serving.serve.ollama.gotemplate.records import record_keys
from model_serving.serve.ollama.gotemplate.text import go_failure, go_string, literal_text
from model_serving.serve.ollama.gotemplate.unroll import UNROLLED

RAISE_NOTE = "raise_exception checks (input validation) are not carried over; Ollama renders such inputs instead of refusing them."


@dataclass
class Scope:
    declared: set[str]
    shadowed: set[str] = field(default_factory=set)  # names a loop body redeclares, starting from the outer value


class Statements(Core):
    def block(self, body: list[nodes.Node], scope: Scope) -> str:
        # Jinja's `set` inside an `if` stays visible after it; Go's would not, so every runtime name
        # the block assigns is declared once at its start.
        hoisted = []
        for name in self.assigned_here(body):
            if name not in scope.declared:
                start = f"${name}" if name in scope.shadowed else '""'
                hoisted.append(f"{{{{ ${name} := {start} }}}}")
                scope.declared.add(name)
        return "".join(hoisted) + "".join(self.stmt(n, scope) for n in body)

    def assigned_here(self, body: list[nodes.Node]) -> list[str]:
        """Go names of the runtime variables `body` assigns (namespace attributes as ns_attr)."""
        names: list[str] = []
        for n in body:
            if isinstance(n, nodes.Assign):
                names.extend(go for key, go in self.assign_keys(n) if key in self.runtime)
            elif isinstance(n, nodes.AssignBlock) and isinstance(n.target, nodes.Name) and n.target.name in self.runtime:
                names.append(n.target.name)
            elif isinstance(n, nodes.If):
                for part in (n.body, *(e.body for e in n.elif_), n.else_):
                    names.extend(self.assigned_here(part))
        return list(dict.fromkeys(names))

    def assign_keys(self, n: nodes.Assign) -> list[tuple[str, str]]:
        """(runtime key, Go name) per name the assignment sets."""
        if isinstance(n.target, nodes.NSRef):
            return [(f"{n.target.name}.{n.target.attr}", f"{n.target.name}_{n.target.attr}")]
        if isinstance(n.target, nodes.Name) and n.target.name in self.namespaces and isinstance(n.node, nodes.Call):
            return [(f"{n.target.name}.{kw.key}", f"{n.target.name}_{kw.key}") for kw in n.node.kwargs]
        if isinstance(n.target, nodes.Name):
            fields = record_keys(n.node) or []  # a dict built at render time keeps each value in a variable of its own
            return [(n.target.name, n.target.name)] + [(n.target.name, f"{n.target.name}_k_{k}") for k in fields]
        return [(t.name, t.name) for t in n.target.find_all(nodes.Name)]

    def stmt(self, node: nodes.Node, scope: Scope) -> str:
        handler = getattr(self, f"s_{type(node).__name__}", None)
        if handler is None:
            raise self.fail(self.describe(node), node, _HINTS.get(type(node).__name__, ""))
        if not isinstance(node, (nodes.Macro, nodes.CallBlock)):
            self.drop_unkept_gets(node)
        return self.with_prelude(handler, node, scope)

    def drop_unkept_gets(self, node: nodes.Node) -> None:
        """`x.get(key)` (or with a default) of a key Ollama drops from a tool's parameters or a property (GigaChat's
        `schema.get("additionalProperties")`, a property's `format`): None (or the default) in every request Ollama renders,
        written as that constant in the statement's own expressions (not in the statements nested in it)."""
        for name in node.fields:
            child = getattr(node, name, None)
            if isinstance(child, nodes.Node) and not isinstance(child, nodes.Stmt):
                setattr(node, name, self.without_unkept_gets(child))
            elif isinstance(child, list) and not any(isinstance(c, nodes.Stmt) for c in child):
                setattr(node, name, [self.without_unkept_gets(c) if isinstance(c, nodes.Node) else c for c in child])

    def without_unkept_gets(self, expr: nodes.Node) -> nodes.Node:
        self.drop_unkept_gets(expr)
        if not (isinstance(expr, nodes.Call) and isinstance(expr.node, nodes.Getattr) and expr.node.attr == "get" and 1 <= len(expr.args) <= 2
                and not expr.kwargs and expr.dyn_args is None and expr.dyn_kwargs is None):
            return expr
        kind, args = self.kind(expr.node.node), [self.fold(a) for a in expr.args]
        if kind not in K.KEPT_KEYS or any(a is None for a in args) or not isinstance(args[0].value, str) or args[0].value in K.KEPT_KEYS[kind]:  # type: ignore[union-attr]
            return expr
        const = nodes.Const(args[1].value if len(args) == 2 else None, lineno=expr.lineno)  # type: ignore[union-attr]
        self.alive.extend([expr, const])  # folds are cached by node id: the call replaced must not be freed and its id reused
        return const

    def s_Output(self, node: nodes.Output, scope: Scope) -> str:
        return "".join(self.recursive_output(child) if self.calls_recursive(child) else self.output_item(child) for child in node.nodes)

    def s_Continue(self, node: nodes.Continue, scope: Scope) -> str:
        return "{{ continue }}"

    def s_Break(self, node: nodes.Break, scope: Scope) -> str:
        return "{{ break }}"

    def output_item(self, child: nodes.Node) -> str:
        if isinstance(child, nodes.TemplateData):
            return self.write_text(child.data)
        if self.is_raise(child):
            self.note(RAISE_NOTE)
            return ""
        folded = self.fold(child)
        if folded is not None:
            return self.write_text("" if is_undefined(folded.value) else str(folded.value))
        if isinstance(child, nodes.CondExpr):
            test = self.truth(child.test)
            if test in ("true", "false"):
                taken = child.expr1 if test == "true" else child.expr2
                return self.output_item(taken) if taken is not None else ""
            other = self.output_item(child.expr2) if child.expr2 is not None else ""
            return f"{{{{ if {test} }}}}{self.output_item(child.expr1)}{{{{ else }}}}{other}{{{{ end }}}}"
        if self.unset_get(child):
            return self.write_text("None")  # dict.get of a key no message from Ollama has
        kind = self.kind(child)
        if kind == "bool":
            # Jinja prints a Python bool; Go would print true/false
            return f"{{{{ if {self.truth(child)} }}}}{self.write_text('True')}{{{{ else }}}}{self.write_text('False')}{{{{ end }}}}"
        if kind in ("value", "scalar", "strings") or self.json_field(child) is not None:
            return self.write_value(self.pystr(child))  # a list of names prints as Python's repr: ['string', 'null']  # Jinja prints str() of a JSON value: [9, 15], True, None
        if kind not in ("string", "int", None):
            raise self.fail(f"printing a {kind} value without tojson (Jinja writes a Python repr)", child)
        return self.write_value(self.expr(child))

    def walk_of_its_own(self, node: nodes.For, scope: Scope) -> str | None:
        """A loop that is not a range over a list: .items() or dictsort of a mapping, a reversed list, the pieces of a
        split, text's characters, an argument's items, characters or keys, a list of text kept as one string; else None."""
        if isinstance(node.target, nodes.Tuple) and items_base(node.iter) is not None:
            return self.for_items(node, scope)
        if self.is_dictsort(node):
            return self.for_dictsort(node, scope)
        if not isinstance(node.target, nodes.Name):
            raise self.several_targets(node)
        if self.is_reversed(node.iter):
            return self.for_reversed(node, scope)
        if self.split_of(node.iter) is not None:
            return self.for_split(node, scope)
        kind = self.kind(node.iter)
        if kind in K.CASED_LISTS:
            return self.for_cased(node, scope, K.CASED_LISTS[kind])
        if kind in ("string", "value", "nameset"):
            return {"string": self.for_text, "value": self.for_value, "nameset": self.for_nameset}[kind](node, scope)
        return None

    def several_targets(self, node: nodes.For) -> Exception:
        return self.fail("a for loop over several targets other than dict.items()", node, "for")

    def unset_get(self, node: nodes.Node) -> bool:
        if not (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and node.node.attr == "get" and len(node.args) == 1):
            return False
        key = self.fold(node.args[0])
        kind = self.kind(node.node.node)
        return key is not None and kind in K.CLOSED and key.value not in K.FIELDS[kind or ""]

    def write_text(self, text: str) -> str:
        """Literal text, written out, or added to the text being captured (a `set` block, a macro called in an expression)."""
        if not self.captures:
            return literal_text(text)
        return f"{{{{ {self.captures[-1]} = print {self.captures[-1]} {go_string(text)} }}}}" if text else ""

    def write_value(self, go: str) -> str:
        if not self.captures:
            return f"{{{{ {go} }}}}"
        return f"{{{{ {self.captures[-1]} = print {self.captures[-1]} {go} }}}}"

    def s_If(self, node: nodes.If, scope: Scope) -> str:
        narrowed = self.narrowing(node)
        if narrowed is not None:
            return narrowed
        branches = [(node.test, node.body), *((e.test, e.body) for e in node.elif_)]
        if not node.elif_ and not node.else_ and self.raise_only(node.body):
            self.note(RAISE_NOTE)
            return ""
        out: list[str] = []
        seen: set[str] = set()
        for test, body in branches:
            folded = self.fold(test)
            go_test = ("true" if folded.value else "false") if folded is not None else "true" if self.always_present(test) else self.truth(test)
            if go_test == "false" or go_test in seen:
                continue  # a branch that can never be taken (an earlier one has the same test)
            seen.add(go_test)
            if go_test == "true":
                return self.close_if(out, self.tested_branch(None if out else go_test, body, scope))
            present = self.present_fields(test, body)
            self.known_present.extend(present)
            try:
                taken = self.tested_branch(None if out else go_test, body, scope)
            finally:
                del self.known_present[len(self.known_present) - len(present):]
            out.append(f"{{{{ {'else if' if out else 'if'} {go_test} }}}}{taken}")
        return self.close_if(out, self.tested_branch(None if out else "true", node.else_, scope) if node.else_ else "")

    def tested_branch(self, test: str | None, body: list[nodes.Node], scope: Scope) -> str:
        """A branch, with its Go test on record while it converts (None where earlier branches' tests also decide)."""
        self.conditions.append((len(self.loops), test))
        try:
            return self.branch(body, scope)
        finally:
            self.conditions.pop()

    def close_if(self, opened: list[str], rest: str) -> str:
        if not opened:
            return rest  # decided at registration time
        return "".join(opened) + (f"{{{{ else }}}}{rest}" if rest else "") + "{{ end }}"

    def branch(self, body: list[nodes.Node], scope: Scope) -> str:
        if self.raise_only(body):
            self.note(RAISE_NOTE)
            return ""
        return "".join(self.stmt(n, scope) for n in body)

    def s_For(self, node: nodes.For, scope: Scope) -> str:
        if node.recursive:
            raise self.fail("a recursive for loop", node, "for")
        if self.is_unset(items_base(node.iter) or node.iter):
            return self.branch(node.else_, scope) if node.else_ else ""  # over a field Ollama drops: nothing to loop over
        if not self.depends(node.iter):
            values = self.fold(node.iter)
            if values is not None and isinstance(values.value, (list, tuple, dict, str, range)) and not node.else_:
                return self.for_constant(node, scope, list(values.value))
            if values is not None and is_undefined(values.value):
                return self.branch(node.else_, scope) if node.else_ else ""  # a caller variable Ollama never passes (documents)
        if node.else_ and (isinstance(node.target, nodes.Tuple) or self.is_reversed(node.iter)):
            raise self.fail("a for loop with else over .items() or a reversed list", node, "for")
        if self.is_call(node.iter, "range") and isinstance(node.target, nodes.Name) and not node.else_ and node.test is None:
            return self.for_range(node, scope)
        if isinstance(node.target, nodes.Name) and not node.else_ and self.kind(node.iter) in ("args", "properties", "property", *UNROLLED):
            # a loop over a mapping sees its keys: the same loop as over .items(), the value unused
            pair = nodes.Tuple([node.target, nodes.Name(f"__value{self.fresh('v')[2:]}", "store")], "store", lineno=node.lineno)
            node = nodes.For(pair, nodes.Filter(node.iter, "items", [], [], None, None, lineno=node.lineno), node.body, [], node.test,
                             False, lineno=node.lineno)
        walked = self.walk_of_its_own(node, scope)
        if walked is not None:
            return walked
        assert isinstance(node.target, nodes.Name)  # walk_of_its_own refused other targets
        view = self.seq_view(node.iter)
        bind = self.field_binding(node, view)
        loop = Loop(index=self.fresh("i"), iterable=view.base, target=bind or f"${node.target.name}", counter=self.counter)
        self.kinds[node.target.name] = view.element
        pre, test = self.inline_test(node, loop)  # the inline if: statements it needs and its Go test, both inside the range
        if view.pred is not None:
            test = view.pred(loop.target)
            loop.total = self.count(view)  # loop.index/first/last/length count the kept items only
        elif test is not None and any(isinstance(n, nodes.Name) and n.name == "loop" for n in node.find_all(nodes.Name)):
            loop.total = self.fresh("n")
            self.emit(f"{{{{ {loop.total} := 0 }}}}{{{{ range {loop.target} := {view.base} }}}}{pre}{{{{ if {test} }}}}"
                      f'{{{{ {loop.total} = len (printf "%*s " {loop.total} "") }}}}{{{{ end }}}}{{{{ end }}}}')
        self.loops.append(loop)
        try:
            body = self.block(node.body, self.inner_scope(node, scope, {node.target.name}))
        finally:
            self.loops.pop()
        body = self.bind_field(node, loop, f"{bind}.{view.attr}", body) if bind else body
        otherwise = self.branch(node.else_, scope) if node.else_ else ""
        if loop.total:
            # a counter of kept items stands in for the range index
            step = f'{{{{ {loop.index} = $kept{loop.counter} }}}}{{{{ $kept{loop.counter} = len (printf "%*s " $kept{loop.counter} "") }}}}'
            head = f"{{{{ $kept{loop.counter} := 0 }}}}{{{{ {loop.index} := 0 }}}}{{{{ range {loop.target} := {view.base} }}}}{pre}"
            after = f"{{{{ if not $kept{loop.counter} }}}}{otherwise}{{{{ end }}}}" if otherwise else ""
            return self.loop_setup(loop) + head + f"{{{{ if {test} }}}}{step}{self.loop_start(loop)}{body}{{{{ end }}}}{{{{ end }}}}" + after
        if test is not None and otherwise:
            kept = self.fresh("any")  # Jinja's else runs when the inline if kept no item
            body = f"{pre}{{{{ if {test} }}}}{{{{ {kept} = true }}}}{body}{{{{ end }}}}"
            return f"{{{{ {kept} := false }}}}{self.range_loop(loop, body)}{{{{ if not {kept} }}}}{otherwise}{{{{ end }}}}"
        if test is not None:
            body = f"{pre}{{{{ if {test} }}}}{body}{{{{ end }}}}"
        return self.range_loop(loop, body, otherwise)

    def field_binding(self, node: nodes.For, view: View) -> str:
        """The Go variable a range over a list of fields (`map(attribute=)`, a filled list) gives the whole item in, or ""."""
        if view.pred is not None and node.test is not None:
            raise self.fail("a for loop over a filtered list with an inline if", node, "for")
        if view.attr is None:
            return ""
        if node.test is not None:
            raise self.fail("a for loop with an inline if over a list of fields", node, "for")
        assert isinstance(node.target, nodes.Name)  # s_For refused other targets
        self.runtime.add(node.target.name)  # the loop's name is the item's field, set in the body
        return self.fresh("item")

    def bind_field(self, node: nodes.For, loop: Loop, field: str, body: str) -> str:
        if loop.prev or loop.next:
            raise self.fail("loop.previtem or loop.nextitem over a list of fields", node, "loop.")
        assert isinstance(node.target, nodes.Name)
        return f"{{{{ ${node.target.name} := {field} }}}}" + body

    def keyed_loop(self, node: nodes.For, key: str, value: str, base: nodes.Node, kind: str, what: str) -> tuple[str, Loop]:
        """The Go value and loop of `for key, value in` a mapping of properties or arguments (`what` names the walk)."""
        self.kinds[value] = "property" if kind == "properties" else "value"
        self.kinds[key] = "string"
        go = self.expr(base)
        # a map range has no index: loop.* counts the passes (loop.length is the map's len)
        loop = Loop(index=self.fresh("i"), iterable=go, target=f"${value}", counter=self.counter, total=f"(len {go})")
        if node.test is not None and any(isinstance(n, nodes.Getattr) and isinstance(n.node, nodes.Name) and n.node.name == "loop"
                                         and n.attr not in ("index", "index0", "first") for n in node.find_all(nodes.Getattr)):
            raise self.fail(f"loop.length, loop.last or loop.*item in a loop over {what} with an inline if", node, "for")
        return go, loop

    def inline_test(self, node: nodes.For, loop: Loop) -> tuple[str, str | None]:
        if node.test is None:
            return "", None
        self.frames.append([])
        self.loops.append(loop)  # the target is the loop's (Jinja gives the inline if no loop.*)
        try:
            test = self.truth(node.test)
        finally:
            self.loops.pop()
            pre = self.frames.pop()
        return "".join(pre), test

    def is_reversed(self, node: nodes.Node) -> bool:
        if isinstance(node, nodes.Filter) and node.name == "reverse" and node.node is not None and not node.args:
            return True
        if not (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Slice)):
            return False
        step = self.fold(node.arg.step) if node.arg.step is not None else None
        return step is not None and step.value == -1 and node.arg.start is None and node.arg.stop is None

    def for_reversed(self, node: nodes.For, scope: Scope) -> str:
        """`for x in seq[::-1]` (or `seq|reverse`): a forward range whose item is seq[len - 1 - i]."""
        assert isinstance(node.target, nodes.Name) and isinstance(node.iter, (nodes.Getitem, nodes.Filter))
        base = node.iter.node
        assert base is not None  # is_reversed checked the filter has its subject
        seq = self.expr(base)
        if node.test is not None or any(isinstance(n, nodes.Getattr) and n.attr in ("nextitem", "previtem") for n in node.find_all(nodes.Getattr)):
            raise self.fail("a reversed loop with an inline if or loop.previtem/nextitem", node, "for")
        loop = Loop(index=self.fresh("i"), iterable=seq, target=f"${node.target.name}", counter=self.counter)
        self.kinds[node.target.name] = K.ELEMENT.get(self.kind(base) or "")
        self.loops.append(loop)
        try:
            body = self.block(node.body, self.inner_scope(node, scope, {node.target.name}))
        finally:
            self.loops.pop()
        pick = f"{{{{ {loop.target} := index {seq} (len (slice (slice {seq} {loop.index}) 1)) }}}}"
        return self.range_loop(Loop(loop.index, seq, f"$_{loop.counter}", loop.counter, loop.prev, mods=loop.mods), pick + body)

    def inner_scope(self, node: nodes.For, scope: Scope, targets: set[str]) -> Scope:
        # A plain `set` inside a loop body does not leak out of it (Jinja scoping): shadow it there.
        mine = {go for n in node.body if isinstance(n, nodes.Assign) for key, go in self.assign_keys(n) if key in self.runtime and "." not in key}
        mine |= {k for k in self.assigned_here(node.body) if not any(k.startswith(f"{ns}_") for ns in self.namespaces)}  # sets inside ifs too
        return Scope(set(scope.declared - mine) | targets, scope.declared & mine)

    def range_loop(self, loop: Loop, body: str, otherwise: str = "") -> str:
        head = f"{{{{ range {loop.index}, {loop.target} := {loop.iterable} }}}}"
        tail = f"{{{{ else }}}}{otherwise}{{{{ end }}}}" if otherwise else "{{ end }}"  # Go's range else runs when nothing was ranged over
        return self.loop_setup(loop) + head + self.loop_start(loop) + body + tail

    def loop_setup(self, loop: Loop) -> str:
        pre = []
        if loop.prev:
            pre.append(f'{{{{ $prev{loop.counter} := "" }}}}{{{{ $last{loop.counter} := "" }}}}')
        if loop.next:
            pre.append(f'{{{{ $next{loop.counter} := "" }}}}')
        for (offset, divisor), var in loop.mods.items():
            pre.append(f"{{{{ {var} := {(offset - 1) % divisor} }}}}")
        return "".join(pre)

    def loop_start(self, loop: Loop) -> str:
        start = []
        if loop.prev:
            # loop.previtem: the item of the pass before, kept at the start of each pass (continue-safe).
            start.append(f"{{{{ $prev{loop.counter} = $last{loop.counter} }}}}{{{{ $last{loop.counter} = {loop.target} }}}}")
        if loop.next:
            rest = f"(slice {loop.iterable} {loop.index})"
            start.append(f'{{{{ $next{loop.counter} = "" }}}}{{{{ if gt (len {rest}) 1 }}}}{{{{ $next{loop.counter} = index {rest} 1 }}}}{{{{ end }}}}')
        for divisor, var in ((d, v) for (_, d), v in loop.mods.items()):
            start.append(f'{{{{ if eq {var} {divisor - 1} }}}}{{{{ {var} = 0 }}}}{{{{ else }}}}{{{{ {var} = len (printf "%*s " {var} "") }}}}{{{{ end }}}}')
        return "".join(start)

    def for_items(self, node: nodes.For, scope: Scope) -> str:
        base = items_base(node.iter)
        assert isinstance(node.target, nodes.Tuple) and base is not None
        key, value = (t.name for t in node.target.items if isinstance(t, nodes.Name))
        kind = self.kind(base)
        if kind in (*UNROLLED, "property"):
            return self.unroll_items(node, scope, key, value, base, kind)
        if kind == "value":
            # an argument's value (a macro walking call arguments): a Go map when Jinja's is a dict; Jinja fails on any other
            go = self.expr(base)
            base_name = self.fresh("m")[1:]
            self.kinds[base_name] = "args"
            self.runtime.add(base_name)
            mapping = nodes.For(node.target, nodes.Filter(nodes.Name(base_name, "load"), "items", [], [], None, None), node.body, [], node.test, False,
                                lineno=node.lineno)
            self.alive.append(mapping)
            walk = self.for_items(mapping, scope)
            return (f'{{{{ if eq (printf "%T" {go}) "map[string]interface {{}}" }}}}{{{{ ${base_name} := {go} }}}}{walk}'
                    f'{{{{ else }}}}{go_failure(".items() of a value that is not a mapping")}{{{{ end }}}}')
        if kind not in ("properties", "args"):
            raise self.fail(f"a loop over .items() of a {kind or 'runtime'} value", node, "items")
        self.note(K.SORTED_KEYS_NOTE)
        go, loop = self.keyed_loop(node, key, value, base, kind, ".items()")
        pre, test = self.inline_test(node, loop)
        self.loops.append(loop)
        try:
            body = self.block(node.body, self.inner_scope(node, scope, {key, value}))
        finally:
            self.loops.pop()
        step = f'{{{{ {loop.index} = $kept{loop.counter} }}}}{{{{ $kept{loop.counter} = len (printf "%*s " $kept{loop.counter} "") }}}}'
        head = f"{{{{ $kept{loop.counter} := 0 }}}}{{{{ {loop.index} := 0 }}}}{{{{ range ${key}, ${value} := {go} }}}}"
        if test is not None:  # the inline if keeps items: loop.index counts the kept ones
            return self.loop_setup(loop) + head + f"{pre}{{{{ if {test} }}}}" + step + self.loop_start(loop) + body + "{{ end }}{{ end }}"
        return self.loop_setup(loop) + head + step + self.loop_start(loop) + body + "{{ end }}"

    def s_Assign(self, node: nodes.Assign, scope: Scope) -> str:
        target, value = node.target, node.node
        if isinstance(target, nodes.Name) and target.name in self.namespaces and isinstance(value, nodes.Call) and self.is_call(value, "namespace"):
            return self.assign_namespace(target.name, value)
        special = self.kept_or_appended(target, value)
        if special is not None:
            return special
        if isinstance(target, nodes.NSRef):
            key, var = f"{target.name}.{target.attr}", f"${target.name}_{target.attr}"
            grown = self.list_grown(key, var, value, node)
            if grown is not None:
                return grown
        elif isinstance(target, nodes.Name):
            key, var = target.name, f"${target.name}"
        else:
            raise self.fail("assignment to several names at once", node, "set")
        if isinstance(target, nodes.Name) and key in self.store_counts and key not in self.loaded \
                and not any(True for _ in value.find_all(nodes.Call)) and not isinstance(value, nodes.Call):
            # a name of the template (not one a converted macro body renamed) that nothing reads, set by a value with no
            # side effects (MiniCPM's unused min_count)
            return ""
        split = self.split_name(key, value) if isinstance(target, nodes.Name) else None
        if split is not None:
            return split
        if isinstance(target, nodes.Name) and self.store_counts.get(key, 0) == 1 and self.is_view(value):
            # Go cannot hold a filtered list; a name bound to one once is read as the filter itself.
            self.aliases[key] = value
            return ""
        if key not in self.runtime:
            folded = self.fold(value)
            stored = {n.name for n in self.ast.find_all(nodes.Name) if n.ctx in ("store", "param")} | self.namespaces
            missing = unset_callers(value, self.runtime | set(self.consts) | stored) if folded is None else []
            if missing:
                raise self.fail(f"the caller variable{'s' if len(missing) > 1 else ''} {', '.join(missing)}, which Ollama never passes; "
                                f"the template cannot render without {'them' if len(missing) > 1 else 'it'} (Jinja fails there too)", node, "set")
            if folded is None:
                raise self.fail("a value the converter could not compute at registration time", node, "set")
            self.set_const(key, folded.value)
            return ""
        record = self.assign_record(key, value, node) if isinstance(target, nodes.Name) else None
        if record is not None:
            return record
        kind: str | None = self.kind(value) or "value"
        empty = self.fold(value)
        if empty is not None and (empty.value == [] or empty.value is None) and var[1:] in self.kinds:
            kind = self.kinds[var[1:]]  # `set tools = []` or `= none` keeps what the name holds otherwise
            if kind in K.SEQUENCES:
                # an empty list, which Go can range over and count as Jinja does with none (its filters skip a none)
                out = self.assign_to(var, nodes.Const([], lineno=node.lineno))
                self.kinds[var[1:]] = kind
                return out
        out = self.assign_to(var, value)
        self.kinds[var[1:]] = kind  # after the value is converted: `set x = x.function` reads the old kind
        self.track(var[1:], value)
        return out

    def list_grown(self, key: str, var: str, value: nodes.Node, node: nodes.Node) -> str | None:
        """`set ns.x = ns.x + [item]` of a list Go keeps as no list: a list a loop fills, joined text, a list of text."""
        if key in self.collected:
            return self.collect_item(key, value, node)
        if key in self.joined and key in self.runtime:
            assert isinstance(value, nodes.Add)  # joined_lists checked the shape
            return self.joined_append(var, key, value, node)
        if key in self.name_sets:
            assert isinstance(value, nodes.Add) and isinstance(value.right, nodes.List)  # name_sets checked the shape
            item = value.right.items[0]
            if self.kind(item) != "string":
                raise self.fail("a list built at render time of values that are not text", node, "+")
            return f"{{{{ {var} = print {var} {self.expr(item)} {go_string(SET_MARK)} }}}}"
        return None

    def kept_or_appended(self, target: nodes.Node, value: nodes.Node) -> str | None:
        """A recursive macro's text kept in a name (written out in place), or an item added to a queue; else None."""
        if isinstance(target, nodes.Name) and isinstance(value, nodes.Call) and self.recursive_call_of(value) is not None:
            return self.kept_call(target.name, value)
        return self.queue_append(value)

    def track(self, name: str, value: nodes.Node) -> None:
        """What the name's value is known to be after this set: text in every conversation, or a None Go holds as ""."""
        (self.held_none.add if self.unset_get(value) else self.held_none.discard)(name)
        (self.always_text.add if self.is_always_text(value) else self.always_text.discard)(name)

    def always_present(self, node: nodes.Node) -> bool:
        """A tool call's function: always there, with a name, in a call Ollama hands over (a tool may have none: code_interpreter)."""
        return self.field_key(node) == ("toolcall", "function")

    def is_always_text(self, node: nodes.Node) -> bool:
        """Whether the value is text in every conversation (a message's content, text filters of such values, literals)."""
        if isinstance(node, nodes.Name):
            return node.name in self.always_text
        if isinstance(node, nodes.Const):
            return isinstance(node.value, str)
        if isinstance(node, nodes.Or):
            # `content or ''`: the text when it is not empty, else the default
            return self.is_always_text(node.right) and (self.is_always_text(node.left) or self.kind(node.left) == "string")
        if isinstance(node, nodes.Filter) and node.name == "default" and node.args and node.node is not None:
            # `content | default('', true)`: Ollama's text, or the text default where it is empty
            return isinstance(node.args[0], nodes.Const) and isinstance(node.args[0].value, str) and self.kind(node.node) == "string"
        if isinstance(node, nodes.Filter):
            return node.name in ("tojson", "string") or (node.name in ("trim", "upper", "lower") and node.node is not None and self.is_always_text(node.node))
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            key = self.field_key(node)
            return key in K.ALWAYS_SET and self.kind(node) == "string"
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and node.node.attr == "get" and node.args and not node.kwargs:
            name = self.fold(node.args[0])
            return name is not None and (self.kind(node.node.node) or "", name.value) in K.ALWAYS_SET and self.kind(node) == "string"
        return False

    def s_AssignBlock(self, node: nodes.AssignBlock, scope: Scope) -> str:
        if not isinstance(node.target, nodes.Name):
            raise self.fail(self.describe(node), node, "set")
        name = node.target.name
        if name not in self.runtime and not self.depends(node):
            text = render_block(node, self.registration_context())  # reads no conversation: rendered at registration
            if text is None:
                raise self.fail(self.describe(node), node, "set")
            self.set_const(name, text)
            return ""
        if node.filter is not None and not (node.filter.name == "trim" and node.filter.node is None and not node.filter.args):
            raise self.fail(f"a block assignment through the filter {node.filter.name!r}", node, "set")
        # Go keeps no rendered text in a variable, but the block's text can be built up with print, piece by piece.
        var = f"${name}"
        self.captures.append(var)
        try:
            body = self.block(node.body, Scope(set(scope.declared), set(scope.shadowed)))
        finally:
            self.captures.pop()
        self.kinds[name] = "string"
        self.always_text.add(name)
        if node.filter is None:
            return f'{{{{ {var} = "" }}}}{body}'
        code, stripped = self.strip_code(var)
        return f'{{{{ {var} = "" }}}}{body}{code}{{{{ {var} = {stripped} }}}}'

    def assign_to(self, var: str, value: nodes.Node) -> str:
        if isinstance(value, nodes.CondExpr) and self.fold(value) is None:
            test = self.truth(value.test)
            if test in ("true", "false"):
                other = value.expr1 if test == "true" else value.expr2
                return self.assign_to(var, other) if other is not None else f'{{{{ {var} = "" }}}}'
            other_part = f"{{{{ else }}}}{self.assign_to(var, value.expr2)}" if value.expr2 is not None else ""
            return f"{{{{ if {test} }}}}{self.assign_to(var, value.expr1)}{other_part}{{{{ end }}}}"
        return f"{{{{ {var} = {self.expr(value)} }}}}"

    def assign_namespace(self, name: str, call: nodes.Call) -> str:
        out = []
        for kw in call.kwargs:
            if f"{name}.{kw.key}" in self.queues:
                out.append(f'{{{{ ${name}_{kw.key} = "" }}}}')
                self.kinds[f"{name}_{kw.key}"] = "queue"
            elif f"{name}.{kw.key}" in self.joined and f"{name}.{kw.key}" in self.runtime:
                assert isinstance(kw.value, nodes.List)  # joined_lists checked the shape
                out.append(self.joined_start(f"${name}_{kw.key}", f"{name}.{kw.key}", kw.value))
                self.kinds[f"{name}_{kw.key}"] = "joined"
            elif f"{name}.{kw.key}" in self.name_sets:
                start = SET_MARK + "".join(item + SET_MARK for item in text_items(kw.value) or [])
                out.append(f"{{{{ ${name}_{kw.key} = {go_string(start)} }}}}")
                self.kinds[f"{name}_{kw.key}"] = "nameset"
            elif f"{name}.{kw.key}" in self.runtime:
                out.append(self.assign_to(f"${name}_{kw.key}", kw.value))
                self.kinds[f"{name}_{kw.key}"] = self.kind(kw.value) or "value"
            else:
                folded = self.fold(kw.value)
                if folded is None:
                    raise self.fail("a namespace value the converter could not compute at registration time", call, "namespace")
                self.set_const(f"{name}.{kw.key}", folded.value)
        return "".join(out)


def items_base(node: nodes.Node) -> nodes.Node | None:
    """The mapping of `m.items()` or `m | items`, else None."""
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and node.node.attr == "items" and not node.args:
        return node.node.node
    if isinstance(node, nodes.Filter) and node.name == "items" and not node.args:
        return node.node
    return None


_HINTS = {"Macro": "macro", "CallBlock": "call", "FilterBlock": "filter", "With": "with", "Include": "include", "Import": "import",
          "FromImport": "from", "AssignBlock": "set", "ExprStmt": "do"}
