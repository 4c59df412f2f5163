"""The pieces of `text.split(sep)`, a constant separator, found by scans over the text's bytes.

Go templates build no lists, but each piece is a slice of the text between two matches of the separator: the first
piece (before the first match), the last (after the last), the k-th (k read at render time) and the number of pieces
are each one scan that finds the matches left to right, never overlapping, as Python's split finds them. A name set
once to `text.split(sep)` (MiniCPM's `<tool_sep>` pieces) holds the text in Go and is read only through these; any
other use of it (printing it, a test) is refused. A loop over the pieces (Gemma 4's `for part in text.split('<channel|>')`)
is one scan that runs its body at each match and once more at the end of the text, with the piece since the last match.
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate.core import Core, Loop
from model_serving.serve.ollama.gotemplate.expressions import THINK_TAGS
from model_serving.serve.ollama.gotemplate.text import go_string

_NEXT = 'len (printf "%*s " {} "")'  # n + 1 (Go templates have no arithmetic); only on counters of matches, which stay small


class Splits(Core):
    def split_of(self, node: nodes.Node | None) -> tuple[nodes.Node, str] | None:
        """(what holds the text, separator) when `node` is `text.split(sep)` or a name set to one, else None."""
        if isinstance(node, nodes.Name) and self.kinds.get(node.name) == "split":
            return node, self.split_seps[node.name]
        if not (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and node.node.attr == "split"
                and len(node.args) == 1 and not node.kwargs and node.dyn_args is None and node.dyn_kwargs is None):
            return None
        sep = self.fold(node.args[0])
        if sep is None or not isinstance(sep.value, str) or not sep.value or sep.value in THINK_TAGS or self.kind(node.node.node) != "string":
            return None  # think tags: Ollama's message text holds none (is_think_split reads them so)
        return node.node.node, sep.value

    def split_text(self, source: nodes.Node) -> str:
        if isinstance(source, nodes.Name) and self.kinds.get(source.name) == "split":
            return f"${source.name}"  # the name holds the text itself
        return self.expr(source)

    def split_name(self, name: str, value: nodes.Node) -> str | None:
        """`{% set parts = text.split(sep) %}`, parts set nowhere else: Go keeps the text, and each read of parts scans it."""
        split = self.split_of(value)
        if split is None or self.store_counts.get(name, 0) != 1 or name not in self.runtime:
            return None
        text = self.split_text(split[0])
        self.kinds[name], self.split_seps[name] = "split", split[1]
        return f"{{{{ ${name} = print {text} }}}}"

    def split_item(self, node: nodes.Getitem) -> str | None:
        """A piece of a split: [0], [-1] or [k] with k a whole number read at render time."""
        split = self.split_of(node.node)
        if split is None:
            return None
        index = self.fold(node.arg)
        if index is not None and (not isinstance(index.value, int) or isinstance(index.value, bool) or index.value < -1):
            raise self.fail("an index into the pieces of a .split() other than a whole number, or -1", node, "[")
        text, sep = self.split_text(split[0]), split[1]
        if index is not None and index.value in (0, -1):
            return self.split_end(text, sep, first=index.value == 0)
        return self.split_at(text, sep, self.int_expr(node.arg))

    def scan(self, text: str, sep: str) -> tuple[str, str, str, str, str, str, str]:
        """Go for a scan of `text` for `sep`: the names of the text, the current piece's start and the offset; the loop's
        head, the match test, what follows a match and what follows the loop. After a match the scan steps over the
        separator's bytes (a countdown, as Go has no i + n that does not build a string of i characters) and the next piece
        starts where the countdown ends, so matches never overlap."""
        t, start, i, left, n = self.fresh("t"), self.fresh("f"), self.fresh("i"), self.fresh("left"), len(sep.encode())
        self.emit(f"{{{{ {t} := print {text} }}}}{{{{ {start} := 0 }}}}{{{{ {left} := 0 }}}}")
        head = (f'{{{{ if {left} }}}}{{{{ {left} = len (slice (printf "%*s" {left} "") 1) }}}}{{{{ if {left} }}}}{{{{ continue }}}}{{{{ end }}}}'
                f"{{{{ {start} = {i} }}}}{{{{ end }}}}")
        found = f"(and (ge (len (slice {t} {i})) {n}) (eq (slice (slice {t} {i}) 0 {n}) {go_string(sep)}))"
        return t, start, i, head, found, f"{{{{ {left} = {n} }}}}", f"{{{{ if {left} }}}}{{{{ {start} = len {t} }}}}{{{{ end }}}}"

    def split_end(self, text: str, sep: str, *, first: bool) -> str:
        """The first piece ends at the first match; the last starts after the last match."""
        t, start, i, head, found, matched, tail = self.scan(text, sep)
        if first:
            cut = self.fresh("p")
            self.emit(f"{{{{ {cut} := len {t} }}}}{{{{ range {i} := len {t} }}}}{{{{ if {found} }}}}{{{{ {cut} = {i} }}}}{{{{ break }}}}"
                      f"{{{{ end }}}}{{{{ end }}}}")
            return f"(slice {t} 0 {cut})"
        self.emit(f"{{{{ range {i} := len {t} }}}}{head}{{{{ if {found} }}}}{matched}{{{{ end }}}}{{{{ end }}}}{tail}")
        return f"(slice {t} {start})"

    def split_at(self, text: str, sep: str, k: str) -> str:
        """The k-th piece, "" past the last one (Jinja reads a missing item as undefined, printed empty)."""
        t, start, i, head, found, matched, tail = self.scan(text, sep)
        seen, out, hit = self.fresh("n"), self.fresh("p"), self.fresh("hit")
        self.emit(f'{{{{ {seen} := 0 }}}}{{{{ {out} := "" }}}}{{{{ {hit} := false }}}}{{{{ range {i} := len {t} }}}}{head}{{{{ if {found} }}}}'
                  f"{{{{ if eq {seen} {k} }}}}{{{{ {out} = slice {t} {start} {i} }}}}{{{{ {hit} = true }}}}{{{{ break }}}}{{{{ end }}}}"
                  f"{{{{ {seen} = {_NEXT.format(seen)} }}}}{matched}{{{{ end }}}}{{{{ end }}}}"
                  f"{{{{ if not {hit} }}}}{tail}{{{{ if eq {seen} {k} }}}}{{{{ {out} = slice {t} {start} }}}}{{{{ end }}}}{{{{ end }}}}")
        return out

    def split_count(self, node: nodes.Node) -> str:
        """The number of pieces: one more than the matches."""
        split = self.split_of(node)
        assert split is not None  # the caller checked
        t, start, i, head, found, matched, tail = self.scan(self.split_text(split[0]), split[1])
        count = self.fresh("n")
        self.emit(f"{{{{ {count} := 1 }}}}{{{{ range {i} := len {t} }}}}{head}{{{{ if {found} }}}}{{{{ {count} = {_NEXT.format(count)} }}}}"
                  f"{matched}{{{{ end }}}}{{{{ end }}}}")
        return count

    def for_split(self, node: nodes.For, scope: Any) -> str:
        """`for piece in text.split(sep)`: one scan over the text's bytes and one past its end, the body run at each match and there."""
        split = self.split_of(node.iter)
        assert split is not None and isinstance(node.target, nodes.Name)  # s_For checked
        if node.test is not None or node.else_ or any(isinstance(n, nodes.Name) and n.name == "loop" for n in node.find_all(nodes.Name)):
            raise self.fail("a loop over the pieces of a .split() with an inline if, else or loop.*", node, "for")
        self.frames.append([])
        try:
            t, start, i, head, found, matched, _ = self.scan(self.split_text(split[0]), split[1])
        finally:
            setup = "".join(self.frames.pop())
        self.kinds[node.target.name] = "string"
        self.always_text.add(node.target.name)
        # no loop.* (refused above): a stand-in loop keeps an enclosing loop's loop.* from answering for this one
        self.loops.append(Loop(index=i, iterable="", target=f"${node.target.name}", counter=self.counter, fixed={}))
        try:
            body = self.block(node.body, self.inner_scope(node, scope, {node.target.name}))
        finally:
            self.loops.pop()
        # the piece and the countdown over the separator are set before the body, so its continue or break leaves the scan right
        return (f"{setup}{{{{ range {i} := len (print {t} \" \") }}}}{head}{{{{ if or (eq {i} (len {t})) {found} }}}}"
                f"{{{{ ${node.target.name} := slice {t} {start} {i} }}}}{matched}{body}{{{{ end }}}}{{{{ end }}}}")
