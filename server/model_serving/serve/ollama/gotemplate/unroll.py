"""`for key, val in x.items()` over one of Ollama's fixed structs, unrolled field by field.

A tool, its function and the function's parameters reach a TEMPLATE as Go structs: their keys and
their order are known before any conversation, so the loop is written out once per field. The key
is a constant there (the inline filter, `key == ...` and string building are decided now), the
value is the field, and `is string` / `tojson` know its kind. A field Ollama leaves empty when it is
unset (a description, the required list) is skipped, as Jinja skips a missing key.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate.core import Core, Loop
from model_serving.serve.ollama.gotemplate.tooljson import SCHEMAS

# dictsort of a property: every key Ollama keeps in one, in Jinja's order (each optional: Ollama omits an empty one)
SORTED_PROPERTY = [("anyOf", "AnyOf", "anyof", True), ("description", "Description", "string", True), ("enum", "Enum", "values", True),
                   ("items", "Items", "value", True), ("properties", "Properties.ToMap", "properties", True),
                   ("required", "Required", "strings", True), ("type", "Type", "ptype", True)]
_TYPE_KINDS = ("string", "strings")  # a property's type as Jinja sees it: one name, or a list of names
PROPERTY_KEYS_NOTE = ("dictsort of a tool property walks the keys Ollama keeps in one (anyOf, description, enum, items, properties, "
                      "required, type): others, such as nullable or format, never reach a TEMPLATE, and one sent empty reads as not sent.")
# Structs whose every field the converter knows; a property is left out (Ollama's type is a list of names, Jinja's a string).
UNROLLED = ("tool", "toolfunc", "params")
NEXT = 'len (printf "%*s " {} "")'  # n + 1 (Go templates have no arithmetic)
ITEMS_NOTE = ("A loop over .items() of a tool, its function or its parameters is written out field by field in the order tool dicts "
              "carry them (type, function; name, description, parameters; type, properties, required). Keys Ollama does not keep "
              "(such as return or strict) are not seen, and an empty description or required list reads as a missing key.")


class Unroll(Core):
    def unroll_items(self, node: nodes.For, scope: Any, key: str, value: str, base: nodes.Node, kind: str, *, sort: bool = False) -> str:
        go = self.expr(base)
        self.note(ITEMS_NOTE)
        fields = []  # (Go test or "true", Jinja key, Go value, kind)
        schema = SCHEMAS[kind] if not sort else SORTED_PROPERTY if kind == "property" else sorted(SCHEMAS[kind], key=lambda f: (f[0].lower(), f[0]))
        if schema is SORTED_PROPERTY:
            self.note(PROPERTY_KEYS_NOTE)
        for name, go_field, field_kind, optional in schema:
            tests, idle = set(), set()
            for as_kind in _TYPE_KINDS if field_kind == "ptype" else (field_kind,):
                with self.field_bound(key, name, value, as_kind):
                    tests.add("true" if node.test is None else self.field_test(node.test))
                    idle.add(self.idle_pass(node))
            if tests == {"false"} or idle == {True}:
                continue
            if field_kind == "ptype" and (len(tests) > 1 or not sort):
                # .items() sees a property's keys in the order they were declared, which Ollama's struct does not keep
                raise self.fail(f"a loop over {'dictsort' if sort else '.items()'} of a property that reaches its type"
                                + (" with an inline if that reads it" if sort else ""), node, "for")
            test = tests.pop()
            if optional:
                test = f"{go}.{go_field}" if test == "true" else f"(and {go}.{go_field} {test})"
            fields.append((test, name, f"{go}.{go_field}", field_kind))
        fixed = all(test == "true" for test, *_ in fields)
        loop = Loop(index=self.fresh("i"), iterable=go, target=f"${value}", counter=self.counter, total="" if fixed else f"$n{self.counter}")
        out = [] if fixed else [f"{{{{ {loop.index} := 0 }}}}{{{{ $kept{loop.counter} := 0 }}}}{{{{ {loop.total} := 0 }}}}"]
        if not fixed:
            out += [f"{{{{ if {test} }}}}{{{{ {loop.total} = {NEXT.format(loop.total)} }}}}{{{{ end }}}}" for test, *_ in fields]
        always = [test == "true" for test, *_ in fields]
        for position, (test, name, go_value, field_kind) in enumerate(fields):
            loop.fixed = _fixed(position, always)
            step = "" if fixed else f"{{{{ {loop.index} = $kept{loop.counter} }}}}{{{{ $kept{loop.counter} = {NEXT.format(f'$kept{loop.counter}')} }}}}"
            if field_kind == "ptype":
                out.append(f"{{{{ if {test} }}}}{step}{self.type_body(node, scope, loop, (key, name, value), go_value)}{{{{ end }}}}")
                continue
            with self.field_bound(key, name, value, field_kind):
                body = self.unrolled_body(node, scope, loop, {key, value})
            # each pass is its own Go scope, so names the body sets stay inside it as they do in Jinja
            out.append(f"{{{{ if {test} }}}}{{{{ ${value} := {go_value} }}}}{step}{body}{{{{ end }}}}")
        return "".join(out)

    def idle_pass(self, node: nodes.For) -> bool:
        """Whether the pass, with the key bound, does nothing: the body is only ifs without else whose tests are false for
        this key (GigaChat's `if add_key in ADDITIONAL_JSON_KEYS`, keys Ollama never keeps in a property), and reads no
        loop.* that the pass would count."""
        if node.else_ or any(n.name == "loop" for s in node.body for n in s.find_all(nodes.Name)):
            return False
        for stmt in node.body:
            test = self.fold(stmt.test) if isinstance(stmt, nodes.If) and not stmt.elif_ and not stmt.else_ else None
            if test is None or test.value:
                return False
        return True

    def type_body(self, node: nodes.For, scope: Any, loop: Loop, names: tuple[str, str, str], go_type: str) -> str:
        """The pass over a property's type: Ollama holds a list of names where Jinja sees one name as text, so the body is
        written for each (one name: text; several: a list of names)."""
        key, name, value = names
        bodies = []
        for as_kind in _TYPE_KINDS:
            with self.field_bound(key, name, value, as_kind):
                bodies.append(self.unrolled_body(node, scope, loop, {key, value}))
        return (f"{{{{ if eq (len {go_type}) 1 }}}}{{{{ ${value} := index {go_type} 0 }}}}{bodies[0]}"
                f"{{{{ else }}}}{{{{ ${value} := {go_type} }}}}{bodies[1]}{{{{ end }}}}")

    def for_constant(self, node: nodes.For, scope: Any, values: list[Any]) -> str:
        """A loop over a list known at registration (a constant, a dict's sorted items): written out pass by pass."""
        if len(values) > 64 or any(True for _ in node.find_all((nodes.Break, nodes.Continue))):
            raise self.fail("a loop over a constant list with break or continue, or of more than 64 items", node, "for")
        names = [t.name for t in node.target.find_all(nodes.Name)]
        kept = []
        for value in values:
            with self.consts_bound(names, node.target, value):
                test = self.fold(node.test) if node.test is not None else None
                if node.test is not None and test is None:
                    raise self.fail("a loop over a constant list whose inline if reads the conversation", node, "if")
                if test is None or test.value:
                    kept.append(value)
        out = []
        for position, value in enumerate(kept):
            count = len(kept)
            fixed = {"index0": str(position), "index": str(position + 1), "first": _bool(position == 0), "last": _bool(position == count - 1),
                     "length": str(count), "revindex": str(count - position), "revindex0": str(count - position - 1)}
            loop = Loop(index=str(position), iterable="", target="", counter=self.counter, fixed=fixed)
            with self.consts_bound(names, node.target, value):
                body = self.unrolled_body(node, scope, loop, set())
            out.append(f"{{{{ if true }}}}{body}{{{{ end }}}}")  # each pass its own Go scope, as a Jinja loop body is
        return "".join(out)

    def for_range(self, node: nodes.For, scope: Any) -> str:
        """`for i in range(stop)`, `range(start, stop)` or `range(start, -1, -1)`: a range over an int (Go 1.22+), i computed per pass."""
        assert isinstance(node.iter, nodes.Call) and isinstance(node.target, nodes.Name)
        args = node.iter.args
        steps = [self.fold(a) for a in args[2:]]
        count, j = self.fresh("c"), self.fresh("j")
        if len(args) in (1, 2) and not node.iter.kwargs:
            start, stop = ("0", self.int_expr(args[0])) if len(args) == 1 else (self.int_expr(args[0]), self.int_expr(args[1]))
            setup = (f"{{{{ {count} := 0 }}}}{{{{ if gt {stop} {start} }}}}{{{{ {count} = len (slice (printf \"%*s\" {stop} \"\") {start}) }}}}"
                     f"{{{{ end }}}}")
            value = f'len (printf "%*s%*s" {start} "" {j} "")'  # start + j
        elif len(args) == 3 and steps[0] is not None and steps[0].value == -1 and self.fold(args[1]) is not None \
                and self.fold(args[1]).value == -1:  # type: ignore[union-attr]
            first = args[0]
            if isinstance(first, nodes.Sub) and isinstance(first.right, nodes.Const) and first.right.value == 1:
                setup = f"{{{{ {count} := {self.int_expr(first.left)} }}}}"  # range(n - 1, -1, -1) passes n times
            else:
                setup = f'{{{{ {count} := len (printf "%*s " {self.int_expr(first)} "") }}}}'
            value = f'len (slice (printf "%*s" {count} "") ({NEXT.format(j)}))'  # count - 1 - j
        else:
            raise self.fail("range() other than range(stop), range(start, stop) or range(start, -1, -1)", node, "range")
        loop = Loop(index=j, iterable="", target=f"${node.target.name}", counter=self.counter, total=count)
        self.kinds[node.target.name] = "int"
        self.loops.append(loop)
        try:
            body = self.block(node.body, self.inner_scope(node, scope, {node.target.name}))
        finally:
            self.loops.pop()
        if loop.prev or loop.next or loop.mods:
            raise self.fail("loop.previtem, loop.nextitem or loop.index % n in a loop over range()", node, "loop.")
        return f"{setup}{{{{ range {j} := {count} }}}}{{{{ {loop.target} := {value} }}}}{body}{{{{ end }}}}"

    @contextmanager
    def consts_bound(self, names: list[str], target: nodes.Node, value: Any) -> Iterator[None]:
        """The loop's target names bound to one item (unpacked for `for k, v in ...`), as constants."""
        if isinstance(target, nodes.Name):
            bound = {target.name: value}
        elif isinstance(value, (list, tuple)) and len(value) == len(names):
            bound = dict(zip(names, value, strict=True))
        else:
            raise self.fail("a loop that unpacks items of another length", target, "for")
        before = {n: (n in self.runtime, n in self.consts, self.consts.get(n)) for n in names}
        for name, item in bound.items():
            self.runtime.discard(name)
            self.set_const(name, item)
        try:
            yield
        finally:
            for name, (runtime, had, old) in before.items():
                if runtime:
                    self.runtime.add(name)
                if had:
                    self.set_const(name, old)
                else:
                    self.consts.pop(name, None)
            self.version += 1

    def field_test(self, test: nodes.Node) -> str:
        folded = self.fold(test)
        if folded is not None:
            return "true" if folded.value else "false"
        return self.truth(test)

    def unrolled_body(self, node: nodes.For, scope: Any, loop: Loop, targets: set[str]) -> str:
        self.loops.append(loop)
        try:
            body = self.block(node.body, self.inner_scope(node, scope, targets))
        finally:
            self.loops.pop()
        if loop.prev or loop.next or loop.mods:
            raise self.fail("loop.previtem, loop.nextitem or loop.index % n in a loop over .items() of a tool", node, "loop.")
        return body

    @contextmanager
    def field_bound(self, key: str, name: str, value: str, kind: str) -> Iterator[None]:
        """The key a constant (decided now), the value a runtime field of the given kind."""
        had_key, old_key = key in self.consts, self.consts.get(key)
        old_kind, text = self.kinds.get(value), value in self.always_text
        self.runtime.discard(key)
        self.set_const(key, name)
        self.kinds[value] = kind
        if kind == "string":
            self.always_text.add(value)  # a field present in the struct holds text
        try:
            yield
        finally:
            self.runtime.add(key)
            if had_key:
                self.set_const(key, old_key)
            else:
                self.consts.pop(key, None)
                self.version += 1
            if old_kind is None:
                self.kinds.pop(value, None)
            else:
                self.kinds[value] = old_kind
            (self.always_text.add if text else self.always_text.discard)(value)


def _fixed(position: int, always: list[bool]) -> dict[str, str]:
    """loop.* of the pass at `position` that are known now (the rest count the fields present at render time)."""
    before, after = always[:position], always[position + 1:]
    known: dict[str, str] = {}
    if position == 0 or any(before):
        known["first"] = _bool(position == 0)
    if not after or any(after):
        known["last"] = _bool(not after)
    if all(before):
        known |= {"index0": str(position), "index": str(position + 1)}
    if all(always):
        count = len(always)
        known |= {"length": str(count), "revindex": str(count - position), "revindex0": str(count - position - 1)}
    return known


def _bool(value: bool) -> str:
    return "true" if value else "false"
