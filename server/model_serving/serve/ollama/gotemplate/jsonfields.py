"""Keys read from a JSON value Ollama hands over as it was decoded (a tool property's `items`, a call argument's value).

Ollama keeps a property's `items` as decoded JSON (`any` in its api), so `spec['items']['type']` is real data: a
mapping's key, or nothing when the value is a list, text, a number, a bool or null, or a mapping without the key
(Jinja reads all of these as undefined, and `index` fails in Go on anything but a map, and gives nil for a missing
key, as for JSON null). So the read walks the map's keys, guarded by the value's Go type: a Go variable holds the
key's value where the key is there (nil for JSON null) and "" where Jinja's is undefined (printed as nothing, false,
a sequence and iterable, as Jinja's undefined is), and a second one says whether it is there. Converted: its truth,
`==` / `!=` with text (Go's `eq` fails on a value that may be a number: type and text are compared as one string),
`is defined`, `is none`, `is string` and the other JSON type tests. Any other use (printing it, a key of it) is
refused, naming the key, and so is a key that names an attribute of a JSON value's Python type (`items`, `count`,
`real`, ...), since Jinja finds the method first on some values.
"""

from __future__ import annotations

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate.core import Core
from model_serving.serve.ollama.gotemplate.text import go_string

_JSON_TYPES: tuple[object, ...] = ({}, [], "", 0, 0.0, True, None)
_GO_MAP = "map[string]interface {}"
_TYPES = {"mapping": [_GO_MAP], "sequence": ["[]interface {}", _GO_MAP, "string"], "iterable": ["[]interface {}", _GO_MAP, "string"],
          "number": ["float64", "bool"], "boolean": ["bool"], "string": ["string"], "none": ["<nil>"]}

_SHOWN_THERE = {"mapping", "string", "number", "boolean"}


class JSONFields(Core):
    prefetched: dict[tuple[str, str], tuple[str, str, str]]  # (Go value, key) -> json_field_parts' variables, read up front
    memo: dict[tuple[str, str], tuple[list[str], tuple[str, str, str]]]  # the same, read in a statement's prelude (that frame)

    def prefetch(self, go: str, keys: list[str]) -> str:
        """Go statements reading each key of a JSON value once (one range over the map), for json_field_parts to reuse."""
        if not keys:
            return ""
        head, cases = [], []
        for key in keys:
            var, there = self.fresh("f"), self.fresh("h")
            method = self.fresh("m") if hasattr(dict, key) and not any(hasattr(t, key) for t in _JSON_TYPES if not isinstance(t, dict)) else "false"
            head.append(f'{{{{ {var} := "" }}}}{{{{ {there} := false }}}}' + (f"{{{{ {method} := false }}}}" if method != "false" else ""))
            cases.append((key, var, there, method))
            self.prefetched[(go, key)] = (var, there, method)
        k, v = self.fresh("k"), self.fresh("v")
        ifs = "".join(f"{{{{ {'if' if i == 0 else 'else if'} eq {k} {go_string(key)} }}}}{{{{ {var} = {v} }}}}{{{{ {there} = true }}}}"
                      for i, (key, var, there, _) in enumerate(cases))
        methods = "".join(f"{{{{ {method} = not {there} }}}}" for _, _, there, method in cases if method != "false")
        return (f'{"".join(head)}{{{{ if eq (printf "%T" {go}) {go_string(_GO_MAP)} }}}}{{{{ range {k}, {v} := {go} }}}}{ifs}'
                f"{{{{ end }}}}{{{{ end }}}}{methods}{{{{ end }}}}")

    def json_field(self, node: nodes.Node | None) -> tuple[nodes.Node, str] | None:
        """(the JSON value, the key) of `v.key` / `v['key']` on a decoded JSON value; None for any other node."""
        if isinstance(node, nodes.Getattr):
            key: object = node.attr
        elif isinstance(node, nodes.Getitem) and not isinstance(node.arg, nodes.Slice):
            folded = self.fold(node.arg)
            key = folded.value if folded is not None else None
        else:
            return None
        if not isinstance(key, str) or (self.kind(node.node) not in ("value", "scalar") and self.json_field(node.node) is None):
            return None  # a key of a JSON value, or of a key of one (`spec['items']['type']`: undefined below a missing key)
        return node.node, key

    def json_field_read(self, node: nodes.Node) -> tuple[str, str]:
        """Go variables: the key's value (nil for JSON null; "" where the key is not there) and whether it is there."""
        if self.dict_method_key(node) and not self.is_present_field(node):
            raise self.json_field_refused(node, "used other than in a test or as a key an if shows is there (where a mapping lacks it, "
                                                "Jinja finds the dict method of that name)")
        var, there, _ = self.json_field_parts(node)
        return var, there

    def json_field_parts(self, node: nodes.Node) -> tuple[str, str, str]:
        """json_field_read's two variables, and a Go test of whether Jinja finds a dict method in the key's place."""
        found = self.json_field(node)
        assert found is not None
        base, key = found
        method = self.dict_method_key(node)
        if key.startswith("_") or (not method and any(hasattr(t, key) for t in _JSON_TYPES)):
            raise self.fail(f"the key {key!r} of a JSON value (Jinja finds the method of that name on some values)", node, key)
        # a key of a key reads the inner key's variable: "" where it is missing (or is the dict method Jinja finds, whose keys
        # are undefined too), so every key below it is undefined, as in Jinja
        go = self.json_field_parts(base)[0] if self.json_field(base) is not None and not self.is_present_field(base) else self.expr(base)
        if (go, key) in self.prefetched:
            return self.prefetched[(go, key)]  # read once where the value was bound (a schema written out in place)
        frame = self.frames[-1] if self.frames else None
        memo = self.memo.get((go, key))  # the same read earlier in this statement's prelude: the same scope
        if memo is not None and frame is not None and memo[0] is frame:
            return memo[1]
        var, there, k, v = self.fresh("f"), self.fresh("h"), self.fresh("k"), self.fresh("v")
        found_method = self.fresh("m") if method else "false"
        self.emit(f'{{{{ {var} := "" }}}}{{{{ {there} := false }}}}' + (f"{{{{ {found_method} := false }}}}" if method else "")
                  + f'{{{{ if eq (printf "%T" {go}) {go_string(_GO_MAP)} }}}}'
                  f"{{{{ range {k}, {v} := {go} }}}}{{{{ if eq {k} {go_string(key)} }}}}{{{{ {var} = {v} }}}}{{{{ {there} = true }}}}"
                  "{{ end }}{{ end }}" + (f"{{{{ {found_method} = not {there} }}}}" if method else "") + "{{ end }}")
        if frame is not None:
            self.memo[(go, key)] = (frame, (var, there, found_method))
        return var, there, found_method

    def dict_method_key(self, node: nodes.Node) -> bool:
        """`v['items']`: Jinja's subscript finds a mapping's key first, and the dict method of that name where the key is
        missing (no list, text, number, bool or null has one of that name: Jinja's undefined there)."""
        found = self.json_field(node)
        if found is None or not isinstance(node, nodes.Getitem) or found[1].startswith("_") or not hasattr(dict, found[1]):
            return False
        return not any(hasattr(t, found[1]) for t in _JSON_TYPES if not isinstance(t, dict))

    def json_field_truth(self, node: nodes.Node) -> str:
        var, _, method = self.json_field_parts(node)
        return var if method == "false" else f"(or {method} {var})"

    def json_field_compare(self, left: nodes.Node, op: str, right: nodes.Node) -> str | None:
        """`v.key == 'text'` (or `!=`, either side): true for that text alone, and never where the key is not there."""
        for field, other in ((left, right), (right, left)):
            if self.json_field(field) is None:
                continue
            text = self.fold(other)
            if op not in ("eq", "ne") or text is None or not isinstance(text.value, str):
                return None  # any other comparison is refused where the key is read
            var, there, _ = self.json_field_parts(field)
            test = f'(eq (printf "%T %v" {var} {var}) {go_string("string " + text.value)})'
            if not text.value:
                test = f"(and {there} {test})"  # a missing key's "" would equal the empty text
            return test if op == "eq" else f"(not {test})"
        return None

    def json_field_test(self, node: nodes.Test) -> str:
        """`v.key is defined` / `is none` / `is string` / `is mapping` ...: Jinja's undefined is a sequence and iterable only."""
        name = node.name
        if node.args or name not in (*_TYPES, "defined", "undefined"):
            raise self.json_field_refused(node.node, f"in the test 'is {name}'")
        var, there, method = self.json_field_parts(node.node)
        if name in ("defined", "undefined"):
            defined = there if method == "false" else f"(or {there} {method})"
            return defined if name == "defined" else f"(not {defined})"
        test = f'(eq (printf "%T" {var}) {" ".join(go_string(t) for t in _TYPES[name])})'
        if name in ("sequence", "iterable") and method != "false":
            return f"(and (not {method}) {test})"  # a method has no length and no items
        return f"(and {there} {test})" if name in ("string", "none") else test

    def json_contains(self, left: nodes.Node, right: nodes.Node) -> str | None:
        """`'key' in v` of a decoded JSON value: a mapping's key, an item of a list (text equal to it), a substring of
        text. Jinja fails on a number, a bool or null (not iterable): the test then indexes the value, which fails in
        Go too, and only where Jinja evaluates the test (Go's and/or stop early as Python's do)."""
        needle = self.fold(left)
        if self.kind(right) not in ("value", "scalar") or not (
                (needle is not None and isinstance(needle.value, str)) or self.kind(left) == "string"):
            return None
        go, text, typ, found, iterable = self.expr(right), self.expr(left), self.fresh("t"), self.fresh("in"), self.fresh("iter")
        k, item = self.fresh("k"), self.fresh("v")
        inside = self.substring(text, go)  # a scan of the value printed: read only where the value is text
        self.emit(f"{{{{ {typ} := printf \"%T\" {go} }}}}{{{{ {found} := false }}}}{{{{ {iterable} := true }}}}"
                  f"{{{{ if eq {typ} {go_string(_GO_MAP)} }}}}{{{{ range {k}, {item} := {go} }}}}{{{{ if eq {k} {text} }}}}{{{{ {found} = true }}}}"
                  f"{{{{ end }}}}{{{{ end }}}}{{{{ else if eq {typ} \"[]interface {{}}\" }}}}{{{{ range {k}, {item} := {go} }}}}"
                  f"{{{{ if eq (printf \"%T %v\" {item} {item}) (print \"string \" {text}) }}}}{{{{ {found} = true }}}}{{{{ end }}}}{{{{ end }}}}"
                  f"{{{{ else if eq {typ} \"string\" }}}}{{{{ {found} = {inside} }}}}{{{{ else }}}}{{{{ {iterable} = false }}}}{{{{ end }}}}")
        return f"(and (or {iterable} (index {go} 0)) {found})"

    def items_method(self, node: nodes.Node | None) -> str | None:
        """"always" for `p.items` of a tool property, "unless set" for `p['items']`: Jinja finds the dict's items method
        there (always by attribute, where the key is missing by index), and Ollama's Items is nil where the key is
        missing (or null, which Ollama drops as it drops any field it does not keep); None for any other node."""
        if isinstance(node, (nodes.Getattr, nodes.Getitem)) and self.json_field(node) is None and self.kind(node.node) == "property":
            if isinstance(node, nodes.Getattr):
                return "always" if node.attr == "items" else None
            key = self.fold(node.arg)
            return "unless set" if key is not None and key.value == "items" else None
        return None

    def items_truth(self, node: nodes.Node) -> str:
        """A property's items (or the method Jinja finds in their place): true where Ollama's Items is nil."""
        if self.items_method(node) == "always":
            return "true"
        go = self.expr(node)
        return f'(or (eq (printf "%T" {go}) "<nil>") {go})'

    def present_fields(self, test: nodes.Node, body: list[nodes.Node]) -> list[str]:
        """Keys of JSON values an if's test shows to be there in its body: the key's truth or a test only a key that is there
        passes, alone or in an `and` (Jinja's undefined is false), unless the body sets the name the value is read from."""
        if isinstance(test, nodes.And):
            return self.present_fields(test.left, body) + self.present_fields(test.right, body)
        shown = isinstance(test, nodes.Test) and not test.args and test.name in _SHOWN_THERE
        if shown:
            assert isinstance(test, nodes.Test)
            test = test.node  # only a key that is there is a mapping, text, a number or a bool
        elif isinstance(test, nodes.Test) and test.name == "defined" and not test.args:
            test = test.node
        found = self.json_field(test)
        if found is None or (not shown and self.dict_method_key(test)):
            return []  # the dict method Jinja finds in place of a missing key is defined and true
        roots = {n.name for n in found[0].find_all(nodes.Name)} | ({found[0].name} if isinstance(found[0], nodes.Name) else set())
        stored = {n.name for b in body for n in b.find_all(nodes.Name) if n.ctx == "store"}
        return [] if roots & stored else [repr(test)]

    def is_present_field(self, node: nodes.Node) -> bool:
        return self.json_field(node) is not None and repr(node) in self.known_present

    def json_field_refused(self, node: nodes.Node, use: str) -> Exception:
        found = self.json_field(node)
        key = found[1] if found is not None else ""
        return self.fail(f"the key {key!r} of a JSON value Ollama hands over as decoded (a property's items, a call argument) {use} "
                         "(converted: its truth, == or != with text, and tests of its type)", node, key)
