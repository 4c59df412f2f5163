"""Expression handlers: names, fields, indexes, comparisons, logic and integer arithmetic.

Go templates have no arithmetic operators, but `printf "%*s" n ""` is n characters long and
`slice s k` drops k of them, so sums and differences of non-negative integers are lengths of
padded strings; `x % k` of a loop counter is a counter that wraps at k.
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes
from markupsafe import Markup

from model_serving.serve.ollama.gotemplate import kinds as K
from model_serving.serve.ollama.gotemplate.core import SET_MARK, Core, is_undefined
from model_serving.serve.ollama.gotemplate.text import go_string

THINK_TAGS = ("<think>", "</think>")
THINK_NOTE = ("Ollama hands the reasoning of earlier turns in .Thinking, so message text holds no <think> block: tests and splits "
              "of the text on <think>/</think> are read that way (the text as it is, no tag in it).")
DEFINED_NOTE = "`is defined` (and `'key' in message`) is read as 'is non-empty': Ollama always has every field, empty when unset."
UNSET_NOTE = ("Message and tool fields Ollama's API does not carry (such as a message's prefix or a function's returns) read as "
              "unset: Ollama drops them from every request, so no conversation it renders has them.")
MARKUP_NOTE = ("Text added with + to markup (`'...' | safe`) is HTML-escaped, as markupsafe escapes it (&, <, >, ' and \" as entities); "
               "Go's html also turns a NUL character into U+FFFD, which Python keeps.")
_OPERATORS = {"Mul": "*", "Div": "/", "FloorDiv": "//", "Pow": "**", "Neg": "-", "Dict": "{", "List": "[", "Tuple": "("}
_CMP = {"eq": "eq", "ne": "ne", "lt": "lt", "lteq": "le", "gt": "gt", "gteq": "ge"}


class Expressions(Core):
    def expr(self, node: nodes.Node) -> str:
        if isinstance(node, nodes.Name) and node.name in self.aliases:
            return self.expr(self.aliases[node.name])
        folded = self.fold(node)
        if folded is not None:
            return self.go_const(folded.value, node)
        method = getattr(self, f"x_{type(node).__name__}", None)
        if method is None:
            raise self.fail(self.describe(node), node, _OPERATORS.get(type(node).__name__, ""))
        converted: str = method(node)
        return converted

    def truth(self, node: nodes.Node) -> str:
        if isinstance(node, nodes.Name) and node.name in self.held_none and self.store_counts.get(node.name) == 1:
            return "false"  # set once to a key Ollama's data never has (`tool.get('return_parameters')`): None, whatever follows `and`
        if self.json_field(node) is not None:
            return self.json_field_truth(node)
        if self.items_method(node) is not None:
            return self.items_truth(node)
        return self.view_truth(node) or self.expr(node)

    def go_const(self, value: Any, node: nodes.Node) -> str:
        if is_undefined(value) or value is None:
            return '""'
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return repr(value)
        if isinstance(value, str):
            return go_string(value)
        if isinstance(value, (list, tuple)) and not value:
            return "(slice $.Messages 0 0)"  # an empty list: Go templates have no list literal
        raise self.fail(f"a {type(value).__name__} value used at render time (Go templates have no list or dict literals)", node, "[")

    def x_Name(self, node: nodes.Name) -> str:
        if node.name == "bos_token":
            if "bos_token" in self.consts:  # the template sets its own
                return go_string(str(self.consts["bos_token"]))
            if self.runtime_adds_bos and self.bos:
                return self.later_bos()
            return go_string(self.bos)
        if node.name == "loop":
            raise self.fail("the loop object itself", node, "loop")
        if node.name in self.namespaces:
            raise self.fail(f"the namespace object {node.name} as a whole", node, node.name)
        if self.kinds.get(node.name) == "split":
            raise self.fail("a .split() whose pieces are used as a list (Go templates build no lists; its pieces by index and "
                            "their number convert)", node, node.name)
        return f"${node.name}"

    def later_bos(self) -> str:
        """The BOS text, except the first time: the runtime writes that one, and writing it too would double it."""
        self.bos_dropped = True
        self.note("The template's first BOS token is left out: the runtime adds one (add_bos_token); later ones are kept.")
        var = self.fresh("bos")
        self.emit(f'{{{{ {var} := "" }}}}{{{{ if $bos_seen }}}}{{{{ {var} = {go_string(self.bos)} }}}}{{{{ end }}}}{{{{ $bos_seen = true }}}}')
        return var

    def x_Getattr(self, node: nodes.Getattr) -> str:
        if self.items_method(node) == "always":
            raise self.fail("the items method of a tool property (`p.items`: Jinja finds the dict's method before the key; "
                            "`p['items']` reads the key)", node, "items")
        return self.member(node.node, node.attr, node)

    def x_Getitem(self, node: nodes.Getitem) -> str:
        arg, base = node.arg, node.node
        if self.is_built_split(base, arg):
            return self.split_piece(base, arg)
        if self.is_think_split(base):
            self.note(THINK_NOTE)
            assert isinstance(base, nodes.Call) and isinstance(base.node, nodes.Getattr)  # is_think_split checked both
            return self.expr(base.node.node)
        piece = self.split_item(node)
        if piece is not None:
            return piece
        key = self.fold(arg)
        if key is not None and isinstance(key.value, str):
            return self.member(base, key.value, node)
        table = self.fold(base)
        if table is not None and isinstance(table.value, dict) and key is None:
            return self.lookup(table.value, arg, node)
        if isinstance(arg, nodes.Slice):
            return self.slice_of(base, arg, node)
        first = self.first_of_type(node) or self.json_first(node)
        if first is not None:
            return first
        if self.kind(base) == "string":
            raise self.fail("an index into text (Go indexes bytes, Python characters)", node, "[")
        if self.kind(base) in ("args", "properties") and self.kind(arg) == "string":
            return f"(index {self.expr(base)} {self.expr(arg)})"  # a Go map by a key read at render time
        view = self.seq_view(base)
        if view.pred is not None:
            if key is None or key.value not in (0, -1):
                raise self.fail("an index into a filtered list other than [0] or [-1]", node, "[")
            return self.pick(view, first=key.value == 0)
        if key is not None and isinstance(key.value, int):
            return self.index_at(view.base, key.value)
        if isinstance(arg, (nodes.Add, nodes.Sub)) and _is_loop_attr(arg.left, "index0") and isinstance(arg.right, nodes.Const) and arg.right.value == 1:
            # seq[loop.index0 - 1] / seq[loop.index0 + 1] over the loop's own sequence: the previous / next item.
            if self.loops and view.base == self.loops[-1].iterable:
                return self.loop_attr("previtem" if isinstance(arg, nodes.Sub) else "nextitem", node)
        return self.floored_index(view.base, arg) or f"(index {view.base} {self.int_expr(arg)})"

    def lookup(self, table: dict[Any, Any], key: nodes.Node, node: nodes.Node) -> str:
        """A constant dict indexed at render time: an if-chain over its keys (a missing key reads as undefined, empty)."""
        if not all(isinstance(k, str) and isinstance(v, (str, int, bool)) for k, v in table.items()):
            raise self.fail("a dict of non-text values indexed at render time", node, "[")
        var, go_key = self.fresh("d"), self.expr(key)
        chain = "".join(f"{{{{ {'if' if i == 0 else 'else if'} eq {go_key} {go_string(k)} }}}}{{{{ {var} = {self.go_const(v, node)} }}}}"
                        for i, (k, v) in enumerate(table.items()))
        self.emit(f'{{{{ {var} := "" }}}}{chain}{{{{ end }}}}' if table else f'{{{{ {var} := "" }}}}')
        return var

    def index_at(self, seq: str, k: int) -> str:
        if k >= 0:
            return f"(index {seq} {k})"
        return f"(index {seq} (len (slice {seq} {-k})))"  # seq[-k] is seq[len - k]

    def slice_of(self, base: nodes.Node, arg: nodes.Slice, node: nodes.Node) -> str:
        """seq[a:b] with Python's bounds: negative ones count from the end, and both are clamped to the sequence."""
        if arg.step is not None:
            raise self.fail("a slice with a step", node, "::")
        seq = self.expr(base)
        if arg.start is None and arg.stop is None:
            return seq
        held, lo, hi = self.fresh("q"), self.fresh("lo"), self.fresh("hi")
        code = [f"{{{{ {held} := {seq} }}}}{{{{ {lo} := 0 }}}}{{{{ {hi} := len {held} }}}}"]
        for bound, var in ((arg.start, lo), (arg.stop, hi)):
            if bound is None:
                continue
            folded = self.fold(bound)
            if folded is not None and isinstance(folded.value, int) and folded.value < 0:
                k = -folded.value  # len - k, or 0 when k is past the start
                code.append(f"{{{{ {var} = 0 }}}}{{{{ if ge (len {held}) {k} }}}}{{{{ {var} = len (slice {held} {k}) }}}}{{{{ end }}}}")
            else:
                code.append(f"{{{{ if lt ({self.int_expr(bound)}) (len {held}) }}}}{{{{ {var} = {self.int_expr(bound)} }}}}"
                            f"{{{{ else }}}}{{{{ {var} = len {held} }}}}{{{{ end }}}}")
        code.append(f"{{{{ if gt {lo} {hi} }}}}{{{{ {lo} = {hi} }}}}{{{{ end }}}}")
        self.emit("".join(code))
        return f"(slice {held} {lo} {hi})"

    def member(self, base: nodes.Node, attr: str, node: nodes.Node) -> str:
        if isinstance(base, nodes.Name) and base.name == "loop":
            return self.loop_attr(attr, node)
        collected = self.collected_view(node)
        if collected is not None:  # read as a whole: its count (0 is false, as an empty list is)
            return self.count(collected) if collected.pred is not None else f"(len {collected.base})"
        if isinstance(base, nodes.Name) and base.name in self.namespaces:
            return f"${base.name}_{attr}"
        field_of_record = self.record_field(base, attr)
        if field_of_record is not None:
            return field_of_record[0]
        if self.is_unset(base) or self.is_unset(node):
            return '""'  # a field Ollama drops (or a field of one), or an attribute text does not have
        kind = self.kind(base)
        if kind is not None and (kind, attr) in K.FIXED:
            return go_string(K.FIXED[(kind, attr)])
        field = K.FIELDS.get(kind or "", {}).get(attr)
        if field is None and kind in K.CLOSED and not hasattr(dict, attr):
            self.note(UNSET_NOTE)
            return '""'
        if field is None and kind in ("value", "scalar") and self.is_present_field(node):
            return self.json_field_read(node)[0]  # an enclosing if has shown the key is there: its value, as any JSON value
        if field is None and kind in ("value", "scalar"):
            raise self.json_field_refused(node, "used other than in a test")
        if field is None:
            raise self.fail(f"the field {attr!r} of {'a ' + kind if kind else 'a value'} that Ollama's data does not have", node, attr)
        if (kind, attr) in K.PRINTED:
            return f"(print {self.expr(base)}.{field[0]})"
        return f"{self.expr(base)}.{field[0]}"

    def is_unset(self, node: nodes.Node) -> bool:
        """A field that no value Ollama hands a template has (or a field of one)."""
        if isinstance(node, nodes.Getitem):
            key = self.fold(node.arg)
            attr = key.value if key is not None and isinstance(key.value, str) else None
        else:
            attr = node.attr if isinstance(node, nodes.Getattr) else None
        if attr is None or not isinstance(node, (nodes.Getattr, nodes.Getitem)):
            return False
        if self.is_unset(node.node):
            return True
        kind = self.kind(node.node)
        if kind == "string":
            return not hasattr(str, attr)  # `content[0].type`: Jinja finds no such attribute on text
        if kind in K.KEPT_KEYS:
            return attr not in K.KEPT_KEYS[kind] and not hasattr(dict, attr)
        if kind in K.SEQUENCES:
            return not hasattr(list, attr)  # a key of a list: Jinja finds neither an item nor an attribute
        return kind in K.CLOSED and attr not in K.FIELDS[kind or ""] and (kind, attr) not in K.FIXED and not hasattr(dict, attr)

    def loop_attr(self, attr: str, node: nodes.Node) -> str:
        if not self.loops:
            raise self.fail("loop outside a for loop", node, "loop")
        loop = self.loops[-1]
        seq, i = loop.iterable, loop.index
        if loop.fixed is not None and attr in loop.fixed:
            return loop.fixed[attr]
        if loop.fixed is not None and not loop.total:
            raise self.fail(f"loop.{attr} in a loop over .items() of a tool", node, attr)
        if loop.total:
            counted = {"index0": i, "index": f'(len (printf "%*s " {i} ""))', "first": f"(eq {i} 0)", "length": loop.total,
                       "last": f'(eq (len (printf "%*s " {i} "")) {loop.total})'}
            if attr not in counted:
                raise self.fail(f"loop.{attr} in a loop over a filtered list", node, attr)
            return counted[attr]
        simple = {"index0": i, "index": f'(len (printf "%*s " {i} ""))', "first": f"(eq {i} 0)", "length": f"(len {seq})",
                  "last": f"(eq (len (slice {seq} {i})) 1)", "revindex": f"(len (slice {seq} {i}))",
                  "revindex0": f"(len (slice (slice {seq} {i}) 1))"}
        if attr in simple:
            return simple[attr]
        if attr == "previtem":
            loop.prev = True
            return f"$prev{loop.counter}"
        if attr == "nextitem":
            loop.next = True  # "" after the last item, as Jinja's is undefined there
            return f"$next{loop.counter}"
        raise self.fail(f"loop.{attr}", node, attr)

    # --- integers ------------------------------------------------------------------------

    def is_int(self, node: nodes.Node) -> bool:
        return self.kind(node) == "int"

    def int_expr(self, node: nodes.Node) -> str:
        folded = self.fold(node)
        if folded is not None and isinstance(folded.value, int) and not isinstance(folded.value, bool):
            return str(folded.value)
        if isinstance(node, (nodes.Add, nodes.Sub)) and self.may_be_negative(node):
            guarded = self.floored(node)
            if guarded is not None:
                return guarded
            raise self.fail("arithmetic on a number that can be negative (Go templates count with lengths, which never are)", node)
        if isinstance(node, nodes.Add):
            return f'(len (printf "%*s%*s" {self.int_expr(node.left)} "" {self.int_expr(node.right)} ""))'
        if isinstance(node, nodes.Sub):
            return f'(len (slice (printf "%*s" {self.int_expr(node.left)} "") {self.int_expr(node.right)}))'
        if isinstance(node, nodes.Mod):
            return self.modulo(node)
        if self.is_int(node):
            return self.expr(node)
        raise self.fail("arithmetic on a value that is not a whole number", node)

    def may_be_negative(self, node: nodes.Node) -> bool:
        for n in (node, *node.find_all((nodes.Name, nodes.Getattr))):
            if isinstance(n, nodes.Name) and n.name in self.negative - self.counts:
                return True
            if isinstance(n, nodes.Getattr) and isinstance(n.node, nodes.Name) and f"{n.node.name}_{n.attr}" in self.negative - self.counts:
                return True
        return False

    def modulo(self, node: nodes.Mod) -> str:
        divisor = self.fold(node.right)
        offsets = {"index0": 0, "index": 1}
        attr = node.left.attr if isinstance(node.left, nodes.Getattr) and isinstance(node.left.node, nodes.Name) and node.left.node.name == "loop" else None
        if not (self.loops and attr in offsets and divisor is not None and isinstance(divisor.value, int) and divisor.value > 0):
            raise self.fail("arithmetic (%) other than loop.index0 % n or loop.index % n", node, "%")
        loop = self.loops[-1]
        key = (offsets[attr], divisor.value)
        if key not in loop.mods:
            loop.mods[key] = self.fresh("mod")
        return loop.mods[key]

    def x_Add(self, node: nodes.Add) -> str:
        return self.int_expr(node) if self.is_int(node) else self.concat(node)

    def x_Sub(self, node: nodes.Sub) -> str:
        return self.int_expr(node)

    def x_Mod(self, node: nodes.Mod) -> str:
        return self.int_expr(node)

    def x_Concat(self, node: nodes.Concat) -> str:
        return self.concat(node)

    def concat(self, node: nodes.Node) -> str:
        items: list[nodes.Node] = []

        def flatten(n: nodes.Node) -> None:
            if isinstance(n, nodes.Add) and not self.is_int(n):
                flatten(n.left)
                flatten(n.right)
            elif isinstance(n, nodes.Concat):
                for child in n.nodes:
                    flatten(child)
            else:
                items.append(n)

        flatten(node)
        if any(self.kind(i) in K.SEQUENCES for i in items):
            raise self.fail("a list built at render time (+ on lists)", node, "+")
        joins = {type(n) for n in (node, *node.find_all((nodes.Add, nodes.Concat)))}
        if joins == {nodes.Add} and any(self.json_field(i) is not None for i in items):
            return f"(print {' '.join(self.json_operand(i) for i in items)})"  # `'// ' + v.description`: text only
        # fmt.Sprint puts no spaces between string operands, so print is string concatenation.
        return f"(print {' '.join(self.markup_escaped(node, items))})"

    def markup_escaped(self, node: nodes.Node, items: list[nodes.Node]) -> list[str]:
        """The operands of a `+` chain in Go. Where one is markup (`'...' | safe`), Python's `+` HTML-escapes every plain
        operand (markupsafe's Markup.__add__): Go's `html` escapes the same five characters, as the same entities."""
        markup = [self.is_markup(i) for i in items]
        joins = {type(n) for n in (node, *node.find_all((nodes.Add, nodes.Concat)))}
        if not any(markup) or joins == {nodes.Concat}:
            return [self.expr(i) for i in items]  # `~` joins as text, markup or not
        if nodes.Concat in joins:
            raise self.fail("markup (| safe) joined with both + and ~ (+ escapes the text it adds, ~ does not)", node, "safe")
        self.note(MARKUP_NOTE)
        return [self.expr(i) if safe else f"(html {self.expr(i)})" for i, safe in zip(items, markup, strict=True)]

    def is_markup(self, node: nodes.Node) -> bool:
        folded = self.fold(node)
        if folded is not None:
            return isinstance(folded.value, Markup)
        return isinstance(node, nodes.Filter) and node.name == "safe"

    # --- logic ---------------------------------------------------------------------------

    # A test whose answer Ollama's data fixes (`x is string` on message text) is "true" or "false"
    # already; logic over such answers is decided here, so a branch that cannot run is not converted.

    def x_And(self, node: nodes.And) -> str:
        left = self.truth(node.left)
        if left == "false":
            return "false"
        # `v is string and ('<' in v ...)`: Jinja reads the right side only for text, so v is text there
        shown = repr(node.left.node) if isinstance(node.left, nodes.Test) and node.left.name == "string" and not node.left.args else None
        if shown is not None:
            self.known_text.add(shown)
        try:
            right = self.truth(node.right)
        finally:
            self.known_text.discard(shown or "")
        if right == "false":
            return "false"  # Go operands have no side effects, so the left one need not run
        return right if left == "true" else (left if right == "true" else f"(and {left} {right})")

    def x_Or(self, node: nodes.Or) -> str:
        default = self.fold(node.right)
        if default is not None and default.value in ([], {}, ()) and self.kind(node.left) in K.SEQUENCES | K.MAPPINGS:
            return self.expr(node.left)  # `arguments or {}`: an empty Go list or map reads as the empty literal does
        left = self.truth(node.left)
        if left == "true":
            return "true"
        right = self.truth(node.right)
        if right == "true":
            return "true"
        return right if left == "false" else (left if right == "false" else f"(or {left} {right})")

    def x_Not(self, node: nodes.Not) -> str:
        inner = self.truth(node.node)
        return {"true": "false", "false": "true"}.get(inner, f"(not {inner})")

    def x_CondExpr(self, node: nodes.CondExpr) -> str:
        test = self.truth(node.test)
        if test in ("true", "false"):
            taken = node.expr1 if test == "true" else node.expr2
            return self.expr(taken) if taken is not None else '""'
        var = self.fresh("c")
        other = f"{{{{ else }}}}{{{{ {var} = {self.expr(node.expr2)} }}}}" if node.expr2 is not None else ""
        self.emit(f'{{{{ {var} := "" }}}}{{{{ if {test} }}}}{{{{ {var} = {self.expr(node.expr1)} }}}}{other}{{{{ end }}}}')
        return var

    def x_Compare(self, node: nodes.Compare) -> str:
        parts = []
        left = node.expr
        for operand in node.ops:
            parts.append(self.compare(left, operand.op, operand.expr, node))
            left = operand.expr
        return parts[0] if len(parts) == 1 else f"(and {' '.join(parts)})"

    def compare(self, left: nodes.Node, op: str, right: nodes.Node, node: nodes.Node) -> str:
        if op in ("in", "notin"):
            test = self.contains(left, right, node)
            return test if op == "in" else f"(not {test})"
        field_test = self.json_field_compare(left, op, right)
        if field_test is not None:
            return field_test
        folded = [(f, other) for f, other in ((self.fold(right), left), (self.fold(left), right)) if f is not None and isinstance(f.value, bool)]
        if folded and op in ("eq", "ne"):
            # `x != false` where x holds text or false: Go's eq refuses mixed types, so compare type and value as text.
            flag, other = folded[0]
            value = self.expr(other)
            test = f'(eq (printf "%T %v" {value} {value}) "bool {str(flag.value).lower()}")'
            return test if op == "eq" else f"(not {test})"
        emptiness = self.emptiness(left, op, right)
        if emptiness is not None:
            return emptiness
        length = self.length_compare(left, op, right)
        if length is not None:
            return length
        go_op = _CMP.get(op)
        if go_op is None:
            raise self.fail(f"the comparison {op!r}", node)
        if self.is_int(left) or self.is_int(right):
            return f"({go_op} {self.int_expr(left)} {self.int_expr(right)})"
        if op in ("eq", "ne") and self.kind(left) == self.kind(right) == "message":
            # Python compares dicts by value; a message printed with %v shows every field, lists and maps included
            test = f'(eq (printf "%v" {self.expr(left)}) (printf "%v" {self.expr(right)}))'
            return test if op == "eq" else f"(not {test})"
        for whole, other in ((left, right), (right, left)):
            text = self.fold(other)
            if op in ("eq", "ne") and self.kind(whole) in K.MAPPINGS | K.SEQUENCES and text is not None and isinstance(text.value, str):
                return "false" if op == "eq" else "true"  # Python's list or dict never equals text (a property's type of several names)
        if {self.kind(left), self.kind(right)} & (K.MAPPINGS | K.SEQUENCES):
            raise self.fail("a comparison of whole messages, tools or lists (Go's eq compares only text and numbers)", node, "==")
        return f"({go_op} {self.expr(left)} {self.expr(right)})"

    def emptiness(self, left: nodes.Node, op: str, right: nodes.Node) -> str | None:
        """`text != ''`, `text | length > 0` and the like, as the text's own truth: one test however it is written, so
        `if c is string and c != '' ... elif c | length > 0` is seen to repeat its test (the second branch never runs)."""
        for subject, other, flipped in ((left, right, False), (right, left, True)):
            value = self.fold(other)
            if value is None or isinstance(value.value, bool):
                continue
            measured = isinstance(subject, nodes.Filter) and subject.name in ("length", "count") and subject.node is not None \
                and self.kind(subject.node) == "string"
            text = subject.node if isinstance(subject, nodes.Filter) and measured else subject
            assert text is not None
            if self.kind(text) != "string":
                continue
            cmp = {"gt": "lt", "lt": "gt"}.get(op, op) if flipped else op
            non_empty = (value.value == "" and not measured and cmp == "ne") or (value.value == 0 and measured and cmp in ("ne", "gt"))
            empty = (value.value == "" and not measured and cmp == "eq") or (value.value == 0 and measured and cmp == "eq")
            if non_empty or empty:
                test = self.truth(text)
                return test if non_empty else {"true": "false", "false": "true"}.get(test, f"(not {test})")
        return None

    def contains(self, left: nodes.Node, right: nodes.Node, node: nodes.Node) -> str:
        defaulted = self.json_contains_or(left, right)
        if defaulted is not None:
            return defaulted
        if self.kind(right) == "nameset":
            if self.kind(left) != "string":
                raise self.fail("an `in` test of a value that is not text in a list built at render time", node, "in ")
            return self.substring(f"(print {go_string(SET_MARK)} {self.expr(left)} {go_string(SET_MARK)})", self.expr(right))
        haystack, needle = self.fold(right), self.fold(left)
        if haystack is not None and isinstance(haystack.value, (list, tuple, dict)):  # a dict's keys
            if not haystack.value:
                return "false"
            return f"(eq {self.expr(left)} {' '.join(self.go_const(v, node) for v in haystack.value)})"
        kind = self.kind(right)
        if kind == "property" and needle is not None and needle.value == "items":
            return f'(ne (printf "%T" {self.expr(right)}.Items) "<nil>")'  # Ollama drops null items: nil is a missing key
        if needle is not None and isinstance(needle.value, str) and kind in K.FIELDS:
            if (kind, needle.value) in K.FIXED:
                return "true"
            self.note(DEFINED_NOTE)
            return self.member(right, needle.value, node) if needle.value in K.FIELDS[kind] else "false"
        if kind == "strings" and (self.kind(left) == "string" or (needle is not None and isinstance(needle.value, str))):
            # membership in a list of names (a tool's required properties): a flag set by a range over the list
            var, item = self.fresh("in"), self.fresh("v")
            self.emit(f"{{{{ {var} := false }}}}{{{{ range {item} := {self.expr(right)} }}}}{{{{ if eq {item} {self.expr(left)} }}}}"
                      f"{{{{ {var} = true }}}}{{{{ end }}}}{{{{ end }}}}")
            return var
        if needle is not None and needle.value in THINK_TAGS and kind == "string" and not self.tag_built(right):
            self.note(THINK_NOTE)
            return "false"
        if kind in ("value", "scalar") and repr(right) in self.known_text:
            kind = "string"  # Go's and stops before this test where the value is not text; print keeps the scan safe anyway
        if kind == "string" and (self.kind(left) == "string" or (needle is not None and isinstance(needle.value, str))):
            return self.substring(self.expr(left), self.expr(right))
        in_json = self.json_contains(left, right)
        if in_json is not None:
            return in_json
        hint = f"in {right.node.name}.{right.attr}" if isinstance(right, nodes.Getattr) and isinstance(right.node, nodes.Name) else "in "
        raise self.fail("an `in` test Go templates cannot evaluate (a substring or membership test on runtime data)", node, hint)


    def substring(self, needle: str, haystack: str) -> str:
        """`needle in haystack` on text: a scan of the byte offsets, stopping at the first match (range over an int, Go 1.22+)."""
        found, hay, sub, i = self.fresh("in"), self.fresh("h"), self.fresh("n"), self.fresh("i")
        end = f"(len {sub})"  # the text from offset i, cut to the needle's length (i + len would cost a string of i spaces)
        self.emit(f"{{{{ {found} := false }}}}{{{{ {hay} := print {haystack} }}}}{{{{ {sub} := print {needle} }}}}"
                  f"{{{{ if not {sub} }}}}{{{{ {found} = true }}}}{{{{ end }}}}"
                  f"{{{{ range {i} := len {hay} }}}}{{{{ if and (not {found}) (ge (len (slice {hay} {i})) (len {sub})) (eq (slice (slice {hay} {i}) 0 {end}) {sub}) }}}}"
                  f"{{{{ {found} = true }}}}{{{{ break }}}}{{{{ end }}}}{{{{ end }}}}")
        return found


def _is_loop_attr(node: nodes.Node, attr: str) -> bool:
    return isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == "loop" and node.attr == attr
