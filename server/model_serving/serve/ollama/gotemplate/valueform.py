"""A macro that calls itself whose text is kept in a variable, written out in place to a fixed depth.

Go's `{{template}}` writes text out and hands nothing back, so a recursive call whose text a template keeps
(`set inner_type = render_typescript_type(param_spec['items'], ...)`, then tested and measured: gpt-oss, Apertus) cannot
be a define. Its text is built up instead, as a `set` block's is: the macro's body is written out where it is called,
its output added to the variable, with the argument held in a Go variable of its own. Every recursive call inside that
body is written out the same way (its text is part of the kept text), one copy of the body per level, so the TEMPLATE
grows with the depth: it is written out to `DEPTH` levels, and a value nested deeper stops the render with an error
that names the limit, so Ollama answers such a request with that error rather than with another prompt.
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate.core import runtime_names
from model_serving.serve.ollama.gotemplate.macros import macro_body
from model_serving.serve.ollama.gotemplate.recursion import DictReads, Recursion, own_namespaces
from model_serving.serve.ollama.gotemplate.statements import Scope
from model_serving.serve.ollama.gotemplate.text import go_failure_bound, go_string

DEPTH = 3  # levels written out below the call that starts them: with the property, 4 levels of schema below the parameters
DEPTH_NOTE = ("The text of {macro} is kept in a variable, so it is written out in place {depth} levels deep: a tool schema nested "
              "deeper than that ({depth} levels of items, variants or properties below the property that starts it) stops the "
              "TEMPLATE with an error naming the limit, where Jinja renders it.")


SCHEMAS = {"property", "value"}  # a tool property (Ollama's struct) and a JSON value inside one (its items, as decoded)


def shape_kind(shape: str) -> str:
    """The kind of the value a define's or written-out call's argument holds, "!" kept for text always set."""
    return shape.split(":")[1].split("=")[1] if shape.startswith("dict:") else shape


class ValueForm(Recursion):
    inlined: list[str]  # the Go variables of the calls being written out in place, outermost first

    def kept_call(self, name: str, call: nodes.Call) -> str:
        """`set name = macro(...)` of a macro that calls itself: its text built up in the variable."""
        held = self.fresh("t")  # a short name: the body adds to it at every piece of text, one copy per level
        self.captures.append(held)
        try:
            body = self.value_form(call)
        finally:
            self.captures.pop()
        self.kinds[name] = "string"
        self.always_text.add(name)
        return f'{{{{ {held} := "" }}}}{body}{{{{ ${name} = {held} }}}}'

    def value_form(self, call: nodes.Call) -> str:
        """The call's text, added to the text being captured: written out in place, or rendered at registration."""
        got = self.shaped_call(call)
        if isinstance(got, str):
            return got
        macro, param, shape, go_arg, inner, consts = got
        if shape_kind(shape) not in SCHEMAS:
            # text, a list or a message nest as deep as the conversation goes: no depth would cover them
            raise self.fail(f"a macro that calls itself ({macro.name}) inside text kept in a variable, on a value other than a tool "
                            "schema (written out in place to a fixed depth only over a schema's items, variants and properties)",
                            call, macro.name)
        self.note(DEPTH_NOTE.format(macro=macro.name, depth=DEPTH))
        if len(self.inlined) >= DEPTH:
            return self.past_depth(macro)
        return self.written_in_place(macro, param, shape, go_arg, inner, consts)

    def written_in_place(self, macro: nodes.Macro, param: str, shape: str, go_arg: str, inner: nodes.Expr, consts: dict[str, Any]) -> str:
        var = self.fresh("a")[1:]
        here = nodes.Name(var, "load")
        value: nodes.Expr = here
        if isinstance(inner, nodes.Dict):
            value = nodes.Dict([nodes.Pair(p.key, here if isinstance(p.value, nodes.Name) and not p.value.name else p.value) for p in inner.items])
        body = [DictReads().visit(n) for n in macro_body(macro, {param: value, **{k: nodes.Const(v) for k, v in consts.items()}})]
        self.alive.append(body)
        self.namespaces |= own_namespaces(body)
        self.check_reads(macro, body, var)
        self.runtime |= runtime_names(nodes.Template(body), self.namespaces, {var})
        kind = shape_kind(shape)
        self.kinds[var] = kind.rstrip("!")
        if kind.endswith("!"):
            self.always_text.add(var)
        saved, present = self.loops, self.known_present  # the body sees its own loops and its own argument only
        self.loops, self.known_present = [], []
        self.inlined.append(var)
        keys = sorted(k for k in self.keys_read(macro, param) if k != "__index" and not k.startswith("_"))
        fetched = self.prefetch(f"${var}", keys) if kind.rstrip("!") == "value" else ""
        try:
            text = fetched + self.block(body, Scope({var}))
        finally:
            self.inlined.pop()
            self.loops, self.known_present = saved, present
        return f"{{{{ ${var} := {go_arg} }}}}{text}"

    def past_depth(self, macro: nodes.Macro) -> str:
        """A call one level past the depth: a define that stops the render naming the limit, written once, called at each."""
        key = (macro.name, "past the depth", "")
        if key not in self.defines:
            name = f"{macro.name} past {DEPTH} levels"
            stop = go_failure_bound(f"{macro.name} nested deeper than {DEPTH} levels")
            self.defines[key] = (name, f"{{{{ define {go_string(name)} }}}}{stop}{{{{ end }}}}")
        return f'{{{{ template {go_string(self.defines[key][0])} "" }}}}'
