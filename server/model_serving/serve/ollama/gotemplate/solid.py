"""`macro(...) | trim` written as `macro(...)` where trimming provably changes nothing.

Gemma 4 writes each tool as `{{ format_function_declaration(tool) | trim }}`. The filter makes the call an expression,
whose text a Go template would have to capture, and a macro that calls itself (Gemma's `format_parameters`) cannot be
captured. But the macro's text starts with `declaration:` and ends with `}` in every conversation: its first statement
writes that literal before anything else, its last writes `}` after everything else. Python's `strip()` removes
whitespace from the ends only, so such text comes back unchanged and the call can stand alone in the output, where
it is written out in place. Only a first and last statement that are outputs starting (ending) with literal text
whose first (last) character is not whitespace count as proof; anything else keeps the filter.

Likewise an output that joins text and macro calls (`{{ 'Tool Capabilities:\n' + render_tools(tools) }}`, Apertus;
Functionary's `bos_token + '...' + generate_schema_from_functions(tools) + '<|eot_id|>'`) writes the same text as its
pieces written one after the other, so each call stands alone in the output. Only `+` or `~` of literal text, the
special tokens (text in every render) and macro calls is split (a `+` of other values could be arithmetic), and only
outside macro bodies.
"""

from __future__ import annotations

import copy

from jinja2 import nodes

_TEXT_NAMES = {"bos_token", "eos_token"}  # passed as text to every render


def untrimmed(ast: nodes.Template) -> nodes.Template:
    """The template with each output `m(...) | trim` of a macro whose text is solid at both ends written as `m(...)`,
    and each output joining text and macro calls written as its pieces."""
    macros = {m.name for m in ast.body if isinstance(m, nodes.Macro)}
    solid = {m.name for m in ast.body if isinstance(m, nodes.Macro) and solid_ends(m)}
    if not any(_trimmed_call(c, solid) or _pieces(c, macros) for o in _outputs(ast) for c in o.nodes):
        return ast
    ast = copy.deepcopy(ast)
    for out in _outputs(ast):
        out.nodes = [p for child in out.nodes for p in (_pieces(child, macros) or [_trimmed_call(child, solid) or child])]
    return ast


def _outputs(node: nodes.Node) -> list[nodes.Output]:
    """The template's outputs outside macro bodies (a body is converted where it is expanded, as it is)."""
    found: list[nodes.Output] = []
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.Output):
            found.append(child)
        elif not isinstance(child, nodes.Macro):
            found.extend(_outputs(child))
    return found


def _pieces(node: nodes.Node, macros: set[str]) -> list[nodes.Expr] | None:
    """The operands of a `+`/`~` chain of text that holds a macro call, in order; None if the node is not one."""
    parts = _operands(node)
    if parts is None or len(parts) < 2 or not any(_is_call(p, macros) for p in parts):
        return None
    if not all(_is_text(p, macros) for p in parts):
        return None  # a value before a call that changes state must be read first: kept whole, and refused as such
    return parts


def _operands(node: nodes.Node) -> list[nodes.Expr] | None:
    """A chain of one operator flattened; an operand of the other operator is kept whole (`'a' ~ (n + 1)`)."""
    if isinstance(node, nodes.Concat):
        return [p for n in node.nodes for p in ((_operands(n) if isinstance(n, nodes.Concat) else None) or [n])]
    if isinstance(node, nodes.Add):
        return [p for side in (node.left, node.right) for p in ((_operands(side) if isinstance(side, nodes.Add) else None) or [side])]
    return None


def _is_call(node: nodes.Node, macros: set[str]) -> bool:
    return isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name in macros


def _is_text(node: nodes.Node, macros: set[str]) -> bool:
    return (_is_call(node, macros) or (isinstance(node, nodes.Const) and isinstance(node.value, str))
            or (isinstance(node, nodes.Name) and node.name in _TEXT_NAMES))


def solid_ends(macro: nodes.Macro) -> bool:
    """Whether every text the macro renders starts and ends with a character that is not whitespace."""
    if not macro.body or any(isinstance(n, nodes.Name) and n.name in ("caller", "varargs", "kwargs") for n in macro.find_all(nodes.Name)):
        return False
    first, last = macro.body[0], macro.body[-1]
    if not (isinstance(first, nodes.Output) and isinstance(last, nodes.Output)):
        return False
    head, tail = first.nodes[0] if first.nodes else None, last.nodes[-1] if last.nodes else None
    return (isinstance(head, nodes.TemplateData) and head.data[:1].strip() != ""
            and isinstance(tail, nodes.TemplateData) and tail.data[-1:].strip() != "")


def _trimmed_call(node: nodes.Node, solid: set[str]) -> nodes.Call | None:
    """The call of `m(...) | trim` (no arguments to trim, so whitespace only) when m is solid at both ends."""
    if not (isinstance(node, nodes.Filter) and node.name == "trim" and not node.args and not node.kwargs
            and node.dyn_args is None and node.dyn_kwargs is None):
        return None
    call = node.node
    if isinstance(call, nodes.Call) and isinstance(call.node, nodes.Name) and call.node.name in solid:
        return call
    return None
