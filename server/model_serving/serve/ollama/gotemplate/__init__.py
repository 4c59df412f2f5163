"""Jinja chat template -> Ollama Go TEMPLATE, by a walk over Jinja's parse tree.

One small handler per node type (statements, expressions, filters and tests, tool JSON), using only
what Ollama gives a template: `.Messages`, `.Tools`, Go's builtins and the `json` helper. What
does not depend on the conversation (constants, `strftime_now()`, variables the caller would pass)
is computed at registration with the template's own Jinja; what Go cannot express raises
`UnconvertibleTemplate` with the construct, its line and column, and the next step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jinja2 import nodes
from jinja2.utils import Namespace

from model_serving.serve.ollama.gotemplate.chars import Chars
from model_serving.serve.ollama.gotemplate.collect import Collect
from model_serving.serve.ollama.gotemplate.core import Core, UnconvertibleTemplate
from model_serving.serve.ollama.gotemplate.expressions import Expressions
from model_serving.serve.ollama.gotemplate.filters import Filters
from model_serving.serve.ollama.gotemplate.infer import Infer
from model_serving.serve.ollama.gotemplate.joins import Joins
from model_serving.serve.ollama.gotemplate.jsonfields import JSONFields
from model_serving.serve.ollama.gotemplate.jsonvalues import JSONValues
from model_serving.serve.ollama.gotemplate.macros import hoist_macro_calls, inline_macros, kept_calls_to_output
from model_serving.serve.ollama.gotemplate.namewalk import NameWalk
from model_serving.serve.ollama.gotemplate.negative import Negative
from model_serving.serve.ollama.gotemplate.pairs import written_pairs
from model_serving.serve.ollama.gotemplate.pyrepr import PyRepr
from model_serving.serve.ollama.gotemplate.queues import Queues
from model_serving.serve.ollama.gotemplate.records import Records
from model_serving.serve.ollama.gotemplate.recursion import recursive_macros
from model_serving.serve.ollama.gotemplate.solid import untrimmed
from model_serving.serve.ollama.gotemplate.sorting import Sorting
from model_serving.serve.ollama.gotemplate.splits import Splits
from model_serving.serve.ollama.gotemplate.statements import Scope, Statements
from model_serving.serve.ollama.gotemplate.text import go_string, literal_text
from model_serving.serve.ollama.gotemplate.tooljson import ToolJSON
from model_serving.serve.ollama.gotemplate.typenames import TypeNames
from model_serving.serve.ollama.gotemplate.unroll import Unroll
from model_serving.serve.ollama.gotemplate.valueform import ValueForm

__all__ = ["Converted", "UnconvertibleTemplate", "convert_ast", "go_string", "literal_text"]

_NODE_NAMES = {
    "Macro": "a macro (Go templates have no functions with return values)", "CallBlock": "a call block", "FilterBlock": "a filter block",
    "With": "a with block", "Include": "an include", "Import": "an import", "FromImport": "an import", "Mul": "arithmetic (*)",
    "Div": "arithmetic (/)", "FloorDiv": "arithmetic (//)", "Pow": "arithmetic (**)", "Neg": "arithmetic (unary -)",
    "Dict": "a dict built at render time", "List": "a list built at render time", "Tuple": "a tuple built at render time",
    "AssignBlock": "a block assignment ({% set x %}...{% endset %})", "ExprStmt": "a do statement",
}


@dataclass
class Converted:
    go_template: str
    notes: list[str] = field(default_factory=list)
    bos_dropped: bool = False
    dated: bool = False


class Converter(ValueForm, TypeNames, JSONValues, Chars, Sorting, Statements, Unroll, Expressions, Filters, Splits, PyRepr, ToolJSON,
                Infer, Negative, Queues, Joins, Records, Collect, NameWalk, JSONFields, Core):
    def describe(self, node: nodes.Node) -> str:
        if isinstance(node, nodes.Macro):
            names = {n.name for n in node.find_all(nodes.Name)}
            if node.name in names:
                return f"a macro that calls itself ({node.name}; Go templates have no recursion that returns text)"
            if names & {"caller", "varargs", "kwargs"}:
                return f"a macro using caller, varargs or kwargs ({node.name})"
            return (f"a macro ({node.name}) called where Jinja may skip the call while the macro changes namespace state "
                    "(Go writes a macro's text out before the statement that reads it)")
        return _NODE_NAMES.get(type(node).__name__, f"a {type(node).__name__} node")

    def is_call(self, node: nodes.Node | None, name: str) -> bool:
        return isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == name

    def is_raise(self, node: nodes.Node) -> bool:
        return self.is_call(node, "raise_exception")

    def raise_only(self, body: list[nodes.Node]) -> bool:
        items = [c for n in body if isinstance(n, nodes.Output) for c in n.nodes if not (isinstance(c, nodes.TemplateData) and not c.data.strip())]
        return bool(items) and all(self.is_raise(c) for c in items) and all(isinstance(n, nodes.Output) for n in body)

    def set_const(self, key: str, value: Any) -> None:
        self.version += 1  # earlier folds may have read the old value
        if "." not in key:
            self.consts[key] = value
            return
        name, attr = key.split(".", 1)
        space = self.consts.setdefault(name, Namespace())
        space[attr] = value

    def preamble(self) -> str:
        # Jinja sees these as template arguments; in Go they are variables read from Ollama's data.
        parts = ["{{ $messages := $.Messages }}"]
        if self.bos_dropped:
            parts.append("{{ $bos_seen := false }}")
        if "tools" in self.loaded:
            parts.append("{{ $tools := $.Tools }}")
        if "add_generation_prompt" in self.loaded:
            parts.append('{{ $add_generation_prompt := true }}{{ range $.Messages }}{{ $add_generation_prompt = ne .Role "assistant" }}{{ end }}')
        return "".join(parts)


def convert_ast(source: str, ast: nodes.Template, *, bos: str, eos: str, runtime_adds_bos: bool) -> Converted:
    conv = Converter(source, bos, eos, runtime_adds_bos, written_pairs(hoist_macro_calls(inline_macros(kept_calls_to_output(untrimmed(ast))))))
    conv.recursive, conv.defines, conv.inside, conv.inlined = recursive_macros(conv.ast), {}, [], []
    conv.prefetched, conv.memo = {}, {}
    body = conv.block(conv.ast.body, Scope({"messages", "tools", "add_generation_prompt"})) + conv.definitions()
    head = conv.preamble()
    if conv.dated:
        head = "{{/* The date in this prompt was fixed at registration (the chat template calls strftime_now); re-register to move it. */}}" + head
    return Converted(head + body, conv.notes, conv.bos_dropped, conv.dated)
