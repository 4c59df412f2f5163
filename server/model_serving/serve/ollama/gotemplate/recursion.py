"""Macros that call themselves, written as Go `{{define}}` templates that `{{template}}` calls.

Go's text/template can recurse: `{{template "name" ARG}}` runs a defined template with ARG as its dot. What it cannot
do is hand text back into an expression, and it passes one argument. So a recursive macro converts where each call is
written out as output (alone, or as a piece of an output concatenation such as `"list[" + f(x) + "]"`), and each call
site gives it one argument read from the conversation; the other arguments must be known at registration, and each
combination of them (and each kind of value the one argument holds) gets its own define, converted like the rest of the
template. An argument that is a dict literal `{"type": t}` passes `t`, and the define reads its other keys as unset. A
call whose arguments hold nothing from the conversation (a field Ollama drops, a dict method such as `spec.items`) is
rendered at registration with the template's own Jinja; where Jinja fails on it, the TEMPLATE fails at the same point.
A call whose text feeds a test, a filter or a variable is refused, naming the macro.
"""

from __future__ import annotations

import copy
from typing import Any

from jinja2 import nodes

from model_serving.serve.ollama.gotemplate import kinds as K
from model_serving.serve.ollama.gotemplate.core import Core, runtime_names
from model_serving.serve.ollama.gotemplate.flow import joined_lists
from model_serving.serve.ollama.gotemplate.macros import UNSET, DictReads, macro_body
from model_serving.serve.ollama.gotemplate.statements import Scope
from model_serving.serve.ollama.gotemplate.text import go_failure, go_failure_bound, go_string
from model_serving.util.chat_template import environment

# A macro that calls itself with an argument known at registration that changes at each nested call (GigaChat's
# `indent + "  "`) gets one define per value: a chain, one define per level of nesting, cut at this many levels.
CHAIN_LEVELS = 6
CHAIN_NOTE = ("{macro} calls itself with an argument that changes at each level (such as an indent): the TEMPLATE has one define "
              f"per level, down to {CHAIN_LEVELS} nested levels; where the data nests deeper (a tool schema), the TEMPLATE stops "
              "with an error there, so Ollama answers that request with an error.")

FAILS_NOTE = ("Where the chat template itself fails in Jinja ({call}), the TEMPLATE stops with an error at the same point: "
              "Ollama answers such a request with that error.")


def recursive_macros(ast: nodes.Template) -> dict[str, nodes.Macro]:
    """The template's top-level macros whose body calls the macro itself."""
    return {m.name: m for m in ast.body if isinstance(m, nodes.Macro)
            and any(isinstance(c.node, nodes.Name) and c.node.name == m.name for c in m.find_all(nodes.Call))}


class Recursion(Core):
    recursive: dict[str, nodes.Macro]
    defines: dict[tuple[str, str, str], tuple[str, str | None]]  # (macro, shape, constants) -> (define name, its text)
    inside: list[tuple[tuple[str, str, str], str]]  # the defines being converted, each with its argument's Go variable

    def s_Macro(self, node: nodes.Macro, scope: Any) -> str:
        if node.name in self.recursive:
            return ""  # written out as defines, one per way it is called
        raise self.fail(self.describe(node), node, "macro")

    def definitions(self) -> str:
        return "".join(text for _, text in self.defines.values() if text)

    def calls_recursive(self, node: nodes.Node) -> bool:
        return any(self.recursive_call_of(c) is not None for c in [node, *node.find_all(nodes.Call)])

    def recursive_call_of(self, node: nodes.Node) -> nodes.Macro | None:
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name):
            return self.recursive.get(node.node.name)
        return None

    # --- output: calls and the pieces around them -----------------------------------------

    def recursive_output(self, child: nodes.Node) -> str:
        if isinstance(child, nodes.CondExpr):
            test = self.truth(child.test)
            other = self.output_part(child.expr2) if child.expr2 is not None else ""
            return f"{{{{ if {test} }}}}{self.output_part(child.expr1)}{{{{ else }}}}{other}{{{{ end }}}}"
        parts = self.concat_parts(child)
        if parts is None:
            raise self.used_in_expression(child)
        return "".join(self.output_part(p) for p in parts)

    def output_part(self, part: nodes.Node) -> str:
        if self.recursive_call_of(part) is not None:
            assert isinstance(part, nodes.Call)
            return self.recursive_call(part)
        if self.calls_recursive(part):
            return self.recursive_output(part)
        return self.output_item(part)

    def concat_parts(self, node: nodes.Node) -> list[nodes.Node] | None:
        """The operands of `a ~ b ~ c` (or `a + b + c` of text), written out one after the other; None if not one."""
        if self.recursive_call_of(node) is not None:
            return [node]
        if isinstance(node, nodes.Concat):
            return [p for n in node.nodes for p in (self.concat_parts(n) or [n])]
        if isinstance(node, nodes.Add):
            parts = [p for side in (node.left, node.right) for p in (self.concat_parts(side) or [side])]
            # `+` joins text only: any other operand would be arithmetic (or an error) in Jinja
            if all(self.recursive_call_of(p) is not None or self.kind(p) == "string" for p in parts):
                return parts
        return None

    def used_in_expression(self, node: nodes.Node) -> Exception:
        call = next(c for c in [node, *node.find_all(nodes.Call)] if self.recursive_call_of(c) is not None)
        assert isinstance(call, nodes.Call) and isinstance(call.node, nodes.Name)
        return self.fail(f"a macro that calls itself ({call.node.name}) whose text feeds a variable or an expression, "
                         "not the output (a Go template cannot hand text back)", call, call.node.name)

    # --- one call: a define per way of calling ---------------------------------------------

    def recursive_call(self, call: nodes.Call) -> str:
        if self.captures:
            return self.value_form(call)  # its text is part of the text being kept: written out in place
        got = self.shaped_call(call)
        if isinstance(got, str):
            return got
        macro, param, shape, go_arg, inner, consts = got
        return self.template_call(call, macro, (param, shape, go_arg), inner, consts)

    def shaped_call(self, call: nodes.Call) -> str | tuple[nodes.Macro, str, str, str, nodes.Expr, dict[str, Any]]:
        """The call's text where it renders at registration; else its macro, data parameter, shape, Go argument, argument and constants."""
        macro, bound, param, consts = self.call_parts(call)
        if param is None:
            return self.rendered_now(macro, bound, consts, call)
        shape, go_arg, inner = self.shape(bound[param], param, macro, call)
        self.alive.append(inner)
        if shape == "now":
            return self.rendered_now(macro, {**bound, param: inner}, consts, call)
        return macro, param, shape, go_arg, inner, consts

    def call_parts(self, call: nodes.Call) -> tuple[nodes.Macro, dict[str, nodes.Expr], str | None, dict[str, Any]]:
        """(the macro, its arguments by parameter, the one parameter read from the conversation or None, the others' values)."""
        macro = self.recursive_call_of(call)
        assert macro is not None
        if call.dyn_args or call.dyn_kwargs:
            raise self.fail(f"a macro that calls itself ({macro.name}) with *args or **kwargs", call, macro.name)
        bound = {name: arg if name not in unused_params(macro) else nodes.Const(None) for name, arg in self.bind(macro, call).items()}
        self.alive.append(bound)  # folds are cached by node id: a stand-in freed here would lend its id to a later node
        data = [name for name, arg in bound.items() if self.depends(arg)]
        if len(data) > 1:
            raise self.fail(f"a macro that calls itself ({macro.name}) with several arguments read from the conversation "
                            "(a Go template takes one)", call, macro.name)
        consts: dict[str, Any] = {}
        for name, arg in bound.items():
            if name in data:
                continue
            folded = self.fold(arg)
            if folded is None:
                raise self.fail(f"a macro that calls itself ({macro.name}) with an argument the converter could not compute", call, macro.name)
            consts[name] = folded.value
        return macro, bound, (data[0] if data else None), consts

    def bind(self, macro: nodes.Macro, call: nodes.Call) -> dict[str, nodes.Expr]:
        params = [a.name for a in macro.args]
        if len(call.args) > len(params) or any(kw.key not in params for kw in call.kwargs):
            raise self.fail(f"a call of {macro.name} with arguments it does not declare", call, macro.name)
        defaults = dict(zip(params[len(params) - len(macro.defaults):], macro.defaults, strict=True))
        bound: dict[str, nodes.Expr] = dict(zip(params, call.args, strict=False))
        bound.update({kw.key: kw.value for kw in call.kwargs})
        for name in params:
            bound.setdefault(name, defaults.get(name, nodes.Const(None)))
        return bound

    def shape(self, arg: nodes.Expr, param: str, macro: nodes.Macro, call: nodes.Call) -> tuple[str, str, nodes.Expr]:
        """(shape, Go argument, what the define's parameter stands for); shape "now" when the value is fixed."""
        if self.is_unset(arg):
            return "now", "", nodes.Name(UNSET, "load")
        if self.opaque(arg):
            # a dict method (`spec.items`) or `spec | items`: its fields are all undefined, whatever the conversation
            stand_in: nodes.Expr = nodes.Getattr(nodes.Dict([]), arg.attr, "load") if isinstance(arg, nodes.Getattr) else nodes.Filter(nodes.Dict([]), "items", [], [], None, None)
            if not self.shallow(macro, param):
                raise self.fail(f"a macro that calls itself ({macro.name}) on a value it reads beyond its fields", call, macro.name)
            return "now", "", stand_in
        if isinstance(arg, nodes.Dict):
            return self.dict_shape(arg, macro, call)
        cased = self.cased_list(arg)
        if cased is not None:
            return f"{cased[1]}list", self.expr(cased[0]), nodes.Name("", "load")
        if self.is_present_field(arg):
            return "value", self.json_field_read(arg)[0], nodes.Name("", "load")  # a key of a JSON value, there (an if says so)
        if self.dict_method_key(arg) and self.keyed_first(macro, param):
            return "value", self.method_arg(arg, macro), nodes.Name("", "load")
        kind = self.kind(arg)
        if kind == "string" and self.keyed_first(macro, param) and not any(k == "__index" or hasattr(str, k) for k in self.keys_read(macro, param)):
            # text where a schema is walked (a loop over a value that may be text): every key of it is undefined, whatever the text
            return "now", "", nodes.Const("")
        if kind is None or kind == "mapping":
            raise self.fail(f"a macro that calls itself ({macro.name}) on a value whose type the converter cannot tell", call, macro.name)
        return kind + self.text_mark(arg, kind), self.expr(arg), nodes.Name("", "load")

    def keyed_first(self, macro: nodes.Macro, param: str) -> bool:
        """Whether the macro reads the parameter only through its keys, and reads one before anything else: Jinja fails at
        once on an undefined argument, and reads every key of a dict method as undefined."""
        keyed = {id(n.node) for n in macro.find_all((nodes.Getattr, nodes.Getitem)) if isinstance(n, (nodes.Getattr, nodes.Getitem))}
        if not all(id(n) in keyed for n in macro.find_all(nodes.Name) if n.name == param and n.ctx == "load"):
            return False
        first = next((n for n in macro.body if not (isinstance(n, nodes.Output) and all(isinstance(c, nodes.TemplateData) for c in n.nodes))), None)
        return isinstance(first, nodes.If) and any(isinstance(n, (nodes.Getattr, nodes.Getitem)) and isinstance(n.node, nodes.Name)
                                                   and n.node.name == param for n in first.test.find_all((nodes.Getattr, nodes.Getitem)))

    def keys_read(self, macro: nodes.Macro, param: str) -> set[str]:
        """The keys the macro reads of the parameter (by attribute, or by index with a constant)."""
        out: set[str] = set()
        for n in macro.find_all((nodes.Getattr, nodes.Getitem)):
            assert isinstance(n, (nodes.Getattr, nodes.Getitem))
            if isinstance(n.node, nodes.Name) and n.node.name == param:
                key = n.attr if isinstance(n, nodes.Getattr) else getattr(n.arg, "value", None)
                out.add(key if isinstance(key, str) else "__index")  # an index Jinja may find in text: never "now"
        return out

    def method_arg(self, arg: nodes.Node, macro: nodes.Macro) -> str:
        """`spec['items']` handed on: the key's value, or "" where a mapping lacks it (Jinja's dict method: each key of it
        undefined); where the value is not a mapping Jinja's argument is undefined and the macro's first read fails."""
        found = self.json_field(arg)
        assert found is not None
        var = self.json_field_parts(arg)[0]
        base = self.json_field_parts(found[0])[0] if self.json_field(found[0]) is not None else self.expr(found[0])
        self.emit(f'{{{{ if ne (printf "%T" {base}) "map[string]interface {{}}" }}}}'
                  f"{go_failure(f'{macro.name} on an undefined value')}{{{{ end }}}}")
        return var

    def cased_list(self, arg: nodes.Node) -> tuple[nodes.Node, str] | None:
        """(the JSON value, 'upper' or 'lower') of `value | map('upper') | list` (Gemma 4's list of type names), else None."""
        if not (isinstance(arg, nodes.Filter) and arg.name == "list" and not arg.args and isinstance(arg.node, nodes.Filter)):
            return None
        mapped = arg.node
        if mapped.name != "map" or mapped.kwargs or mapped.dyn_args or mapped.dyn_kwargs or len(mapped.args) != 1 or mapped.node is None:
            return None
        name = self.fold(mapped.args[0])
        if name is None or name.value not in ("upper", "lower") or self.kind(mapped.node) not in ("value", "scalar"):
            return None
        return mapped.node, name.value

    def dict_shape(self, arg: nodes.Dict, macro: nodes.Macro, call: nodes.Call) -> tuple[str, str, nodes.Expr]:
        keys = [self.fold(p.key) for p in arg.items]
        runtime = [p for p in arg.items if self.depends(p.value)]
        if any(k is None or not isinstance(k.value, str) for k in keys) or len(runtime) != 1:
            raise self.fail(f"a macro that calls itself ({macro.name}) on a dict built at render time", call, macro.name)
        kind = self.kind(runtime[0].value)
        if kind is None:
            raise self.fail(f"a macro that calls itself ({macro.name}) on a value whose type the converter cannot tell", call, macro.name)
        fixed: dict[str, Any] = {}
        for k, p in zip(keys, arg.items, strict=True):
            if p is runtime[0] or k is None:
                continue
            value = self.fold(p.value)
            if value is None:
                raise self.fail(f"a macro that calls itself ({macro.name}) on a dict built at render time", call, macro.name)
            fixed[k.value] = value.value
        key = next(k.value for k, p in zip(keys, arg.items, strict=True) if p is runtime[0] and k is not None)
        shape = f"dict:{key}={kind}{self.text_mark(runtime[0].value, kind)}:{sorted(fixed.items())!r}"
        return shape, self.expr(runtime[0].value), nodes.Dict([nodes.Pair(nodes.Const(key), nodes.Name("", "load")),
                                                               *(nodes.Pair(nodes.Const(k), nodes.Const(v)) for k, v in fixed.items())])

    def text_mark(self, arg: nodes.Node, kind: str) -> str:
        """"!" for text that is set in every conversation (never undefined): the define's tests on it need not ask."""
        return "!" if kind == "string" and self.is_always_text(arg) else ""

    def opaque(self, arg: nodes.Node) -> bool:
        """A dict method (`spec.items`, Jinja's attribute lookup finds it first) or `spec | items`, of a mapping."""
        if isinstance(arg, nodes.Getattr) and hasattr(dict, arg.attr) and not arg.attr.startswith("_"):
            return isinstance(arg.node, nodes.Dict) or self.kind(arg.node) in K.MAPPINGS
        if isinstance(arg, nodes.Filter) and arg.name == "items" and not arg.args and arg.node is not None:
            return isinstance(arg.node, nodes.Dict) or self.kind(arg.node) in K.MAPPINGS
        return False

    def shallow(self, macro: nodes.Macro, param: str) -> bool:
        """Whether the macro reads the parameter only through fields, tests and its own calls (never iterates or prints it)."""
        allowed = {id(getattr(n, "node", None)) for n in macro.find_all((nodes.Getattr, nodes.Getitem, nodes.Test))}
        for c in macro.find_all(nodes.Call):
            if self.recursive_call_of(c) is not None:
                allowed |= {id(a) for a in c.args} | {id(a.node) for a in c.args if isinstance(a, (nodes.Getattr, nodes.Filter))}
        return all(id(n) in allowed for n in macro.find_all(nodes.Name) if n.name == param and n.ctx == "load")

    def template_call(self, call: nodes.Call, macro: nodes.Macro, how: tuple[str, str, str], inner: nodes.Expr, consts: dict[str, Any]) -> str:
        param, shape, go_arg = how  # the parameter read from the conversation, the kind of its value, its Go expression
        key = (macro.name, shape, repr(sorted(consts.items(), key=lambda kv: kv[0])))
        if (key, go_arg) in self.inside:
            raise self.fail(f"a macro that calls itself ({macro.name}) with the arguments it was given (it never ends)", call, macro.name)
        levels = {k[2] for k, _ in self.inside if k[0] == macro.name}
        if key not in self.defines and key[2] not in levels and len(levels) >= CHAIN_LEVELS:
            self.note(CHAIN_NOTE.format(macro=macro.name))
            return go_failure_bound(f"{macro.name} called with more than {CHAIN_LEVELS} nested values of its other arguments")
        if key not in self.defines:
            name = f"{macro.name}#{len(self.defines) + 1}"
            self.defines[key] = (name, None)  # a call inside the body finds the define it is in
            self.defines[key] = (name, self.define(key, macro, param, shape, inner, consts))
        return f"{{{{ template {go_string(self.defines[key][0])} {go_arg} }}}}"

    def define(self, key: tuple[str, str, str], macro: nodes.Macro, param: str, shape: str, inner: nodes.Expr, consts: dict[str, Any]) -> str:
        name, var = self.defines[key][0], f"__rec{len(self.defines)}"
        here = nodes.Name(var, "load")
        value: nodes.Expr = here
        if isinstance(inner, nodes.Dict):
            value = nodes.Dict([nodes.Pair(p.key, here if isinstance(p.value, nodes.Name) and not p.value.name else p.value) for p in inner.items])
        bound = {param: value, **{k: nodes.Const(v) for k, v in consts.items()}}
        body = [DictReads().visit(n) for n in macro_body(macro, bound)]
        self.alive.append(body)
        self.namespaces |= own_namespaces(body)  # a namespace made in the body is the define's own state, per call
        self.joined.update(joined_lists(nodes.Template(body), own_namespaces(body)))  # its lists only grown and joined (GigaChat's enum)
        self.check_reads(macro, body, var)
        self.runtime |= runtime_names(nodes.Template(body), self.namespaces, {var})
        saved = (self.loops, self.captures, self.frames, dict(self.kinds))  # read before the define's own kinds are set
        present, self.known_present = self.known_present, []  # the caller's names are not the define's
        self.loops, self.captures, self.frames = [], [], []
        kind = shape.split(":")[1].split("=")[1] if shape.startswith("dict:") else shape
        self.kinds[var] = kind.rstrip("!")
        if kind.endswith("!"):
            self.always_text.add(var)
        self.inside.append((key, f"${var}"))
        try:
            text = self.block(body, Scope({var}))
        finally:
            self.inside.pop()
            self.loops, self.captures, self.frames, kinds = saved
            self.kinds, self.known_present = kinds, present
        return f"{{{{ define {go_string(name)} }}}}{{{{ ${var} := . }}}}{text}{{{{ end }}}}"

    def check_reads(self, macro: nodes.Macro, body: list[nodes.Node], var: str) -> None:
        """A define sees only its argument: a body reading the template's conversation variables cannot be one."""
        template = nodes.Template(body)
        own = {var} | {n.name for n in template.find_all(nodes.Name) if n.ctx in ("store", "param")}
        for ref in template.find_all(nodes.NSRef):
            if ref.name in own_namespaces(body):
                continue
            raise self.fail(f"a macro that calls itself ({macro.name}) and sets namespace state ({ref.name}.{ref.attr}; a Go define keeps no state across calls)", ref, ref.name)
        for n in template.find_all(nodes.Name):
            if n.ctx == "load" and (n.name in self.runtime or n.name in self.namespaces) and n.name not in own and n.name != "loop":
                raise self.fail(f"a macro that calls itself ({macro.name}) and reads the template's {n.name}", n, n.name)

    def rendered_now(self, macro: nodes.Macro, bound: dict[str, nodes.Expr], consts: dict[str, Any], call: nodes.Call) -> str:
        """A call whose arguments hold nothing from the conversation: its text, rendered at registration."""
        args = [nodes.Const(consts[a.name]) if a.name in consts else bound[a.name] for a in macro.args]
        tree = nodes.Template([copy.deepcopy(macro), nodes.Output([nodes.Call(nodes.Name(macro.name, "load"), args, [], None, None)])])
        try:
            text = environment().from_string(tree).render(**self.registration_context())
        except RecursionError:
            raise self.fail(f"a macro that calls itself ({macro.name}) without end", call, macro.name) from None
        except Exception as exc:  # noqa: BLE001 - the template's own failure, carried over
            self.note(FAILS_NOTE.format(call=f"{macro.name} on a value Ollama leaves unset: {type(exc).__name__}"))
            return go_failure(f"{macro.name}: {exc}")
        return self.write_text(text)


def own_namespaces(body: list[nodes.Node]) -> set[str]:
    """Names the body itself sets to a `namespace(...)`: made anew each time the define runs (each pass, in a loop)."""
    return {n.target.name for n in nodes.Template(body).find_all(nodes.Assign) if isinstance(n.target, nodes.Name)
            and isinstance(n.node, nodes.Call) and isinstance(n.node.node, nodes.Name) and n.node.node.name == "namespace"}


def unused_params(macro: nodes.Macro) -> set[str]:
    """Parameters the macro reads only to pass on, in their own place, to its own calls: they cannot change its text."""
    params = [a.name for a in macro.args]
    passed: set[int] = set()
    for c in macro.find_all(nodes.Call):
        if isinstance(c.node, nodes.Name) and c.node.name == macro.name:
            passed |= {id(a) for i, a in enumerate(c.args) if isinstance(a, nodes.Name) and i < len(params) and a.name == params[i]}
            passed |= {id(kw.value) for kw in c.kwargs if isinstance(kw.value, nodes.Name) and kw.value.name == kw.key}
    loads = [n for n in macro.find_all(nodes.Name) if n.ctx == "load"]
    return {p for p in params if all(id(n) in passed for n in loads if n.name == p)}
