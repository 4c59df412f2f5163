"""Turn a Hugging Face Jinja chat template into an Ollama Go TEMPLATE, and derive stop tokens.

The conversion walks Jinja's own parse tree (so trim_blocks/lstrip_blocks and `{%-` trimming are
already applied to the literal text) and writes the equivalent Go text/template, using only what
Ollama gives a template: `.Messages`, `.Tools`, `.System`, Go's builtins and the `json` helper.
Jinja's `add_generation_prompt` becomes "the last message is not the assistant's", which is how
Ollama decides whether the model starts a new turn.

What Go templates cannot express (string methods, arithmetic, macros, ...) raises
`UnconvertibleTemplate` naming the construct and its line. A few constructs are carried over with
a stated approximation (`trim` on content, `tojson` writing compact JSON, `is defined` read as
"non-empty", dropped `raise_exception` checks); they are listed in `Conversion.notes`, and the
fidelity check shows whether they matter for a given conversation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError

from model_serving.errors import InputError, ServingError
from model_serving.serve.ollama.gguf_info import GGUFInfo
from model_serving.util.chat_template import environment

Family = str  # chatml | llama3 | gemma | mistral | phi3 | generic

# Jinja keys (transformers message/tool dicts) -> the Ollama Go field that holds the same value.
_FIELDS = {
    "role": "Role", "content": "Content", "tool_calls": "ToolCalls", "tool_call_id": "ToolCallID", "thinking": "Thinking",
    "reasoning_content": "Thinking", "function": "Function", "name": "Name", "arguments": "Arguments", "description": "Description",
    "parameters": "Parameters", "type": "Type", "properties": "Properties", "required": "Required", "enum": "Enum", "id": "ID",
}

# Turn markers per family: the end of a turn, and the start of the next one, both make good stops.
_TURN_MARKERS: dict[Family, tuple[str, ...]] = {
    "chatml": ("<|im_end|>", "<|im_start|>"),
    "llama3": ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>"),
    "gemma": ("<end_of_turn>", "<start_of_turn>"),
    "mistral": ("[INST]", "[/INST]"),
    "phi3": ("<|end|>", "<|user|>", "<|assistant|>", "<|system|>", "<|endoftext|>"),
    "generic": (),
}


class UnconvertibleTemplate(ServingError):
    """The chat template uses something a Go template cannot express."""

    def __init__(self, construct: str, line: int | None) -> None:
        where = f" (template line {line})" if line else ""
        super().__init__(
            f"The chat template cannot be converted to an Ollama Go TEMPLATE: it uses {construct}{where}.",
            "Register with --template gguf so Ollama (0.30 or later) renders the GGUF's own Jinja template, "
            "or pass a hand-written Modelfile TEMPLATE.",
        )
        self.construct = construct
        self.line = line


@dataclass
class Conversion:
    go_template: str
    family: Family
    notes: list[str] = field(default_factory=list)
    bos_left_to_runtime: bool = False  # the template's BOS is dropped because the runtime adds one


def detect_family(source: str) -> Family:
    if "<|im_start|>" in source:
        return "chatml"
    if "<|start_header_id|>" in source:
        return "llama3"
    if "<start_of_turn>" in source:
        return "gemma"
    if "<|user|>" in source and "<|end|>" in source:
        return "phi3"
    if "[INST]" in source:
        return "mistral"
    return "generic"


def uses_tools(source: str) -> bool:
    """Whether the template renders a tool list (it reads the `tools` variable)."""
    try:
        ast = environment().parse(source)
    except TemplateSyntaxError:
        return False
    return any(n.name == "tools" for n in ast.find_all(nodes.Name))


def stop_tokens(info: GGUFInfo, template: str | None, extra_eos_ids: list[int] | None = None) -> list[str]:
    """Every string that ends a turn: EOS/EOT/EOM, generation_config's EOS list, and the family's turn markers."""
    stops: list[str] = []

    def add(text: str | None) -> None:
        if text and text not in stops:
            stops.append(text)

    for token_id in [info.eos_id, info.eot_id, info.eom_id, *(extra_eos_ids or [])]:
        add(info.token(token_id))
    if template:
        for marker in _TURN_MARKERS[detect_family(template)]:
            if marker in template and (info.is_special(marker) or not info.tokens):
                add(marker)
    return stops


def convert(source: str, *, bos_token: str, eos_token: str, runtime_adds_bos: bool) -> Conversion:
    """Convert a Jinja chat template; UnconvertibleTemplate names what could not be carried over."""
    try:
        ast = environment().parse(source)
    except TemplateSyntaxError as exc:
        raise InputError(f"The chat template is not valid Jinja: {exc.message} (line {exc.lineno}).", "Fix the template in tokenizer_config.json or the GGUF.") from None
    conv = _Converter(bos_token, eos_token, runtime_adds_bos, ast)
    body = conv.block(ast.body, _Scope(conv.preamble_names()))
    conversion = Conversion(conv.preamble() + body, detect_family(source), conv.notes, conv.bos_dropped)
    return conversion


def go_string(text: str) -> str:
    """A Go double-quoted string literal for `text`."""
    out = ['"']
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def literal_text(text: str) -> str:
    """Template text for Go: literal, except `{{`, which would open an action."""
    return text.replace("{{", '{{ "{{" }}')


@dataclass
class _Loop:
    index: str  # Go variable holding loop.index0
    iterable: str  # Go operand of the sequence
    prev: str  # Go variable holding loop.previtem ("" until the second pass)
    target: str
    uses_prev: bool = False


@dataclass
class _Scope:
    declared: set[str]


class _Converter:
    def __init__(self, bos: str, eos: str, runtime_adds_bos: bool, ast: nodes.Template) -> None:
        self.bos, self.eos, self.runtime_adds_bos = bos, eos, runtime_adds_bos
        self.notes: list[str] = []
        self.loops: list[_Loop] = []
        self.namespaces: set[str] = set()
        self.counter = 0
        self.bos_dropped = False
        self.assigned = {n.name for n in ast.find_all(nodes.Name) if n.ctx == "store"}
        self.loaded = {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}

    # --- helpers ----------------------------------------------------------------------

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def fail(self, construct: str, node: nodes.Node | None) -> UnconvertibleTemplate:
        return UnconvertibleTemplate(construct, getattr(node, "lineno", None))

    def preamble_names(self) -> set[str]:
        return {"messages", "tools", "add_generation_prompt"}

    def preamble(self) -> str:
        # Jinja sees these as template arguments; in Go they become variables read from Ollama's data.
        parts = ["{{ $messages := $.Messages }}"]
        if "tools" in self.loaded:
            parts.append("{{ $tools := $.Tools }}")
        if "add_generation_prompt" in self.loaded:
            parts.append('{{ $add_generation_prompt := true }}{{ range $.Messages }}{{ $add_generation_prompt = ne .Role "assistant" }}{{ end }}')
        return "".join(parts)

    # --- statements -------------------------------------------------------------------

    def block(self, body: list[nodes.Node], scope: _Scope) -> str:
        # Jinja's `set` inside an `if` stays visible after it; Go's would not, so every name the
        # block assigns is declared once at its start.
        hoisted = []
        for name in self._assigned_here(body):
            if name not in scope.declared:
                hoisted.append(f"{{{{ ${name} := \"\" }}}}")
                scope.declared.add(name)
        return "".join(hoisted) + "".join(self.stmt(n, scope) for n in body)

    def _assigned_here(self, body: list[nodes.Node]) -> list[str]:
        names: list[str] = []

        def visit(stmts: list[nodes.Node]) -> None:
            for n in stmts:
                if isinstance(n, nodes.Assign):
                    if isinstance(n.target, nodes.Name):
                        if isinstance(n.node, nodes.Call) and isinstance(n.node.node, nodes.Name) and n.node.node.name == "namespace":
                            for kw in n.node.kwargs:
                                names.append(f"{n.target.name}_{kw.key}")
                        else:
                            names.append(n.target.name)
                    elif isinstance(n.target, nodes.NSRef):
                        names.append(f"{n.target.name}_{n.target.attr}")
                elif isinstance(n, nodes.If):
                    visit(n.body)
                    for elif_ in n.elif_:
                        visit(elif_.body)
                    visit(n.else_)
        visit(body)
        return list(dict.fromkeys(names))

    def stmt(self, node: nodes.Node, scope: _Scope) -> str:
        if isinstance(node, nodes.Output):
            return "".join(self.output_item(child) for child in node.nodes)
        if isinstance(node, nodes.If):
            return self.if_stmt(node, scope)
        if isinstance(node, nodes.For):
            return self.for_stmt(node, scope)
        if isinstance(node, nodes.Assign):
            return self.assign(node)
        if isinstance(node, nodes.Continue):
            return "{{ continue }}"
        if isinstance(node, nodes.Break):
            return "{{ break }}"
        raise self.fail(_describe(node), node)

    def output_item(self, child: nodes.Node) -> str:
        if isinstance(child, nodes.TemplateData):
            return literal_text(child.data)
        if _is_raise(child):
            self.note("raise_exception checks (input validation) are not carried over; Ollama renders such inputs instead of refusing them.")
            return ""
        if isinstance(child, nodes.CondExpr):
            test = self.expr(child.test)
            other = self.output_item(child.expr2) if child.expr2 is not None else ""
            return f"{{{{ if {test} }}}}{self.output_item(child.expr1)}{{{{ else }}}}{other}{{{{ end }}}}"
        if isinstance(child, nodes.Name) and child.name == "bos_token" and self.runtime_adds_bos and self.bos:
            self.bos_dropped = True
            self.note("The template's BOS token is left out: the runtime adds one (add_bos_token), and writing it too would double it.")
            return ""
        if isinstance(child, nodes.Const) and isinstance(child.value, str):
            return literal_text(child.value)
        return f"{{{{ {self.expr(child)} }}}}"

    def if_stmt(self, node: nodes.If, scope: _Scope) -> str:
        branches = [(node.test, node.body), *((e.test, e.body) for e in node.elif_)]
        if not node.elif_ and not node.else_ and _raise_only(node.body):
            self.note("raise_exception checks (input validation) are not carried over; Ollama renders such inputs instead of refusing them.")
            return ""
        out = []
        for i, (test, body) in enumerate(branches):
            keyword = "if" if i == 0 else "else if"
            out.append(f"{{{{ {keyword} {self.expr(test)} }}}}{self.branch(body, scope)}")
        if node.else_:
            out.append(f"{{{{ else }}}}{self.branch(node.else_, scope)}")
        out.append("{{ end }}")
        return "".join(out)

    def branch(self, body: list[nodes.Node], scope: _Scope) -> str:
        if _raise_only(body):
            self.note("raise_exception checks (input validation) are not carried over; Ollama renders such inputs instead of refusing them.")
            return ""
        return "".join(self.stmt(n, scope) for n in body)

    def for_stmt(self, node: nodes.For, scope: _Scope) -> str:
        if not isinstance(node.target, nodes.Name):
            raise self.fail("a for loop over several targets (such as dict.items())", node)
        if node.else_ or node.test is not None or node.recursive:
            raise self.fail("a for loop with else, an inline if filter or recursion", node)
        self.counter += 1
        loop = _Loop(index=f"$i{self.counter}", iterable=self.expr(node.iter), prev=f"$prev{self.counter}", target=f"${node.target.name}")
        self.loops.append(loop)
        inner = _Scope(set(scope.declared) | {node.target.name})
        body = self.block(node.body, inner)
        self.loops.pop()
        head = f"{{{{ range {loop.index}, {loop.target} := {loop.iterable} }}}}"
        if loop.uses_prev:
            # loop.previtem: remember each item at the end of its pass.
            return f'{{{{ {loop.prev} := "" }}}}{head}{body}{{{{ {loop.prev} = {loop.target} }}}}{{{{ end }}}}'
        return f"{head}{body}{{{{ end }}}}"

    def assign(self, node: nodes.Assign) -> str:
        target = node.target
        if isinstance(target, nodes.NSRef):
            var = f"${target.name}_{target.attr}"
        elif isinstance(target, nodes.Name):
            value = node.node
            if isinstance(value, nodes.Call) and isinstance(value.node, nodes.Name) and value.node.name == "namespace":
                self.namespaces.add(target.name)
                return "".join(f"{{{{ ${target.name}_{kw.key} = {self.expr(kw.value)} }}}}" for kw in value.kwargs)
            var = f"${target.name}"
        else:
            raise self.fail("assignment to several names at once", node)
        if isinstance(node.node, nodes.CondExpr):
            cond = node.node
            other = f"{{{{ else }}}}{{{{ {var} = {self.expr(cond.expr2)} }}}}" if cond.expr2 is not None else ""
            return f"{{{{ if {self.expr(cond.test)} }}}}{{{{ {var} = {self.expr(cond.expr1)} }}}}{other}{{{{ end }}}}"
        return f"{{{{ {var} = {self.expr(node.node)} }}}}"

    # --- expressions ------------------------------------------------------------------

    def expr(self, node: nodes.Node) -> str:
        method = getattr(self, f"x_{type(node).__name__}", None)
        if method is None:
            raise self.fail(_describe(node), node)
        return method(node)

    def x_Const(self, node: nodes.Const) -> str:
        value = node.value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            return go_string(value)
        if value is None:
            return '""'
        raise self.fail(f"the constant {value!r}", node)

    def x_Name(self, node: nodes.Name) -> str:
        name = node.name
        if name == "bos_token":
            if self.runtime_adds_bos and self.bos:
                self.bos_dropped = True
                self.note("The template's BOS token is left out: the runtime adds one (add_bos_token), and writing it too would double it.")
                return '""'
            return go_string(self.bos)
        if name == "eos_token":
            return go_string(self.eos)
        if name == "loop":
            raise self.fail("the loop object itself", node)
        if name in self.namespaces:
            raise self.fail(f"the namespace object {name} as a whole", node)
        if name in self.preamble_names() or name in self.assigned or any(loop.target == f"${name}" for loop in self.loops):
            return f"${name}"
        # A variable the caller may pass to transformers (date_string, enable_thinking, ...): Ollama
        # passes nothing, so it is undefined, which Jinja treats as empty.
        self.note(f"The template variable {name!r} is not something Ollama provides; it is treated as undefined (empty).")
        return '""'

    def x_Getattr(self, node: nodes.Getattr) -> str:
        return self.member(node.node, node.attr, node)

    def x_Getitem(self, node: nodes.Getitem) -> str:
        arg = node.arg
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
            return self.member(node.node, arg.value, node)
        if isinstance(arg, nodes.Const) and isinstance(arg.value, int):
            if arg.value < 0:
                raise self.fail("a negative index (such as messages[-1])", node)
            return f"(index {self.expr(node.node)} {arg.value})"
        if isinstance(arg, nodes.Neg) and isinstance(arg.node, nodes.Const):
            raise self.fail("a negative index (such as messages[-1])", node)
        if isinstance(arg, (nodes.Add, nodes.Sub)) and _is_loop_attr(arg.left, "index0") and isinstance(arg.right, nodes.Const) and arg.right.value == 1:
            # seq[loop.index0 - 1] / seq[loop.index0 + 1] over the loop's own sequence: the previous / next item.
            if self.loops and self.expr(node.node) == self.loops[-1].iterable:
                return self.loop_attr("previtem" if isinstance(arg, nodes.Sub) else "nextitem", node)
            raise self.fail("arithmetic on loop.index0 over another sequence", node)
        if isinstance(arg, nodes.Slice):
            if arg.step is not None:
                raise self.fail("a slice with a step", node)
            bounds = []
            for bound in (arg.start, arg.stop):
                if bound is None:
                    bounds.append(None)
                    continue
                if not (isinstance(bound, nodes.Const) and isinstance(bound.value, int) and bound.value >= 0):
                    raise self.fail("a slice with a computed or negative bound", node)
                bounds.append(str(bound.value))
            start = bounds[0] or "0"
            return f"(slice {self.expr(node.node)} {start}{' ' + bounds[1] if bounds[1] else ''})"
        raise self.fail("an index computed at render time", node)

    def member(self, base: nodes.Node, attr: str, node: nodes.Node) -> str:
        if isinstance(base, nodes.Name) and base.name == "loop":
            return self.loop_attr(attr, node)
        if isinstance(base, nodes.Name) and base.name in self.namespaces:
            return f"${base.name}_{attr}"
        go_field = _FIELDS.get(attr)
        if go_field is None:
            raise self.fail(f"the field or method {attr!r}, which Ollama's message and tool data do not have", node)
        inner = self.expr(base)
        if not (inner.startswith("$") or inner.startswith("(")):
            raise self.fail(f"the field {attr!r} of something that is not a message or tool", node)
        return f"{inner}.{go_field}"

    def loop_attr(self, attr: str, node: nodes.Node) -> str:
        if not self.loops:
            raise self.fail("loop outside a for loop", node)
        loop = self.loops[-1]
        if attr == "index0":
            return loop.index
        if attr == "first":
            return f"(eq {loop.index} 0)"
        if attr == "last":
            return f"(eq (len (slice {loop.iterable} {loop.index})) 1)"
        if attr == "length":
            return f"(len {loop.iterable})"
        if attr == "previtem":
            loop.uses_prev = True
            return loop.prev
        if attr == "nextitem":
            return f"(index (slice {loop.iterable} {loop.index}) 1)"
        raise self.fail(f"loop.{attr} (Go templates have no arithmetic)", node)

    def x_Compare(self, node: nodes.Compare) -> str:
        parts = []
        left_node = node.expr
        for operand in node.ops:
            parts.append(self.compare(left_node, operand.op, operand.expr, node))
            left_node = operand.expr
        return parts[0] if len(parts) == 1 else f"(and {' '.join(parts)})"

    def compare(self, left: nodes.Node, op: str, right: nodes.Node, node: nodes.Node) -> str:
        # loop.index is 1-based; with a constant on the other side it maps onto loop.index0.
        for a, b in ((left, right), (right, left)):
            if _is_loop_attr(a, "index") and isinstance(b, nodes.Const) and isinstance(b.value, int) and op in ("eq", "ne"):
                return f"({op} {self.loop_attr('index0', node)} {b.value - 1})"
        if op in ("in", "notin"):
            if not isinstance(right, (nodes.List, nodes.Tuple)) or not right.items:
                raise self.fail("an `in` test against something other than a literal list (substring tests included)", node)
            test = f"(eq {self.expr(left)} {' '.join(self.expr(i) for i in right.items)})"
            return test if op == "in" else f"(not {test})"
        go_op = {"eq": "eq", "ne": "ne", "lt": "lt", "lteq": "le", "gt": "gt", "gteq": "ge"}.get(op)
        if go_op is None:
            raise self.fail(f"the comparison {op!r}", node)
        return f"({go_op} {self.expr(left)} {self.expr(right)})"

    def x_And(self, node: nodes.And) -> str:
        return f"(and {self.expr(node.left)} {self.expr(node.right)})"

    def x_Or(self, node: nodes.Or) -> str:
        return f"(or {self.expr(node.left)} {self.expr(node.right)})"

    def x_Not(self, node: nodes.Not) -> str:
        return f"(not {self.expr(node.node)})"

    def x_Add(self, node: nodes.Add) -> str:
        return self.concat(node)

    def x_Concat(self, node: nodes.Concat) -> str:
        return self.concat(node)

    def concat(self, node: nodes.Node) -> str:
        items: list[nodes.Node] = []

        def flatten(n: nodes.Node) -> None:
            if isinstance(n, nodes.Add):
                flatten(n.left)
                flatten(n.right)
            elif isinstance(n, nodes.Concat):
                for child in n.nodes:
                    flatten(child)
            else:
                items.append(n)

        flatten(node)
        if any(isinstance(i, nodes.Const) and isinstance(i.value, (int, float)) and not isinstance(i.value, bool) for i in items):
            raise self.fail("arithmetic (+ on numbers)", node)
        # fmt.Sprint puts no spaces between string operands, so print is string concatenation.
        return f"(print {' '.join(self.expr(i) for i in items)})"

    def x_Filter(self, node: nodes.Filter) -> str:
        name = node.name
        if node.node is None:
            raise self.fail(f"a filter block ({name})", node)
        inner = self.expr(node.node)
        if name == "trim" and not node.args:
            self.note("`trim` is not available in Go templates; values are used as given (equal when they have no surrounding whitespace).")
            return inner
        if name in ("length", "count"):
            return f"(len {inner})"
        if name == "tojson":
            self.note("`tojson` becomes Ollama's `json`, which writes compact JSON (no spaces after ',' and ':') and escapes <, > and &.")
            return f"(json {inner})"
        if name == "string":
            return f"(print {inner})"
        if name == "default" and node.args:
            self.note("`default(x)` becomes `or`, which also replaces empty values, not only undefined ones.")
            return f"(or {inner} {self.expr(node.args[0])})"
        raise self.fail(f"the filter '{name}'", node)

    def x_Test(self, node: nodes.Test) -> str:
        inner = self.expr(node.node)
        if node.name == "defined":
            self.note("`is defined` is read as 'is non-empty': Ollama always has every field, empty when unset.")
            return inner
        if node.name == "none":
            return f"(not {inner})"
        if node.name in ("true", "false") and not node.args:
            return inner if node.name == "true" else f"(not {inner})"
        raise self.fail(f"the test 'is {node.name}'", node)

    def x_Call(self, node: nodes.Call) -> str:
        if isinstance(node.node, nodes.Getattr):
            raise self.fail(f"the method .{node.node.attr}()", node)
        name = node.node.name if isinstance(node.node, nodes.Name) else _describe(node.node)
        raise self.fail(f"a call to {name}()", node)


def _is_loop_attr(node: nodes.Node, attr: str) -> bool:
    return isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == "loop" and node.attr == attr


def _is_raise(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "raise_exception"


def _raise_only(body: list[nodes.Node]) -> bool:
    items = [c for n in body if isinstance(n, nodes.Output) for c in n.nodes if not (isinstance(c, nodes.TemplateData) and not c.data.strip())]
    return bool(items) and all(_is_raise(c) for c in items) and all(isinstance(n, nodes.Output) for n in body)


_NODE_NAMES = {
    "Macro": "a macro", "CallBlock": "a call block", "FilterBlock": "a filter block", "With": "a with block", "Include": "an include",
    "Import": "an import", "FromImport": "an import", "Mod": "arithmetic (%)", "Sub": "arithmetic (-)", "Mul": "arithmetic (*)",
    "Div": "arithmetic (/)", "FloorDiv": "arithmetic (//)", "Pow": "arithmetic (**)", "Neg": "arithmetic (unary -)", "Dict": "a dict literal",
    "List": "a list literal", "Tuple": "a tuple literal", "AssignBlock": "a block assignment", "ExprStmt": "a do statement",
    "CondExpr": "an inline if/else inside an expression", "Slice": "a slice",
}


def _describe(node: nodes.Node) -> str:
    return _NODE_NAMES.get(type(node).__name__, f"a {type(node).__name__} node")


_SPACES = re.compile(r"\s+")


def summary_line(text: str, limit: int = 80) -> str:
    text = _SPACES.sub(" ", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
