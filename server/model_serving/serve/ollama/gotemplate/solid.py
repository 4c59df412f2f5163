"""`macro(...) | trim` written as `macro(...)` where trimming provably changes nothing.

Gemma 4 writes each tool as `{{ format_function_declaration(tool) | trim }}`. The filter makes the call an expression,
whose text a Go template would have to capture, and a macro that calls itself (Gemma's `format_parameters`) cannot be
captured. But the macro's text starts with `declaration:` and ends with `}` in every conversation: its first statement
writes that literal before anything else, its last writes `}` after everything else. Python's `strip()` removes
whitespace from the ends only, so such text comes back unchanged and the call can stand alone in the output, where
it is written out in place. Only a first and last statement that are outputs starting (ending) with literal text
whose first (last) character is not whitespace count as proof; anything else keeps the filter.
"""

from __future__ import annotations

import copy

from jinja2 import nodes


def untrimmed(ast: nodes.Template) -> nodes.Template:
    """The template with each output `m(...) | trim` of a macro whose text is solid at both ends written as `m(...)`."""
    solid = {m.name for m in ast.body if isinstance(m, nodes.Macro) and solid_ends(m)}
    if not any(_trimmed_call(child, solid) for o in ast.find_all(nodes.Output) for child in o.nodes):
        return ast
    ast = copy.deepcopy(ast)
    for out in ast.find_all(nodes.Output):
        out.nodes = [_trimmed_call(child, solid) or child for child in out.nodes]
    return ast


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
