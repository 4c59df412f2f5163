"""The converter's state: errors, notes, loops, the prelude and registration-time evaluation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from jinja2 import nodes
from jinja2.runtime import Undefined

from model_serving.errors import ServingError
from model_serving.serve.ollama.gotemplate.flow import collected_lists, floor_values, joined_lists, local_constants, queue_names, tagged_names
from model_serving.serve.ollama.gotemplate.macros import TOO_DEEP, UNFOLD_DEPTH
from model_serving.util.chat_template import TemplateRejected, environment

# What Ollama provides in place of transformers' template arguments.
PROVIDED = {"messages": "messages", "tools": "tools", "add_generation_prompt": "bool"}
NEXT_STEP = ("Register with --template gguf so Ollama (0.30 or later) renders the GGUF's own Jinja template, "
             "or write a TEMPLATE by hand and check it with `ollama check-template` before passing it.")


class UnconvertibleTemplate(ServingError):
    """The chat template uses something a Go template cannot express."""

    def __init__(self, construct: str, line: int | None, column: int | None = None) -> None:
        where = (f" (template line {line}, column {column})" if column else f" (template line {line})") if line else ""
        super().__init__(f"The chat template cannot be converted to an Ollama Go TEMPLATE: it uses {construct}{where}.", NEXT_STEP)
        self.construct = construct
        self.line = line
        self.column = column


@dataclass
class Loop:
    index: str  # Go variable holding loop.index0
    iterable: str  # Go operand of the sequence
    target: str
    counter: int
    prev: bool = False  # loop.previtem is read
    next: bool = False  # loop.nextitem is read
    mods: dict[tuple[int, int], str] = field(default_factory=dict)  # (offset, divisor) -> Go counter variable
    total: str = ""  # over a filtered list: the Go variable counting the items kept (loop.length)
    fixed: dict[str, str] | None = None  # an unrolled pass: loop.* known at conversion time


@dataclass
class View:
    """A list, possibly filtered: range over `base` and keep the items `pred` accepts."""

    base: str
    element: str | None
    pred: Callable[[str], str] | None = None
    attr: str | None = None  # map(attribute=...): the Go field each item maps to


class _Fold:
    """A value known at registration time (from constants, strftime_now and unset caller variables)."""

    def __init__(self, value: Any) -> None:
        self.value = value


class Core:
    def __init__(self, source: str, bos: str, eos: str, runtime_adds_bos: bool, ast: nodes.Template) -> None:
        self.lines = source.splitlines()
        self.ast = ast
        self.bos, self.eos, self.runtime_adds_bos = bos, eos, runtime_adds_bos
        self.notes: list[str] = []
        self.loops: list[Loop] = []
        self.counter = 0
        self.bos_dropped = False
        self.dated = False
        self.consts: dict[str, Any] = {}  # names whose value is known at registration time
        self.folds: dict[tuple[int, int], _Fold | None] = {}  # (node, consts version) -> folded value
        self.version = 0
        self.alive: list[Any] = []  # nodes built during the conversion: folds are cached by node id, so none may be freed and its id reused
        self.kinds: dict[str, str | None] = dict(PROVIDED)  # Go variable name -> kind of its value
        self.captures: list[str] = []  # Go variables collecting the text of a `set` block or macro call, innermost last
        self.frames: list[list[str]] = []  # prelude statements of the statement being converted
        self.namespaces = {n.target.name for n in ast.find_all(nodes.Assign) if isinstance(n.target, nodes.Name) and _is_call(n.node, "namespace")}
        # With the runtime adding the BOS, the template's first BOS is decided while rendering (see x_Name).
        extra = {TOO_DEEP} | ({"bos_token"} if runtime_adds_bos and bos else set())  # TOO_DEEP stops the render: never folded
        self.runtime = runtime_names(ast, self.namespaces, extra) - local_constants(ast)
        self.loaded = {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}
        self.aliases: dict[str, nodes.Node] = {}  # names bound once to a filtered list: read as the filter itself
        self.negative = _negative_names(ast, self.namespaces)  # Go names that may hold a negative number
        self.floors = floor_values(ast, self.namespaces, self.negative)  # of those, the ones whose only negative value is a constant
        self.counts: set[str] = set()  # floor names read where they are known to hold a count (not negative)
        self.kept_nodes: list[nodes.Node] = []
        self.records: dict[str, dict[str, str | None]] = {}  # names holding a dict built at render time: key -> kind
        self.held_none: set[str] = set()  # names last set to a key Ollama's data never has (`message.get('end_turn')`): None in Jinja, "" in Go
        self.always_text: set[str] = set()  # names whose every assignment so far holds text (never none or undefined)
        stores = [n.name for a in ast.find_all(nodes.Assign) for n in a.target.find_all(nodes.Name)]
        stores += [a.target.name for a in ast.find_all(nodes.Assign) if isinstance(a.target, nodes.Name)]
        self.store_counts = dict(Counter(stores))  # assignments per name
        self.queues = queue_names(ast, self.namespaces)  # namespace lists of text used as queues (append, pop(0))
        self.runtime |= self.queues
        self.tagged = tagged_names(ast)  # names the template fills with text holding a <think> tag
        self.joined = joined_lists(ast, self.namespaces)  # namespace lists of text that only grow and are only joined -> separator
        self.name_sets = name_sets(ast, self.namespaces) - set(self.joined)  # namespace lists of text that only grow and are only searched
        self.collected = collected_lists(ast, self.namespaces, self.name_sets | set(self.joined))  # namespace lists a loop fills: read as views
        self.collected_views: dict[str, View] = {}
        self.conditions: list[tuple[int, str | None]] = []  # (loop depth, Go test) of the if branches being converted
        self.split_seps: dict[str, str] = {}  # names set to text.split(sep) -> sep (Go holds the text)
        self.known_text: set[str] = set()  # reprs of values an enclosing `x is string and ...` has shown to be text
        self.known_present: list[str] = []  # reprs of keys of JSON values an enclosing if has shown to be there (truthy)

    if TYPE_CHECKING:
        # The handlers live in the mixins Converter joins (expressions, filters, statements, unroll, tooljson, infer and
        # Converter itself); each mixin calls the others through self, so their signatures are declared here once.
        def describe(self, node: nodes.Node) -> str: ...
        def field_key(self, node: nodes.Node) -> tuple[str, str] | None: ...
        def is_call(self, node: nodes.Node | None, name: str) -> bool: ...
        def is_raise(self, node: nodes.Node) -> bool: ...
        def raise_only(self, body: list[nodes.Node]) -> bool: ...
        def set_const(self, key: str, value: Any) -> None: ...
        def expr(self, node: nodes.Node) -> str: ...
        def truth(self, node: nodes.Node) -> str: ...
        def go_const(self, value: Any, node: nodes.Node) -> str: ...
        def index_at(self, seq: str, k: int) -> str: ...
        def member(self, base: nodes.Node, attr: str, node: nodes.Node) -> str: ...
        def seq_view(self, node: nodes.Node) -> View: ...
        def is_view(self, node: nodes.Node) -> bool: ...
        def is_think_split(self, node: nodes.Node) -> bool: ...
        def tag_built(self, node: nodes.Node) -> bool: ...
        def queue_of(self, node: nodes.Node | None) -> str | None: ...
        def queue_append(self, value: nodes.Node) -> str | None: ...
        def queue_pop(self, base: nodes.Node) -> str | None: ...
        def assign_record(self, name: str, value: nodes.Node, node: nodes.Node) -> str | None: ...
        def record_field(self, base: nodes.Node, attr: str) -> tuple[str, str | None] | None: ...
        def write_record(self, name: str, style: Any, level: int) -> str: ...
        def collect_item(self, key: str, value: nodes.Node, node: nodes.Node) -> str: ...
        def collected_view(self, node: nodes.Node) -> View | None: ...
        def floored(self, node: nodes.Add | nodes.Sub) -> str | None: ...
        def floored_index(self, seq: str, arg: nodes.Node) -> str | None: ...
        def is_built_split(self, base: nodes.Node, arg: nodes.Node) -> bool: ...
        def split_piece(self, base: nodes.Node, arg: nodes.Node) -> str: ...
        def narrowing(self, node: nodes.If) -> str | None: ...
        def view_truth(self, node: nodes.Node) -> str | None: ...
        def split_of(self, node: nodes.Node | None) -> tuple[nodes.Node, str] | None: ...
        def split_item(self, node: nodes.Getitem) -> str | None: ...
        def split_count(self, node: nodes.Node) -> str: ...
        def split_name(self, name: str, value: nodes.Node) -> str | None: ...
        def count(self, view: View) -> str: ...
        def pick(self, view: View, *, first: bool) -> str: ...
        def tojson(self, node: nodes.Filter) -> str: ...
        def strip_code(self, go: str, *, left: bool = True, right: bool = True, chars: str = ...) -> tuple[str, str]: ...
        def can_pystr(self, node: nodes.Filter) -> bool: ...
        def pystr(self, node: nodes.Node) -> str: ...
        def kind(self, node: nodes.Node | None) -> str | None: ...
        def block(self, body: list[nodes.Node], scope: Any) -> str: ...
        def inner_scope(self, node: nodes.For, scope: Any, targets: set[str]) -> Any: ...
        def is_unset(self, node: nodes.Node) -> bool: ...
        def int_expr(self, node: nodes.Node) -> str: ...
        def for_range(self, node: nodes.For, scope: Any) -> str: ...
        def for_constant(self, node: nodes.For, scope: Any, values: list[Any]) -> str: ...
        def unroll_items(self, node: nodes.For, scope: Any, key: str, value: str, base: nodes.Node, kind: str, *, sort: bool = False) -> str: ...
        def recased(self, go: str, *, upper: bool) -> str: ...
        def inline_test(self, node: nodes.For, loop: Loop) -> tuple[str, str | None]: ...
        def keyed_loop(self, node: nodes.For, key: str, value: str, base: nodes.Node, kind: str, what: str) -> tuple[str, Loop]: ...
        def is_dictsort(self, node: nodes.For) -> bool: ...
        def for_split(self, node: nodes.For, scope: Any) -> str: ...
        def for_dictsort(self, node: nodes.For, scope: Any) -> str: ...
        def output_item(self, child: nodes.Node) -> str: ...
        def write_text(self, text: str) -> str: ...
        def calls_recursive(self, node: nodes.Node) -> bool: ...
        def recursive_output(self, child: nodes.Node) -> str: ...
        def for_text(self, node: nodes.For, scope: Any) -> str: ...
        def for_value(self, node: nodes.For, scope: Any) -> str: ...
        def for_cased(self, node: nodes.For, scope: Any, filter_name: str) -> str: ...
        def is_always_text(self, node: nodes.Node) -> bool: ...
        def indented(self, node: nodes.Filter) -> str: ...
        def replaced(self, go: str, old: str, new: str) -> str: ...
        def loop_setup(self, loop: Loop) -> str: ...
        def loop_start(self, loop: Loop) -> str: ...
        def loop_body(self, node: nodes.For, scope: Any, loop: Loop, kind: str = "string") -> str: ...
        def for_nameset(self, node: nodes.For, scope: Any) -> str: ...
        def joined_start(self, var: str, key: str, start: nodes.List) -> str: ...
        def joined_append(self, var: str, key: str, value: nodes.Add, node: nodes.Node) -> str: ...
        def joined_text(self, node: nodes.Node) -> str: ...
        def unset_get(self, node: nodes.Node) -> bool: ...
        def recursive_call_of(self, node: nodes.Node) -> nodes.Macro | None: ...
        def value_form(self, call: nodes.Call) -> str: ...
        def first_of_type(self, node: nodes.Getitem) -> str | None: ...
        def type_name_test(self, node: nodes.Test) -> str | None: ...
        def type_join(self, node: nodes.Filter) -> str | None: ...
        def length_compare(self, left: nodes.Node, op: str, right: nodes.Node) -> str | None: ...
        def chars_compare(self, text: str, op: str, n: int) -> str: ...
        def json_length_compare(self, subject: nodes.Node, op: str, n: int) -> str | None: ...
        def json_first_defined(self, node: nodes.Test) -> str | None: ...
        def json_first(self, node: nodes.Getitem) -> str | None: ...
        def json_join(self, node: nodes.Filter) -> str | None: ...
        def json_operand(self, node: nodes.Node) -> str: ...
        def json_contains_or(self, left: nodes.Node, right: nodes.Node) -> str | None: ...
        def kept_call(self, name: str, call: nodes.Call) -> str: ...
        def used_in_expression(self, node: nodes.Node) -> Exception: ...
        def json_field(self, node: nodes.Node | None) -> tuple[nodes.Node, str] | None: ...
        def json_field_truth(self, node: nodes.Node) -> str: ...
        def json_field_read(self, node: nodes.Node) -> tuple[str, str]: ...
        def json_field_parts(self, node: nodes.Node) -> tuple[str, str, str]: ...
        def dict_method_key(self, node: nodes.Node) -> bool: ...
        def prefetch(self, go: str, keys: list[str]) -> str: ...
        def none_or_text(self, node: nodes.Node) -> bool: ...
        def keys_read(self, macro: nodes.Macro, param: str) -> set[str]: ...
        def json_field_test(self, node: nodes.Test) -> str: ...
        def json_field_compare(self, left: nodes.Node, op: str, right: nodes.Node) -> str | None: ...
        def json_contains(self, left: nodes.Node, right: nodes.Node) -> str | None: ...
        def substring(self, needle: str, haystack: str) -> str: ...
        def items_method(self, node: nodes.Node | None) -> str | None: ...
        def items_truth(self, node: nodes.Node) -> str: ...
        def json_field_refused(self, node: nodes.Node, use: str) -> Exception: ...
        def present_fields(self, test: nodes.Node, body: list[nodes.Node]) -> list[str]: ...
        def is_present_field(self, node: nodes.Node) -> bool: ...

    # --- reporting --------------------------------------------------------------------

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def fail(self, construct: str, node: nodes.Node | None, hint: str = "") -> UnconvertibleTemplate:
        line = getattr(node, "lineno", None)
        column = None
        if line and hint and 0 < line <= len(self.lines):
            found = self.lines[line - 1].find(hint)
            column = found + 1 if found >= 0 else None
        return UnconvertibleTemplate(construct, line, column)

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"${stem}{self.counter}"

    # --- the prelude: statements that compute a value before the action that reads it ---

    def emit(self, text: str) -> None:
        if not self.frames:
            raise RuntimeError("prelude outside a statement")
        self.frames[-1].append(text)

    def with_prelude(self, convert: Callable[..., str], *args: Any) -> str:
        self.frames.append([])
        try:
            body = convert(*args)
        finally:
            pre = self.frames.pop()
        return "".join(pre) + body

    # --- registration-time evaluation ---------------------------------------------------

    def depends(self, node: nodes.Node) -> bool:
        """Whether the value can change with the conversation (it reads runtime data)."""
        return depends_on(node, self.runtime | {t.target[1:] for t in self.loops}, self.namespaces)

    def fold(self, node: nodes.Node) -> _Fold | None:
        """The value of a runtime-independent expression, computed now with the template's own Jinja."""
        if self.depends(node) or not isinstance(node, nodes.Expr) or isinstance(node, nodes.Slice):
            return None
        key = (id(node), self.version)
        if key not in self.folds:
            self.folds[key] = self.evaluate(node)
        return self.folds[key]

    def registration_context(self) -> dict[str, Any]:
        return {"bos_token": self.bos, "eos_token": self.eos, **self.consts}  # a template may set its own tokens

    def evaluate(self, node: nodes.Expr) -> _Fold | None:
        if any(isinstance(n, nodes.Call) and isinstance(n.node, nodes.Name) and n.node.name == "strftime_now" for n in _walk(node)):
            self.dated = True
            self.note(f"strftime_now() is evaluated at registration: the prompt carries the date {date.today().isoformat()}; re-register to move it.")
        kept: list[Any] = []

        def keep(value: Any) -> str:
            kept.append(value)
            return ""

        call = nodes.Call(nodes.Name("__keep", "load", lineno=node.lineno), [node], [], None, None, lineno=node.lineno)
        context = self.registration_context()
        try:
            tmpl = environment().from_string(nodes.Template([nodes.Output([call], lineno=node.lineno)], lineno=1))
            tmpl.render(__keep=keep, **context)
        except TemplateRejected:
            return None
        except Exception:  # noqa: BLE001 - a fold that fails at registration is left to render time
            return None
        return _Fold(kept[0]) if kept else None


TOO_DEEP_NOTE = (f"A macro that calls itself whose text is kept in a variable is written out {UNFOLD_DEPTH} calls deep; where the "
                 "data nests deeper (a tool schema), the TEMPLATE stops with an error, so Ollama answers that request with an error.")


def unset_callers(node: nodes.Node, known: set[str]) -> list[str]:
    """Names `node` reads that nothing sets, Ollama does not provide and Jinja has no global for: variables a caller of the
    template would pass (firefunction's `functions`, `datetime`), which Ollama never does."""
    names = {n.name for n in _walk(node) if isinstance(n, nodes.Name) and n.ctx == "load"}
    return sorted(names - known - set(environment().globals) - {"loop", "bos_token", "eos_token"})


def _negative_names(ast: nodes.Template, namespaces: set[str]) -> set[str]:
    """Go names (ns_attr for namespace attributes) that some assignment gives a negative number."""

    def negative(value: nodes.Node) -> bool:
        if isinstance(value, nodes.Neg):
            return isinstance(value.node, nodes.Const) and isinstance(value.node.value, (int, float)) and value.node.value > 0
        return isinstance(value, nodes.Const) and isinstance(value.value, (int, float)) and not isinstance(value.value, bool) and value.value < 0

    found = set()
    for a in ast.find_all(nodes.Assign):
        if isinstance(a.target, nodes.NSRef) and negative(a.node):
            found.add(f"{a.target.name}_{a.target.attr}")
        elif isinstance(a.target, nodes.Name) and a.target.name in namespaces and _is_call(a.node, "namespace"):
            assert isinstance(a.node, nodes.Call)
            found |= {f"{a.target.name}_{kw.key}" for kw in a.node.kwargs if negative(kw.value)}
        elif isinstance(a.target, nodes.Name) and negative(a.node):
            found.add(a.target.name)
    return found


SET_MARK = "\x00"  # between the items of a list of text kept as one Go string


def name_sets(ast: nodes.Template, namespaces: set[str]) -> set[str]:
    """Namespace attributes (as 'ns.attr') that start as constant text, only grow by `+ [item]`, and are read by `in`, `join` or `for`.

    Cohere's `tool_ids_seen.value` is one: Go has no list to build, but such a list can be one string with a mark around
    each item, and `x in list` a search for the marked x.
    """
    def ref(node: nodes.Node | None) -> str | None:
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name in namespaces:
            return f"{node.node.name}.{node.attr}"
        return None

    starts = {f"{a.target.name}.{kw.key}" for a in ast.find_all(nodes.Assign) if isinstance(a.target, nodes.Name) and a.target.name in namespaces
              and _is_call(a.node, "namespace") for kw in a.node.kwargs if text_items(kw.value) is not None}  # type: ignore[attr-defined]
    allowed: set[int] = set()
    grown: set[str] = set()  # a list never added to stays the constant [], read as such at registration
    for a in ast.find_all(nodes.Assign):
        if not isinstance(a.target, nodes.NSRef):
            continue
        key = f"{a.target.name}.{a.target.attr}"
        grows = isinstance(a.node, nodes.Add) and ref(a.node.left) == key and isinstance(a.node.right, nodes.List) and len(a.node.right.items) == 1
        if not grows:
            starts.discard(key)
        else:
            grown.add(key)
            allowed.add(id(a.node.left))  # type: ignore[attr-defined]
    for c in ast.find_all(nodes.Compare):
        if len(c.ops) == 1 and c.ops[0].op in ("in", "notin"):
            allowed.add(id(c.ops[0].expr))
    for f in ast.find_all(nodes.Filter):
        if f.name == "join" and f.node is not None and len(f.args) <= 1 and not f.kwargs:
            allowed.add(id(f.node))  # joined into one text (LFM2's argument strings): the marks become the separator
    allowed |= {id(f.iter) for f in ast.find_all(nodes.For)}  # walked item by item, mark to mark (gotemplate/namewalk.py)
    bad = {read for g in ast.find_all(nodes.Getattr) if (read := ref(g)) is not None and id(g) not in allowed}
    return starts & grown - bad


def text_items(node: nodes.Node | None) -> list[str] | None:
    """The items of a list literal of constant text (`[]`, `['"self"']`), else None."""
    if not isinstance(node, nodes.List) or not all(isinstance(i, nodes.Const) and isinstance(i.value, str) for i in node.items):
        return None
    return [i.value for i in node.items]  # type: ignore[attr-defined]


def render_block(node: nodes.AssignBlock, context: dict[str, Any]) -> str | None:
    """The text a `{% set x %}...{% endset %}` block holds, rendered now with the template's own Jinja."""
    body: list[nodes.Node] = list(node.body) if node.filter is None else [nodes.FilterBlock(node.body, node.filter, lineno=node.lineno)]
    try:
        return str(environment().from_string(nodes.Template(body, lineno=1)).render(**context))
    except Exception:  # noqa: BLE001 - a block that fails at registration is refused by the caller
        return None


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    yield from node.find_all(nodes.Node)


def _is_call(node: nodes.Node | None, name: str) -> bool:
    return isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == name


def is_undefined(value: Any) -> bool:
    return isinstance(value, Undefined)


def depends_on(node: nodes.Node, runtime: set[str], namespaces: set[str]) -> bool:
    for n in _walk(node):
        if isinstance(n, nodes.Name) and n.ctx == "load" and (n.name in runtime or n.name == "loop"):
            return True
        if isinstance(n, nodes.Getattr) and isinstance(n.node, nodes.Name) and n.node.name in namespaces and f"{n.node.name}.{n.attr}" in runtime:
            return True
    return False


def runtime_names(ast: nodes.Template, namespaces: set[str], extra: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """Names (and namespace attributes, as 'ns.attr') whose value depends on the conversation."""
    runtime = set(PROVIDED) | set(extra) | {t.name for f in ast.find_all(nodes.For) for t in f.target.find_all(nodes.Name)}
    assigns = _assignments(ast.body, False, namespaces)
    while True:
        before = len(runtime)
        for key, value, tests, looped in assigns:
            if looped or any(depends_on(t, runtime, namespaces) for t in tests) or (value is not None and depends_on(value, runtime, namespaces)):
                runtime.add(key)
        if len(runtime) == before:
            return runtime


def _assignments(body: list[nodes.Node], looped: bool, namespaces: set[str], tests: tuple = ()) -> list[tuple[str, Any, tuple, bool]]:
    """(name, value, enclosing if-tests, inside a loop) for every assignment in `body`."""
    out: list[tuple[str, Any, tuple, bool]] = []
    for n in body:
        if isinstance(n, nodes.Assign):
            out.extend(_targets(n, namespaces, tests, looped))
        elif isinstance(n, nodes.AssignBlock) and isinstance(n.target, nodes.Name):
            out.append((n.target.name, n, tests, looped))  # runtime when its body reads runtime data
            out.extend(_assignments(n.body, looped, namespaces, tests))
        elif isinstance(n, nodes.If):
            out.extend(_assignments(n.body, looped, namespaces, (*tests, n.test)))
            for e in n.elif_:
                out.extend(_assignments(e.body, looped, namespaces, (*tests, n.test, e.test)))
            out.extend(_assignments(n.else_, looped, namespaces, (*tests, n.test, *(e.test for e in n.elif_))))
        elif isinstance(n, nodes.For):
            out.extend(_assignments(n.body, True, namespaces, (*tests, n.iter)))
        elif hasattr(n, "body") and isinstance(n.body, list):
            out.extend(_assignments(n.body, looped, namespaces, tests))
    return out


def _targets(n: nodes.Assign, namespaces: set[str], tests: tuple, looped: bool) -> list[tuple[str, Any, tuple, bool]]:
    if isinstance(n.target, nodes.NSRef):
        return [(f"{n.target.name}.{n.target.attr}", n.node, tests, looped)]
    if isinstance(n.target, nodes.Name) and n.target.name in namespaces and _is_call(n.node, "namespace"):
        call = n.node
        assert isinstance(call, nodes.Call)
        return [(f"{n.target.name}.{kw.key}", kw.value, tests, looped) for kw in call.kwargs]
    return [(t.name, n.node, tests, looped) for t in n.target.find_all(nodes.Name)] if not isinstance(n.target, nodes.Name) else [(n.target.name, n.node, tests, looped)]
