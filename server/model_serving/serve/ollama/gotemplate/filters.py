"""Filters, tests and calls, and the lazily filtered lists (selectattr, rejectattr, map) they build."""

from __future__ import annotations

from collections.abc import Callable

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate import kinds as K
from model_serving.serve.ollama.gotemplate.core import SET_MARK, TOO_DEEP_NOTE, Core, View
from model_serving.serve.ollama.gotemplate.expressions import DEFINED_NOTE, THINK_TAGS
from model_serving.serve.ollama.gotemplate.flow import definitely_set
from model_serving.serve.ollama.gotemplate.macros import TOO_DEEP, UNFOLD_DEPTH
from model_serving.serve.ollama.gotemplate.text import go_string

TRIM_NOTE = ("`trim`/.strip() strip ASCII whitespace (space, tab, newline, carriage return, vertical tab, form feed, \\x1c-\\x1f) from the ends; "
             "Python also strips Unicode spaces such as U+00A0 or U+3000, which stay in Ollama's prompt.")
_SPACES = '" " "\\n" "\\t" "\\r" "\\v" "\\f" "\\x1c" "\\x1d" "\\x1e" "\\x1f"'
_NEXT = 'len (printf "%*s " {} "")'  # n + 1 (Go templates have no arithmetic)
_VALUE_TYPES = {"mapping": ["map[string]interface {}"], "sequence": ["[]interface {}", "map[string]interface {}", "string"],
                "iterable": ["[]interface {}", "map[string]interface {}", "string"], "number": ["float64", "int", "int64", "bool"], "boolean": ["bool"]}
_STRIPS = {"strip", "lstrip", "rstrip"}
_PASSTHROUGH = {"safe", "list", "string"}

# the tests' answers on Jinja's undefined (iterable and a sequence: it has a length, 0, and items, none)
_UNDEFINED_TESTS = {"defined": False, "undefined": True, "none": False, "mapping": False, "sequence": True, "iterable": True,
                    "string": False, "number": False, "integer": False, "float": False, "boolean": False}


class Filters(Core):
    def x_Filter(self, node: nodes.Filter) -> str:
        name = node.name
        if node.node is None:
            raise self.fail(f"a filter block ({name})", node, "filter")
        if name == "trim" and not node.args:
            return self.stripped(self.expr(node.node))
        if name in ("length", "count") and self.split_of(node.node) is not None:
            return self.split_count(node.node)
        if name in ("length", "count"):
            view = self.seq_view(node.node)
            return self.count(view) if view.pred is not None else f"(len {view.base})"
        if name == "tojson":
            return self.tojson(node)
        if name in ("first", "last"):
            return self.pick(self.seq_view(node.node), first=name == "first")
        if name == "join":
            return self.type_join(node) or self.json_join(node) or self.join(node)
        if name == "default" and node.args:
            self.note("`default(x)` becomes `or`, which also replaces empty values, not only undefined ones.")
            return f"(or {self.expr(node.node)} {self.expr(node.args[0])})"
        if name == "indent" and self.kind(node.node) == "string":
            return self.indented(node)
        if name == "replace" and len(node.args) == 2 and not node.kwargs and self.kind(node.node) == "string":
            # Jinja's filter is str.replace on text (no autoescape): the method's conversion
            call = nodes.Call(nodes.Getattr(node.node, "replace", "load"), node.args, [], None, None, lineno=node.lineno)
            self.alive.append(call)
            return self.method(call, "replace", node.node)
        if name in ("lower", "upper") and not node.args and self.is_unset(node.node):
            return '""'  # str() of Jinja's undefined is empty, in either case
        if name in ("lower", "upper") and not node.args and self.kind(node.node) == "string":
            return self.recased(self.expr(node.node), upper=name == "upper")
        if name in ("lower", "upper") and not node.args and (self.kind(node.node) in ("value", "scalar") or self.json_field(node.node) is not None):
            return self.recased(self.pystr(node.node), upper=name == "upper")  # Jinja recases str() of a JSON value: [9, 15], TRUE
        if name == "string" and not node.args and self.can_pystr(node):
            return self.pystr(node.node)  # a tool, a list or a JSON value: Python's repr, unless it is text
        if name == "string" and self.kind(node.node) == "bool":
            var = self.fresh("str")  # Python writes booleans True/False, Go true/false
            self.emit(f'{{{{ {var} := "False" }}}}{{{{ if {self.expr(node.node)} }}}}{{{{ {var} = "True" }}}}{{{{ end }}}}')
            return var
        if name in _PASSTHROUGH and self.kind(node.node) in {"string", "int", None} | (set() if name == "string" else K.SEQUENCES):
            return f"(print {self.expr(node.node)})" if name == "string" else self.expr(node.node)
        raise self.fail(f"the filter '{name}' on runtime data (Go templates have no such function)", node, name)

    def x_Test(self, node: nodes.Test) -> str:
        name, kind = node.name, self.kind(node.node)
        named = self.type_name_test(node) or self.json_first_defined(node)
        if named is not None:
            return named
        if self.json_field(node.node) is not None:
            return self.json_field_test(node)
        if self.is_unset(node.node) and not node.args and name in _UNDEFINED_TESTS:
            return "true" if _UNDEFINED_TESTS[name] else "false"  # a key no value Ollama hands over has: Jinja's undefined
        if name in ("none", "defined", "undefined") and self.items_method(node.node) is not None:
            # the items Ollama keeps are never null, and where it has none Jinja finds the dict's method: defined, not none
            return "true" if name == "defined" else "false"
        if name in ("defined", "undefined"):
            key = self.field_key(node.node)
            if key is not None and key[0] == "string" and not hasattr(str, key[1]):
                return "false" if name == "defined" else "true"  # text has no fields (`message.content.content`)
            # Ollama always decides add_generation_prompt (the last turn is not the assistant's), so it is always defined
            always = key in K.ALWAYS_SET or (isinstance(node.node, nodes.Name) and node.node.name in ("add_generation_prompt", "messages")) \
                or self.set_before(node)
            if not always:
                self.note(DEFINED_NOTE)
            test = "true" if always else self.truth(node.node)
            return test if name == "defined" else f"(not {test})"
        if name == "none" and isinstance(node.node, nodes.Name) and node.node.name in self.held_none:
            return f"(not {self.truth(node.node)})"  # Go holds "" where Jinja holds None
        if name == "none" and self.none_or_text(node.node):
            return f"(not {self.truth(node.node)})"  # a namespace attribute holding none or non-empty text: "" in Go for none
        if name == "none" and kind in ("value", "scalar"):
            return f'(eq (printf "%T" {self.expr(node.node)}) "<nil>")'  # JSON null, not false, 0 or ""
        if name == "none" and kind == "anyof":
            return "false"  # Ollama drops a null anyOf, and an unset one is Jinja's undefined, which is not none
        if name == "none":
            # a field Ollama always fills (a message's content: "" when empty) is never none
            return "false" if self.field_key(node.node) in K.ALWAYS_SET else f"(not {self.truth(node.node)})"
        if name in ("true", "false") and not node.args:
            return self.truth(node.node) if name == "true" else f"(not {self.truth(node.node)})"
        if name in ("equalto", "eq", "sameas") and node.args:
            return f"(eq {self.expr(node.node)} {self.expr(node.args[0])})"
        if kind is None:
            raise self.fail(f"the test 'is {name}' on a value of unknown type", node, name)
        return self.type_test(node, name, kind)

    def none_or_text(self, node: nodes.Node) -> bool:
        """A namespace attribute every assignment sets to none or to non-empty literal text (Apertus's assistant_format)."""
        if not (isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name in self.namespaces):
            return False
        values = [n.node for n in self.ast.find_all(nodes.Assign) if isinstance(n.target, nodes.NSRef)
                  and n.target.name == node.node.name and n.target.attr == node.attr]
        values += [kw.value for n in self.ast.find_all(nodes.Assign) if isinstance(n.target, nodes.Name) and n.target.name == node.node.name
                   and isinstance(n.node, nodes.Call) for kw in n.node.kwargs if kw.key == node.attr]
        return bool(values) and all(isinstance(v, nodes.Const) and (v.value is None or (isinstance(v.value, str) and v.value)) for v in values)

    def set_before(self, node: nodes.Test) -> bool:
        """`x is defined` where the template's statements before this one set x on every path (Nemotron's system_message)."""
        if not isinstance(node.node, nodes.Name):
            return False
        at = next((i for i, stmt in enumerate(self.ast.body) if any(n is node for n in stmt.find_all(nodes.Test))), None)
        return at is not None and definitely_set(node.node.name, self.ast.body[:at], self.never_undefined)

    def never_undefined(self, value: nodes.Node) -> bool:
        if isinstance(value, (nodes.Const, nodes.Concat, nodes.List, nodes.Dict)):
            return True
        return isinstance(value, (nodes.Getattr, nodes.Getitem)) and self.field_key(value) in K.ALWAYS_SET

    def type_test(self, node: nodes.Test, name: str, kind: str) -> str:
        """`is string` / `is mapping` / ...: Ollama's data has fixed types, so the answer is known, or is 'is it set'."""
        if name == "string" and kind in ("value", "scalar"):
            # a tool-call argument holds any JSON value: its Go type tells text from the rest
            return f'(eq (printf "%T" {self.expr(node.node)}) "string")'
        if kind in ("value", "scalar") and name in _VALUE_TYPES:
            # Go's type of a decoded JSON value tells what Python's would be (numbers: float64 in Go, int or float in Python)
            typ, types = f'(printf "%T" {self.expr(node.node)})', " ".join(go_string(t) for t in _VALUE_TYPES[name])
            return f"(eq {typ} {types})"
        if kind == "string" and name in ("sequence", "iterable") and self.field_key(node.node) == ("property", "type"):
            return "true"  # a name, a list of names, or unset (Jinja's undefined iterates as empty): each is a sequence
        if name == "string" or (kind == "string" and name in ("sequence", "iterable")):
            if kind != "string":
                return "false"
            key = self.field_key(node.node)
            if key in K.ALWAYS_SET or (isinstance(node.node, nodes.Name) and node.node.name in self.always_text):
                return "true"
            self.note("`is string` on an optional text field is read as 'is non-empty' (Ollama's field is empty when unset).")
            return self.truth(node.node)
        answers = {"mapping": kind in K.MAPPINGS, "sequence": kind in K.SEQUENCES | K.STRINGS | K.MAPPINGS,
                   "iterable": kind in K.SEQUENCES | K.STRINGS | K.MAPPINGS, "number": kind == "int", "integer": kind == "int",
                   "boolean": kind == "bool"}
        if name not in answers:
            raise self.fail(f"the test 'is {name}'", node, name)
        return "true" if answers[name] else "false"

    def field_key(self, node: nodes.Node) -> tuple[str, str] | None:
        if isinstance(node, nodes.Getattr):
            return (self.kind(node.node) or "", node.attr)
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            return (self.kind(node.node) or "", node.arg.value)
        return None

    def x_Call(self, node: nodes.Call) -> str:
        if isinstance(node.node, nodes.Getattr):
            return self.method(node, node.node.attr, node.node.node)
        if self.recursive_call_of(node) is not None:
            raise self.used_in_expression(node)  # `set x = walk(...)`: Go cannot capture a {{template}}'s text
        name = node.node.name if isinstance(node.node, nodes.Name) else self.describe(node.node)
        if name == TOO_DEEP:  # a call of a macro that calls itself, nested past the depth its text is written out to
            self.note(TOO_DEEP_NOTE)
            reason = f"the converted TEMPLATE stops here: a macro nested more than {UNFOLD_DEPTH} calls deep (the converter's bound, not Jinja's)"
            self.emit(f'{{{{ template {go_string(reason)} "" }}}}')  # no TEMPLATE defines it: Go's render fails there
            return '""'
        raise self.fail(f"a call to {name}() at render time", node, name)

    def method(self, node: nodes.Call, attr: str, base: nodes.Node) -> str:
        popped = self.queue_pop(base) if attr == "pop" else None
        if popped is not None:
            return popped
        args = [self.fold(a) for a in node.args]
        if attr in ("startswith", "endswith") and len(args) == 1 and args[0] is None and not node.kwargs and self.kind(base) == "string" \
                and self.kind(node.args[0]) == "string":
            text, affix = self.expr(base), self.expr(node.args[0])
            at = "0" if attr == "startswith" else f"(len (slice {text} (len {affix})))"
            end = f" (len {affix})" if attr == "startswith" else ""
            return f"(and (ge (len {text}) (len {affix})) (eq (slice {text} {at}{end}) {affix}))"
        if attr == "replace" and len(args) == 2 and args[0] is not None and args[1] is None and not node.kwargs and self.kind(node.args[1]) == "string":
            old = args[0].value  # the replacement computed at render time (MiniCPM's tool definitions)
            if isinstance(old, str) and old and self.kind(base) == "string":
                return self.replaced(self.expr(base), old, self.expr(node.args[1]))
        if attr == "get" and len(args) == 2 and args[0] is not None and args[1] is None and not node.kwargs and self.unset_get(node.args[1]):
            # `m.get('tool_call_id', m.get('id'))`: a default of a key Ollama never has is none, as the field reads when unset
            alone = nodes.Call(node.node, node.args[:1], [], None, None, lineno=node.lineno)
            self.alive.append(alone)
            return self.method(alone, attr, base)
        if any(a is None for a in args) or node.kwargs:
            raise self.fail(f"the method .{attr}() with arguments computed at render time", node, attr)
        values = [a.value for a in args if a is not None]
        if attr in _STRIPS and self.kind(base) == "string" and (not values or (len(values) == 1 and isinstance(values[0], str) and values[0].isascii())):
            if values and not values[0]:
                return self.expr(base)  # strip('') strips nothing
            chars = " ".join(go_string(c) for c in dict.fromkeys(values[0])) if values and values[0] else _SPACES
            return self.stripped(self.expr(base), left=attr != "rstrip", right=attr != "lstrip", chars=chars)
        if attr == "replace" and len(values) == 2 and all(isinstance(v, str) for v in values) and values[0] and self.kind(base) == "string":
            return self.replaced(self.expr(base), values[0], go_string(values[1]))
        if attr in ("startswith", "endswith") and len(values) == 1 and isinstance(values[0], str) and self.kind(base) == "string":
            text, n, lit = self.expr(base), len(values[0].encode()), go_string(values[0])
            at = "0" if attr == "startswith" else f"(len (slice {text} {n}))"
            end = f" {n}" if attr == "startswith" else ""
            # `and` stops at the length test, so the slice never runs past the text
            return f"(and (ge (len {text}) {n}) (eq (slice {text} {at}{end}) {lit}))"
        if attr == "get" and values and isinstance(values[0], str):
            kind = self.kind(base)
            dropped = values[0] not in K.KEPT_KEYS[kind] if kind in K.KEPT_KEYS else kind in K.CLOSED and values[0] not in K.FIELDS[kind or ""]
            if len(values) == 2 and dropped:
                return self.go_const(values[1], node)  # a key Ollama drops (a property's format): the default
            return self.member(base, values[0], node)
        if attr == "split":
            raise self.fail("a .split() whose pieces are used as a list (Go templates build no lists; only the first or last piece, "
                            "text.split(sep)[0] or [-1] with a constant separator, converts)", node, "split")
        raise self.fail(f"the method .{attr}() on runtime data (Go templates have no string methods)", node, attr)

    def recased(self, go: str, *, upper: bool) -> str:
        """lower/upper, byte by byte over ASCII letters (Python also maps other letters, such as É, which stay as they are here)."""
        self.note("`lower`/`upper` change ASCII letters only; Python also changes other letters (É, Σ), which stay as they are in Ollama's prompt.")
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        pairs = [(c, c.lower()) if not upper else (c.lower(), c) for c in letters]
        t, out, i, b = self.fresh("t"), self.fresh("r"), self.fresh("i"), self.fresh("c")
        chain = "".join(f"{{{{ {'if' if k == 0 else 'else if'} eq {b} {go_string(src)} }}}}{{{{ {b} = {go_string(dst)} }}}}" for k, (src, dst) in enumerate(pairs))
        self.emit(f'{{{{ {t} := print {go} }}}}{{{{ {out} := "" }}}}{{{{ range {i} := len {t} }}}}{{{{ {b} := slice (slice {t} {i}) 0 1 }}}}'
                  f"{{{{ if and (ge {b} {go_string(pairs[0][0])}) (le {b} {go_string(pairs[-1][0])}) }}}}{chain}{{{{ end }}}}{{{{ end }}}}"
                  f"{{{{ {out} = print {out} {b} }}}}{{{{ end }}}}")
        return out

    def replaced(self, go: str, old: str, new: str) -> str:
        """str.replace(old, new): a scan of the byte offsets; unchanged runs are copied whole, from the end of the last match."""
        t, out, start, i, n = self.fresh("t"), self.fresh("r"), self.fresh("f"), self.fresh("i"), len(old.encode())
        end = f'(len (printf "%*s%*s" {i} "" {n} ""))'
        self.emit(f'{{{{ {t} := print {go} }}}}{{{{ {out} := "" }}}}{{{{ {start} := 0 }}}}{{{{ range {i} := len {t} }}}}'
                  f"{{{{ if and (ge {i} {start}) (ge (len (slice {t} {i})) {n}) (eq (slice (slice {t} {i}) 0 {n}) {go_string(old)}) }}}}"
                  f"{{{{ {out} = print {out} (slice {t} {start} {i}) {new} }}}}{{{{ {start} = {end} }}}}{{{{ end }}}}{{{{ end }}}}"
                  f"{{{{ {out} = print {out} (slice {t} {start}) }}}}")
        return out

    def stripped(self, go: str, *, left: bool = True, right: bool = True, chars: str = _SPACES) -> str:
        code, var = self.strip_code(go, left=left, right=right, chars=chars)
        self.emit(code)
        return var

    def strip_code(self, go: str, *, left: bool = True, right: bool = True, chars: str = _SPACES) -> tuple[str, str]:
        """Go statements that strip whitespace off the ends of `go`, and the variable holding the result.

        Two scans from the ends, each stopping at the first other byte (range over an int, Go 1.22+): the cost is the
        whitespace stripped, not the text's length.
        """
        if chars == _SPACES:
            self.note(TRIM_NOTE)
        t, start, end, i, j = self.fresh("t"), self.fresh("a"), self.fresh("b"), self.fresh("i"), self.fresh("j")
        code = f"{{{{ {t} := print {go} }}}}{{{{ {start} := 0 }}}}{{{{ {end} := len {t} }}}}"
        if left:
            byte = f"slice {t} {i} ({_NEXT.format(i)})"
            code += (f"{{{{ range {i} := len {t} }}}}{{{{ if not (eq ({byte}) {chars}) }}}}{{{{ break }}}}{{{{ end }}}}"
                     f"{{{{ {start} = {_NEXT.format(i)} }}}}{{{{ end }}}}")
        if right:
            at = f"(len (slice {t} ({_NEXT.format(j)})))"  # len - 1 - j
            code += (f"{{{{ if lt {start} (len {t}) }}}}{{{{ range {j} := len {t} }}}}"
                     f"{{{{ if not (eq (slice {t} {at} (len (slice {t} {j}))) {chars}) }}}}{{{{ break }}}}{{{{ end }}}}"
                     f"{{{{ {end} = {at} }}}}{{{{ end }}}}{{{{ end }}}}")
        out = self.fresh("s")
        return code + f'{{{{ {out} := "" }}}}{{{{ if lt {start} {end} }}}}{{{{ {out} = slice {t} {start} {end} }}}}{{{{ end }}}}', out

    def is_think_split(self, node: nodes.Node) -> bool:
        if not (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and node.node.attr == "split" and len(node.args) == 1):
            return False
        arg = self.fold(node.args[0])
        return arg is not None and arg.value in THINK_TAGS and self.kind(node.node.node) == "string"

    def tag_built(self, node: nodes.Node) -> bool:
        """Whether text reads a name the template itself fills with a <think> tag (so the tag may be in it after all)."""
        return any(isinstance(n, nodes.Name) and n.name in self.tagged for n in (node, *node.find_all(nodes.Name)))

    def is_built_split(self, base: nodes.Node, arg: nodes.Node) -> bool:
        """`text.split(sep)[0]` or `[-1]` on text the template built with a <think> tag (Nemotron's `c.split('</think>')[-1]`)."""
        if not (isinstance(base, nodes.Call) and isinstance(base.node, nodes.Getattr) and base.node.attr == "split" and len(base.args) == 1):
            return False
        sep, at = self.fold(base.args[0]), self.fold(arg)
        return sep is not None and sep.value in THINK_TAGS and at is not None and at.value in (0, -1) and self.tag_built(base.node.node)

    def split_piece(self, base: nodes.Node, arg: nodes.Node) -> str:
        """The first or the last piece of a split on a constant separator: matches found left to right, never overlapping."""
        assert isinstance(base, nodes.Call) and isinstance(base.node, nodes.Getattr)
        sep, first = str(self.fold(base.args[0]).value), self.fold(arg).value == 0  # type: ignore[union-attr]
        t, out, nxt, i, n = self.fresh("t"), self.fresh("r"), self.fresh("f"), self.fresh("i"), len(sep.encode())
        end = f'(len (printf "%*s%*s" {i} "" {n} ""))'
        take = f"{{{{ {out} = slice {t} 0 {i} }}}}{{{{ break }}}}" if first else f"{{{{ {out} = slice {t} {end} }}}}{{{{ {nxt} = {end} }}}}"
        self.emit(f"{{{{ {t} := print {self.expr(base.node.node)} }}}}{{{{ {out} := {t} }}}}{{{{ {nxt} := 0 }}}}{{{{ range {i} := len {t} }}}}"
                  f"{{{{ if and (ge {i} {nxt}) (ge (len (slice {t} {i})) {n}) (eq (slice {t} {i} {end}) {go_string(sep)}) }}}}{take}{{{{ end }}}}{{{{ end }}}}")
        return out

    # --- lists filtered at render time ---------------------------------------------------

    def narrowing(self, node: nodes.If) -> str | None:
        """`{% if flag %}{% set seq = seq | rejectattr(...) | list %}{% endif %}`, the flag being `seq | selectattr(...) | list |
        length > 0` with the same arguments (Functionary drops its code_interpreter tools so): taken or not, seq ends as the
        rejectattr list, since with no item to reject that is the list itself. From here on seq reads as that filter, over
        the list it held before (a Go variable keeps it). None when the statement has another shape."""
        if node.elif_ or node.else_ or len(node.body) != 1 or not isinstance(node.body[0], nodes.Assign) or self.loops or self.captures:
            return None
        assign = node.body[0]
        reject = _unlisted(assign.node)
        if not (isinstance(assign.target, nodes.Name) and isinstance(reject, nodes.Filter) and reject.name == "rejectattr"
                and isinstance(reject.node, nodes.Name) and reject.node.name == assign.target.name and not reject.kwargs):
            return None
        name, order = assign.target.name, list(self.ast.find_all(nodes.Assign))  # assignments in the order they are written
        flags = [k for k, a in enumerate(order) if isinstance(node.test, nodes.Name) and isinstance(a.target, nodes.Name) and a.target.name == node.test.name]
        stores = [k for k, a in enumerate(order) if a is not assign and isinstance(a.target, nodes.Name) and a.target.name == name]
        # the flag is set once, and the list is not set again after it (but by this statement)
        if len(flags) != 1 or any(k > flags[0] for k in stores) or not self.counts_selected(order[flags[0]].node, name, reject.args):
            return None
        kept = f"{name}__all"  # the list before the filter, under a name of its own
        self.runtime.add(kept)
        self.kinds[kept] = self.kinds.get(name)
        self.aliases[name] = nodes.Filter(nodes.Name(kept, "load", lineno=node.lineno), "rejectattr", reject.args, [], None, None, lineno=node.lineno)
        return f"{{{{ ${kept} := ${name} }}}}"

    def counts_selected(self, test: nodes.Node, name: str, args: list[nodes.Expr]) -> bool:
        """Whether `test` is `name | selectattr(args) | list | length > 0` (or `!= 0`, with or without the list)."""
        if not (isinstance(test, nodes.Compare) and len(test.ops) == 1 and test.ops[0].op in ("gt", "ne")):
            return False
        zero = self.fold(test.ops[0].expr)
        count = test.expr
        if zero is None or zero.value != 0 or not (isinstance(count, nodes.Filter) and count.name == "length" and count.node is not None):
            return False
        select = _unlisted(count.node)
        return (isinstance(select, nodes.Filter) and select.name == "selectattr" and isinstance(select.node, nodes.Name)
                and select.node.name == name and not select.kwargs and repr(select.args) == repr(args))

    def view_truth(self, node: nodes.Node) -> str | None:
        """The truth of a list filtered at render time (or a name read as one): whether it keeps any item."""
        target = self.aliases.get(node.name, node) if isinstance(node, nodes.Name) else node
        if not self.is_view(target):
            return None
        view = self.seq_view(target)
        return f"(gt {self.count(view)} 0)" if view.pred is not None else f"(gt (len {view.base}) 0)"

    def is_view(self, node: nodes.Node) -> bool:
        """A list filtered at render time (selectattr, rejectattr, select, reject, map), possibly through |list."""
        while isinstance(node, nodes.Filter) and node.name == "list" and node.node is not None:
            node = node.node
        return isinstance(node, nodes.Filter) and node.name in ("selectattr", "rejectattr", "select", "reject", "map") and self.depends(node)

    def seq_view(self, node: nodes.Node) -> View:
        collected = self.collected_view(node)
        if collected is not None:
            return collected
        if isinstance(node, nodes.Name) and node.name in self.aliases:
            return self.seq_view(self.aliases[node.name])
        if isinstance(node, nodes.Filter) and node.name == "list" and node.node is not None:
            return self.seq_view(node.node)
        if isinstance(node, nodes.Filter) and node.name in ("selectattr", "rejectattr", "select", "reject") and node.node is not None:
            inner = self.seq_view(node.node)
            pred = self.predicate(node, inner.element)
            both = pred if inner.pred is None else (lambda x, a=inner.pred, b=pred: f"(and {a(x)} {b(x)})")
            return View(inner.base, inner.element, both, inner.attr)
        if isinstance(node, nodes.Filter) and node.name == "map" and node.node is not None:
            inner = self.seq_view(node.node)
            attr = next((self.fold(kw.value) for kw in node.kwargs if kw.key == "attribute"), None)
            field = K.FIELDS.get(inner.element or "", {}).get(attr.value if attr else "")
            if field is None or node.args:
                raise self.fail("map() other than map(attribute=...) over messages or tools", node, "map")
            return View(inner.base, field[1], inner.pred, field[0])
        kind = self.kind(node)
        return View(self.expr(node), K.ELEMENT.get(kind or ""), None)

    def predicate(self, node: nodes.Filter, element: str | None) -> Callable[[str], str]:
        args = [self.fold(a) for a in node.args]
        if any(a is None for a in args):
            raise self.fail(f"{node.name}() with arguments computed at render time", node, node.name)
        values = [a.value for a in args if a is not None]
        on_attr = node.name.endswith("attr")
        field = None
        if on_attr:
            field = K.FIELDS.get(element or "", {}).get(values[0] if values else "")
            if field is None:
                raise self.fail(f"{node.name}() on a field Ollama's data does not have", node, node.name)
            values = values[1:]
        test = values[0] if values else None
        operand = (lambda x: f"{x}.{field[0]}") if field else (lambda x: x)
        tests = {None: lambda x: operand(x), "defined": lambda x: operand(x), "undefined": lambda x: f"(not {operand(x)})",
                 "none": lambda x: f"(not {operand(x)})", "equalto": lambda x: f"(eq {operand(x)} {self.go_const(values[1], node)})"}
        tests["eq"] = tests["=="] = tests["equalto"]
        tests["ne"] = tests["!="] = lambda x: f"(ne {operand(x)} {self.go_const(values[1], node)})"
        if test not in tests or (test in ("equalto", "eq", "==", "ne", "!=") and len(values) < 2):
            raise self.fail(f"{node.name}() with the test {test!r}", node, node.name)
        keep = tests[test]
        return keep if node.name in ("select", "selectattr") else (lambda x: f"(not {keep(x)})")

    def count(self, view: View) -> str:
        var, item = self.fresh("n"), self.fresh("x")
        assert view.pred is not None
        self.emit(f'{{{{ {var} := 0 }}}}{{{{ range {item} := {view.base} }}}}{{{{ if {view.pred(item)} }}}}'
                  f'{{{{ {var} = len (printf "%*s " {var} "") }}}}{{{{ end }}}}{{{{ end }}}}')
        return var

    def pick(self, view: View, *, first: bool) -> str:
        if view.pred is None:
            return self.index_at(view.base, 0 if first else -1)
        var, item = self.fresh("p"), self.fresh("x")
        stop = "{{ break }}" if first else ""
        self.emit(f'{{{{ {var} := "" }}}}{{{{ range {item} := {view.base} }}}}{{{{ if {view.pred(item)} }}}}'
                  f"{{{{ {var} = {item} }}}}{stop}{{{{ end }}}}{{{{ end }}}}")
        return var

    def join(self, node: nodes.Filter) -> str:
        assert node.node is not None
        sep = self.fold(node.args[0]) if node.args else None
        if node.args and sep is None:
            raise self.fail("join() with a separator computed at render time", node, "join")
        if self.kind(node.node) == "joined":
            return self.joined_text(node.node)  # built joined with this separator as it grew (gotemplate/joins.py)
        if self.kind(node.node) == "nameset":
            # a list of text kept as one string, a mark around each item: the marks between items become the separator
            held, inner = self.expr(node.node), self.fresh("j")
            self.emit(f'{{{{ {inner} := "" }}}}{{{{ if gt (len {held}) 1 }}}}{{{{ {inner} = slice {held} 1 (len (slice {held} 1)) }}}}{{{{ end }}}}')
            return self.replaced(inner, SET_MARK, go_string(str(sep.value) if sep else ""))
        view = self.seq_view(node.node)
        var, item, started = self.fresh("j"), self.fresh("x"), self.fresh("s")
        value = f"{item}.{view.attr}" if view.attr else item
        body = f"{{{{ if {started} }}}}{{{{ {var} = print {var} {go_string(sep.value if sep else '')} }}}}{{{{ end }}}}" \
               f"{{{{ {var} = print {var} {value} }}}}{{{{ {started} = true }}}}"
        if view.pred is not None:
            body = f"{{{{ if {view.pred(item)} }}}}{body}{{{{ end }}}}"
        self.emit(f'{{{{ {var} := "" }}}}{{{{ {started} := false }}}}{{{{ range {item} := {view.base} }}}}{body}{{{{ end }}}}')
        return var


def _unlisted(node: nodes.Node) -> nodes.Node:
    while isinstance(node, nodes.Filter) and node.name == "list" and node.node is not None:
        node = node.node
    return node
