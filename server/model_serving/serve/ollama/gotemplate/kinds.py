"""What Ollama hands a template: the kind of each value, and the Go field behind each Jinja key.

Jinja reads transformers' message and tool dicts; Ollama's TEMPLATE reads its api structs. A kind
names one of those structs (or a list of them), so `message.name` can become `.ToolName` on a
message and `.Name` on a function, and `tojson` knows which fields to write.
"""

from __future__ import annotations

# kind -> Jinja key -> (Go field, kind of the value)
FIELDS: dict[str, dict[str, tuple[str, str]]] = {
    "message": {
        "role": ("Role", "string"), "content": ("Content", "string"), "tool_calls": ("ToolCalls", "toolcalls"),
        "tool_call_id": ("ToolCallID", "string"), "name": ("ToolName", "string"), "tool_name": ("ToolName", "string"),
        "thinking": ("Thinking", "string"), "reasoning_content": ("Thinking", "string"), "reasoning": ("Thinking", "string"),
    },
    "toolcall": {"function": ("Function", "callfunc"), "id": ("ID", "string")},
    "callfunc": {"name": ("Name", "string"), "arguments": ("Arguments", "args"), "index": ("Index", "int")},
    "tool": {"type": ("Type", "string"), "function": ("Function", "toolfunc")},
    "toolfunc": {"name": ("Name", "string"), "description": ("Description", "string"), "parameters": ("Parameters", "params")},
    "params": {"type": ("Type", "string"), "properties": ("Properties", "properties"), "required": ("Required", "strings")},
    # an object property's own properties: an ordered api value in Ollama's view, whose ToMap method gives the Go map (nil-safe)
    "property": {"type": ("Type", "string"), "description": ("Description", "string"), "enum": ("Enum", "values"), "items": ("Items", "value"),
                 "properties": ("Properties.ToMap", "properties"), "required": ("Required", "strings"),
                 "anyOf": ("AnyOf", "anyof")},
}

ELEMENT = {"messages": "message", "tools": "tool", "toolcalls": "toolcall", "strings": "string", "values": "value", "callfuncs": "callfunc",
           "toolfuncs": "toolfunc", "anyof": "property"}
# `value | map('upper') | list` of a JSON value handed to a macro that calls itself: the value, its items recased when read
CASED_LISTS = {"upperlist": "upper", "lowerlist": "lower"}
ELEMENT |= dict.fromkeys(CASED_LISTS, "string")
SEQUENCES = set(ELEMENT)

# Keys Ollama's structs do not carry but whose value is fixed for every value Ollama passes.
FIXED = {("toolcall", "type"): "function"}

# Fields that always hold a value in Ollama's data (the rest are empty when unset).
ALWAYS_SET = {("message", "role"), ("message", "content"), ("toolcall", "function"), ("callfunc", "name"), ("callfunc", "arguments"),
              ("tool", "type"), ("tool", "function"), ("toolfunc", "name"), ("toolfunc", "parameters")}

# Fields whose Go type is not text but prints as the text Jinja sees (a property's type: a list of names).
PRINTED = {("property", "type")}

# Ollama hands a TEMPLATE properties and arguments as Go maps (its template view), so no TEMPLATE can see their declared order.
SORTED_KEYS_NOTE = ("Tool properties and tool-call arguments come in sorted key order: Ollama hands them to a TEMPLATE as Go maps, while "
                    "Jinja keeps their declared order. Prompts agree when the keys are declared sorted; --template gguf keeps the order.")

# Structs whose every field FIELDS lists: a key beyond them never reaches a TEMPLATE (Ollama's API drops it, such as
# gpt-oss's `content_type` of a call's function).
CLOSED = {"message", "tool", "toolfunc", "toolcall", "callfunc"}

# Every key Ollama keeps in a tool property (its ToolProperty struct): any other key of a property never reaches a TEMPLATE.
KEPT_KEYS = {"property": {"type", "description", "enum", "items", "properties", "required", "anyOf"},
             "params": {"type", "$defs", "items", "required", "properties"}}

MAPPINGS = {"message", "toolcall", "callfunc", "tool", "toolfunc", "params", "property", "args", "properties"}
STRINGS = {"string"}
