"""Go template literals."""

from __future__ import annotations


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
    """Template text for Go: literal, except `{{`, which would open an action.

    A trailing `{` is written as an action too: the action or text that follows may start with `{`.
    """
    out = text.replace("{{", '{{ "{{" }}')
    return out[:-1] + '{{ "{" }}' if out.endswith("{") else out


def go_failure(reason: str) -> str:
    """An action that stops Go's render where Jinja's fails: a call of a template no TEMPLATE defines, named by the reason.

    It passes an argument: Ollama's Vars() reads the pipe of every {{template}} action, and panics on a missing one.
    """
    return f"{{{{ template {go_string('the chat template fails here in Jinja: ' + reason)} \"\" }}}}"


def go_failure_bound(reason: str) -> str:
    """An action that stops Go's render where Jinja would go on: past a bound of the converter's, named by the reason."""
    name = f"the converted TEMPLATE stops here: {reason} (the converter's bound, not Jinja's)"
    return f"{{{{ template {go_string(name)} \"\" }}}}"
