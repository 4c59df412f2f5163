"""`for k, v in m | dictsort` over a mapping read at render time, in Jinja's order.

Jinja's dictsort orders the keys ignoring case (`area` before `Zone`); Go ranges over a map in byte order and has no
sort. But a template can walk a map as often as it likes: each pass of an outer range over the map picks, with an inner
range, the smallest key above the one the pass before picked, and runs the body for it (a selection sort, quadratic in
the keys; a tool schema has tens). Keys compare by their lower-cased form, then by the key itself, so each key is picked
exactly once: keys equal ignoring case (`a`, `A`) come in byte order, where Jinja keeps the order they were declared in,
which a Go map has already lost. Lower-casing is ASCII-only, as `lower` is. A loop over one of Ollama's fixed structs
(a tool, its function, its parameters) is written out field by field with the fields in that same order.
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate.core import Core
from model_serving.serve.ollama.gotemplate.text import go_failure
from model_serving.serve.ollama.gotemplate.unroll import UNROLLED

SORT_NOTE = ("dictsort over tool properties, call arguments or values inside them sorts their keys ignoring ASCII case, as Jinja does; keys "
             "equal ignoring case (a, A) come in byte order where Jinja keeps their declared order, and letters beyond ASCII (É) are "
             "compared as they are, where Python lower-cases them first.")
_NEXT = 'len (printf "%*s " {} "")'  # n + 1


class Sorting(Core):
    def is_dictsort(self, node: nodes.For) -> bool:
        it = node.iter
        return isinstance(it, nodes.Filter) and it.name == "dictsort" and isinstance(node.target, nodes.Tuple) and self.depends(it)

    def for_dictsort(self, node: nodes.For, scope: Any) -> str:
        it = node.iter
        assert isinstance(it, nodes.Filter) and it.node is not None and isinstance(node.target, nodes.Tuple)
        if it.args or it.kwargs or it.dyn_args or it.dyn_kwargs:
            raise self.fail("dictsort with arguments of a mapping read at render time", node, "dictsort")
        if node.else_:
            raise self.fail("a for loop with else over dictsort", node, "for")
        key, value = (t.name for t in node.target.items if isinstance(t, nodes.Name))
        base = it.node
        kind = self.kind(base)
        if kind in (*UNROLLED, "property"):
            return self.unroll_items(node, scope, key, value, base, kind, sort=True)
        if kind == "value":
            return self.sort_value(node, scope, base)
        if kind not in ("properties", "args"):
            raise self.fail(f"dictsort of a {kind or 'runtime'} value read at render time", node, "dictsort")
        return self.sorted_walk(node, scope, key, value, base, kind)

    def sort_value(self, node: nodes.For, scope: Any, base: nodes.Node) -> str:
        """An argument's value (or a property's items): a Go map when Jinja's is a dict; dictsort fails on anything else."""
        go = self.expr(base)
        name = self.fresh("m")[1:]
        self.kinds[name] = "args"
        self.runtime.add(name)
        it = node.iter
        assert isinstance(it, nodes.Filter)
        walk = nodes.For(node.target, nodes.Filter(nodes.Name(name, "load"), "dictsort", [], [], None, None, lineno=it.lineno), node.body, [],
                         node.test, False, lineno=node.lineno)
        self.alive.append(walk)
        return (f'{{{{ if eq (printf "%T" {go}) "map[string]interface {{}}" }}}}{{{{ ${name} := {go} }}}}{self.for_dictsort(walk, scope)}'
                f'{{{{ else }}}}{go_failure("dictsort of a value that is not a mapping")}{{{{ end }}}}')

    def sorted_walk(self, node: nodes.For, scope: Any, key: str, value: str, base: nodes.Node, kind: str) -> str:
        self.note(SORT_NOTE)
        go, loop = self.keyed_loop(node, key, value, base, kind, "dictsort")
        pick, state = self.pick_next(go, loop.counter)
        pre, test = self.inline_test(node, loop)
        self.loops.append(loop)
        try:
            body = self.block(node.body, self.inner_scope(node, scope, {key, value}))
        finally:
            self.loops.pop()
        c = loop.counter
        step = f"{{{{ {loop.index} = $kept{c} }}}}{{{{ $kept{c} = {_NEXT.format(f'$kept{c}')} }}}}"
        head = (f"{{{{ $kept{c} := 0 }}}}{{{{ {loop.index} := 0 }}}}{state}{{{{ range {go} }}}}{pick}"
                f"{{{{ ${key} := $sk{c} }}}}{{{{ ${value} := index {go} $sk{c} }}}}")
        if test is not None:  # the inline if keeps items: loop.index counts the kept ones
            return self.loop_setup(loop) + head + f"{pre}{{{{ if {test} }}}}" + step + self.loop_start(loop) + body + "{{ end }}{{ end }}"
        return self.loop_setup(loop) + head + step + self.loop_start(loop) + body + "{{ end }}"

    def pick_next(self, go: str, c: int) -> tuple[str, str]:
        """(Go code run at the start of each outer pass that sets $sk<c> to the next key in order, the state it needs first).

        $sl/$sk hold the lower-cased form and the key picked last ($ss: whether one was); a pass scans every key for the
        smallest (lower-cased, key) pair above that one.
        """
        k, bl, bk, found = self.fresh("k"), self.fresh("bl"), self.fresh("bk"), self.fresh("f")
        self.frames.append([])
        try:
            lowered = self.recased(k, upper=False)
        finally:
            lowered_code = "".join(self.frames.pop())
        after = f"(or (not $ss{c}) (gt {lowered} $sl{c}) (and (eq {lowered} $sl{c}) (gt {k} $sk{c})))"
        below = f"(or (not {found}) (lt {lowered} {bl}) (and (eq {lowered} {bl}) (lt {k} {bk})))"
        scan = (f'{{{{ {bl} := "" }}}}{{{{ {bk} := "" }}}}{{{{ {found} := false }}}}{{{{ range {k}, {self.fresh("v")} := {go} }}}}{lowered_code}'
                f"{{{{ if and {after} {below} }}}}{{{{ {bl} = {lowered} }}}}{{{{ {bk} = {k} }}}}{{{{ {found} = true }}}}{{{{ end }}}}{{{{ end }}}}"
                f"{{{{ $sl{c} = {bl} }}}}{{{{ $sk{c} = {bk} }}}}{{{{ $ss{c} = true }}}}")
        return scan, f'{{{{ $sl{c} := "" }}}}{{{{ $sk{c} := "" }}}}{{{{ $ss{c} := false }}}}'
