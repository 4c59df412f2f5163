"""`x | string` on Ollama's data: Python's str(), written with Go.

str() of text is the text; of anything else it is Python's repr: `{'type': 'function', ...}`, `[9, 15]`,
`True`, `None`, text inside in quotes. Templates apply it to a tool (Apriel lists its tools that way) or to a
tool-call argument whose type a test has not pinned down. A tool reaches a TEMPLATE as a struct whose keys are
known, in the order tool dicts carry them (as `tojson` writes them); an argument is a decoded JSON value, told
apart by its Go type. Quoting follows Python's: single quotes unless the text holds one and no double quote,
backslash escapes for the quote, the backslash, tab, newline, carriage return and other control bytes (\\xNN).
"""

from __future__ import annotations

from collections.abc import Callable

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate import kinds as K
from model_serving.serve.ollama.gotemplate.core import Core
from model_serving.serve.ollama.gotemplate.text import go_string
from model_serving.serve.ollama.gotemplate.tooljson import LISTS, MAPS, SCHEMAS

REPR_NOTE = ("`| string` of a tool or of a tool-call argument writes Python's repr with Go: keys in the order tool dicts carry "
             "them (tool properties and arguments sorted, as Ollama hands them over); numbers as JSON spells them (a whole number "
             "sent as 3.0 reads 3; 1e-05 reads 0.00001, and numbers past 1e16 or 1e21 keep Go's digits); characters beyond ASCII "
             "that Python counts as unprintable (such as U+00A0) are written as they are where Python escapes them.")
# The byte at an offset, cut from the text from there: `slice t i (i + 1)` would build the i + 1 as a string of i spaces.
_AT = "slice (slice {0} {1}) 0 1"
_REPR_KINDS = {"tools", "toolcalls", "strings", "values", "properties", "args", "value", "scalar", "toolcall", *SCHEMAS}


class PyRepr(Core):
    def can_pystr(self, node: nodes.Filter) -> bool:
        return node.node is not None and (self.kind(node.node) in _REPR_KINDS or self.json_field(node.node) is not None)

    def pystr(self, node: nodes.Node) -> str:
        """str() of a tool, a list of Ollama's data or a JSON value: a Go variable holding what Python would print."""
        if self.json_field(node) is not None:
            # a key of a decoded JSON value: "" where the key is missing, which prints as Jinja's undefined does (nothing)
            kind, go = "value", self.json_field_read(node)[0]
        else:
            kind, go = self.kind(node) or "", self.expr(node)
        self.note(REPR_NOTE)
        if kind in ("properties", "args", "tool", "tools"):
            self.note(K.SORTED_KEYS_NOTE)
        var = self.fresh("repr")
        if kind in ("value", "scalar"):
            # str() of text is the text itself, unquoted
            body = f'{{{{ if eq (printf "%T" {go}) "string" }}}}{{{{ {var} = {go} }}}}{{{{ else }}}}{self.repr_value(go, var)}{{{{ end }}}}'
        else:
            body = self.repr_of(kind, go, var)
        self.emit(f'{{{{ {var} := "" }}}}{body}')
        return var

    def repr_of(self, kind: str, go: str, var: str) -> str:
        """Go statements appending Python's repr of `go` (of the given kind) to `var`."""
        put = _putter(var)
        if kind in ("string", "ptype"):
            if kind == "ptype":  # a property's type: one name, or a list of names
                one, many = self.repr_text(f"(index {go} 0)", var), self.repr_list("string", go, var)
                return f"{{{{ if eq (len {go}) 1 }}}}{one}{{{{ else }}}}{many}{{{{ end }}}}"
            return self.repr_text(go, var)
        if kind == "int":
            return put(f"(print {go})")
        if kind in ("value", "scalar"):
            return self.repr_value(go, var)
        if kind == "toolcall":
            ident_value = put(go_string("'id': ")) + self.repr_text(f"{go}.ID", var) + put(go_string(", "))
            ident = f"{{{{ if {go}.ID }}}}{ident_value}{{{{ end }}}}"
            head = put(go_string("{")) + ident + put(go_string("'type': 'function', 'function': "))
            return head + self.repr_of("callfunc", f"{go}.Function", var) + put(go_string("}"))
        if kind in SCHEMAS:
            return self.repr_object(kind, go, var)
        if kind in LISTS:
            return self.repr_list(LISTS[kind], go, var)
        if kind in MAPS:
            return self.repr_map(MAPS[kind], go, var)
        raise self.fail(f"str() of a {kind} value", None)

    def repr_object(self, kind: str, go: str, var: str) -> str:
        put = _putter(var)
        out = [put(go_string("{"))]
        for i, (key, field, sub, optional) in enumerate(SCHEMAS[kind]):
            lead = ("" if i == 0 else ", ") + repr(key) + ": "
            part = put(go_string(lead)) + self.repr_of(sub, f"{go}.{field}", var)
            out.append(f"{{{{ if {go}.{field} }}}}{part}{{{{ end }}}}" if optional else part)
        out.append(put(go_string("}")))
        return "".join(out)

    def repr_list(self, element: str, go: str, var: str) -> str:
        put, i, item = _putter(var), self.fresh("k"), self.fresh("v")
        sep = f"{{{{ if {i} }}}}{put(go_string(', '))}{{{{ end }}}}"
        return f'{put(go_string("["))}{{{{ range {i}, {item} := {go} }}}}{sep}{self.repr_of(element, item, var)}{{{{ end }}}}{put(go_string("]"))}'

    def repr_map(self, element: str, go: str, var: str) -> str:
        put, key, item, started = _putter(var), self.fresh("k"), self.fresh("v"), self.fresh("s")
        sep = f"{{{{ if {started} }}}}{put(go_string(', '))}{{{{ end }}}}{{{{ {started} = true }}}}"
        entry = sep + self.repr_text(key, var) + put(go_string(": ")) + self.repr_of(element, item, var)
        return f'{put(go_string("{"))}{{{{ {started} := false }}}}{{{{ range {key}, {item} := {go} }}}}{entry}{{{{ end }}}}{put(go_string("}"))}'

    def repr_value(self, go: str, var: str) -> str:
        """A decoded JSON value (an argument, a property's items or enum) from Go's JSON of it (compact, keys sorted), respelled
        in one scan, however deep the value nests: `, ` and `: ` between items, True/False/None, each string's JSON escapes
        turned into Python's, in the quote Python picks (a look ahead to the string's end)."""
        put = _putter(var)
        t, i, c, inside, esc, skip, quote, h, run, keep, moved = (self.fresh(s) for s in ("t", "i", "c", "in", "e", "skip", "q", "h", "r", "kp", "mv"))
        escaped = "".join(f"{{{{ else if eq {c} {go_string(raw)} }}}}{put(go_string(shown))}"
                          for raw, shown in (("n", "\\n"), ("r", "\\r"), ("t", "\\t"), ("b", "\\x08"), ("f", "\\x0c"), ("\\", "\\\\")))
        hexes = "".join(f"{{{{ else if eq {h} {go_string(code)} }}}}{put(go_string(char))}" for code, char in (("003e", ">"), ("0026", "&")))
        unicode = (f"{{{{ {h} := slice (slice {t} {i}) 1 5 }}}}{{{{ {skip} = 4 }}}}"
                   f'{{{{ if eq {h} "003c" }}}}{put(go_string("<"))}{hexes}'
                   f'{{{{ else if eq (slice {h} 0 2) "00" }}}}{put(go_string(chr(92) + "x") + f" (slice {h} 2)")}'
                   f'{{{{ else }}}}{put(go_string(chr(92) + "u") + f" {h}")}{{{{ end }}}}')
        after_backslash = (f"{{{{ {esc} = false }}}}{{{{ if eq {c} \"u\" }}}}{unicode}{escaped}"
                           f"{{{{ else if eq {c} {quote} }}}}{put(f'{go_string(chr(92))} {c}')}{{{{ else }}}}{put(c)}{{{{ end }}}}")
        in_text = (f'{{{{ if eq {c} {go_string(chr(92))} }}}}{{{{ {esc} = true }}}}{{{{ else if eq {c} {go_string(chr(34))} }}}}{{{{ {inside} = false }}}}'
                   f"{put(quote)}{{{{ else if eq {c} {quote} }}}}{put(f'{go_string(chr(92))} {c}')}"
                   f'{{{{ else if eq {c} "\\x7f" }}}}{put(go_string(chr(92) + "x7f"))}{{{{ end }}}}')
        opening = f"{{{{ {inside} = true }}}}{self.pick_quote(f'(slice (slice {t} {i}) 1)', quote, json=True)}{put(quote)}"
        words = "".join(f"{{{{ else if eq {c} {go_string(first)} }}}}{put(go_string(word))}{{{{ {skip} = {n} }}}}"
                        for first, word, n in (("t", "True", 3), ("f", "False", 4), ("n", "None", 3)))
        outside = (f'{{{{ if eq {c} {go_string(chr(34))} }}}}{opening}{{{{ else if eq {c} "," }}}}{put(go_string(", "))}'
                   f'{{{{ else if eq {c} ":" }}}}{put(go_string(": "))}{words}{{{{ end }}}}')
        # bytes copied as they are wait in a run, written out whole before the next byte that changes; a changed (or skipped)
        # byte moves the run's start to the next offset, set when the scan gets there (no arithmetic, as in repr_text)
        special = {"text": [chr(92), chr(34), "\x7f"], "json": [chr(34), ",", ":", "t", "f", "n"]}
        tests = {k: " ".join(f"(eq {c} {go_string(b)})" for b in v) for k, v in special.items()}
        plain = (f"{{{{ {keep} := false }}}}{{{{ if not {esc} }}}}{{{{ if {inside} }}}}{{{{ {keep} = not (or {tests['text']} (eq {c} {quote})) }}}}"
                 f"{{{{ else }}}}{{{{ {keep} = not (or {tests['json']}) }}}}{{{{ end }}}}{{{{ end }}}}")
        flush = f"{put(f'(slice {t} {run} {i})')}{{{{ {moved} = true }}}}"
        body = f"{{{{ if {esc} }}}}{after_backslash}{{{{ else if {inside} }}}}{in_text}{{{{ else }}}}{outside}{{{{ end }}}}"
        return (f"{{{{ {t} := json {go} }}}}{{{{ {inside} := false }}}}{{{{ {esc} := false }}}}{{{{ {skip} := 0 }}}}{{{{ {quote} := \"'\" }}}}"
                f"{{{{ {run} := 0 }}}}{{{{ {moved} := false }}}}{{{{ range {i} := len {t} }}}}{{{{ if {moved} }}}}{{{{ {run} = {i} }}}}{{{{ {moved} = false }}}}{{{{ end }}}}"
                f"{{{{ if {skip} }}}}{{{{ {skip} = len (slice (printf \"%*s\" {skip} \"\") 1) }}}}{{{{ {moved} = true }}}}{{{{ continue }}}}{{{{ end }}}}"
                f"{{{{ {c} := {_AT.format(t, i)} }}}}{plain}{{{{ if not {keep} }}}}{flush}{body}{{{{ end }}}}{{{{ end }}}}"
                f"{{{{ if {moved} }}}}{{{{ {run} = len {t} }}}}{{{{ end }}}}{put(f'(slice {t} {run})')}")

    def pick_quote(self, text: str, quote: str, *, json: bool = False) -> str:
        """Set `quote` to the one Python's repr picks: ' unless the text holds a ' and no ". With `json`, `text` is the rest
        of a JSON document after an opening quote: the scan stops at the closing one, and a \\" in it is a double quote."""
        single, double, esc, k, d = (self.fresh(s) for s in ("sq", "dq", "e", "k", "d"))
        if json:
            step = (f"{{{{ if {esc} }}}}{{{{ {esc} = false }}}}{{{{ if eq {d} {go_string(chr(34))} }}}}{{{{ {double} = true }}}}{{{{ end }}}}"
                    f"{{{{ else if eq {d} {go_string(chr(92))} }}}}{{{{ {esc} = true }}}}{{{{ else if eq {d} {go_string(chr(34))} }}}}{{{{ break }}}}"
                    f"{{{{ else if eq {d} \"'\" }}}}{{{{ {single} = true }}}}{{{{ end }}}}")
        else:
            step = (f"{{{{ if eq {d} \"'\" }}}}{{{{ {single} = true }}}}{{{{ else if eq {d} {go_string(chr(34))} }}}}{{{{ {double} = true }}}}"
                    f"{{{{ end }}}}")
        return (f"{{{{ {single} := false }}}}{{{{ {double} := false }}}}{{{{ {esc} := false }}}}{{{{ range {k} := len {text} }}}}"
                f"{{{{ {d} := {_AT.format(text, k)} }}}}{step}{{{{ end }}}}"
                f"{{{{ {quote} = \"'\" }}}}{{{{ if and {single} (not {double}) }}}}{{{{ {quote} = {go_string(chr(34))} }}}}{{{{ end }}}}")

    def repr_text(self, go: str, var: str) -> str:
        """Python's repr of text, appended to `var`: one scan picks the quote, a second copies runs and escapes the rest."""
        t, quote, start, j, c, esc, moved = (self.fresh(s) for s in ("t", "q", "f", "j", "c", "e", "mv"))
        escapes = "".join(f"{{{{ else if eq {c} {go_string(raw)} }}}}{{{{ {esc} = {go_string(shown)} }}}}"
                          for raw, shown in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")))
        copy = (f"{{{{ {var} = print {var} {quote} }}}}{{{{ {start} := 0 }}}}{{{{ {moved} := false }}}}{{{{ range {j} := len {t} }}}}"
                f"{{{{ if {moved} }}}}{{{{ {start} = {j} }}}}{{{{ {moved} = false }}}}{{{{ end }}}}{{{{ {c} := {_AT.format(t, j)} }}}}"
                f'{{{{ {esc} := "" }}}}{{{{ if eq {c} {go_string(chr(92))} }}}}{{{{ {esc} = {go_string(chr(92) * 2)} }}}}'
                f"{{{{ else if eq {c} {quote} }}}}{{{{ {esc} = print {go_string(chr(92))} {quote} }}}}{escapes}"
                f'{{{{ else if or (lt {c} " ") (eq {c} "\\x7f") }}}}{{{{ {esc} = printf "\\\\x%x" {c} }}}}{{{{ end }}}}'
                f"{{{{ if {esc} }}}}{{{{ {var} = print {var} (slice {t} {start} {j}) {esc} }}}}{{{{ {moved} = true }}}}{{{{ end }}}}"
                f"{{{{ end }}}}{{{{ if {moved} }}}}{{{{ {start} = len {t} }}}}{{{{ end }}}}{{{{ {var} = print {var} (slice {t} {start}) {quote} }}}}")
        # most names and descriptions need no scan: Go's %q escapes nothing (no quote, backslash, control or unprintable
        # character) and html nothing (no ' < > &), so Python writes the text as it is, in single quotes
        plain = f'(and (eq (printf "%q" {t}) (print {go_string(chr(34))} {t} {go_string(chr(34))})) (eq (html {t}) {t}))'
        fast = f"{{{{ {var} = print {var} \"'\" {t} \"'\" }}}}"
        return f"{{{{ {t} := print {go} }}}}{{{{ if {plain} }}}}{fast}{{{{ else }}}}{{{{ {quote} := \"'\" }}}}{self.pick_quote(t, quote)}{copy}{{{{ end }}}}"


def _putter(var: str) -> Callable[[str], str]:
    def put(go: str) -> str:
        return f"{{{{ {var} = print {var} {go} }}}}"
    return put

