package main

// Data types shaped like Ollama's api package, which decodes a chat request: the same field names,
// JSON tags and String methods. Properties and arguments keep their declaration order, as current
// Ollama does, and offer Len and ToMap like Ollama's. A template never sees these types directly:
// view.go turns them into what Ollama hands a template.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	Thinking   string     `json:"thinking,omitempty"`
	Images     []string   `json:"images,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolName   string     `json:"tool_name,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

type ToolCall struct {
	ID       string           `json:"id,omitempty"`
	Function ToolCallFunction `json:"function"`
}

type ToolCallFunction struct {
	Index     int       `json:"index"`
	Name      string    `json:"name"`
	Arguments Arguments `json:"arguments"`
}

type Tools []Tool

func (t Tools) String() string {
	b, _ := json.Marshal(t)
	return string(b)
}

type Tool struct {
	Type     string       `json:"type"`
	Items    any          `json:"items,omitempty"`
	Function ToolFunction `json:"function"`
}

func (t Tool) String() string {
	b, _ := json.Marshal(t)
	return string(b)
}

type ToolFunction struct {
	Name        string                 `json:"name"`
	Description string                 `json:"description,omitempty"`
	Parameters  ToolFunctionParameters `json:"parameters"`
}

func (t *ToolFunction) String() string {
	b, _ := json.Marshal(t)
	return string(b)
}

type ToolFunctionParameters struct {
	Type       string      `json:"type"`
	Defs       any         `json:"$defs,omitempty"`
	Items      any         `json:"items,omitempty"`
	Required   []string    `json:"required,omitempty"`
	Properties *Properties `json:"properties"`
}

func (t *ToolFunctionParameters) String() string {
	b, _ := json.Marshal(t)
	return string(b)
}

type ToolProperty struct {
	AnyOf       []ToolProperty `json:"anyOf,omitempty"`
	Type        PropertyType   `json:"type,omitempty"`
	Items       any            `json:"items,omitempty"`
	Description string         `json:"description,omitempty"`
	Enum        []any          `json:"enum,omitempty"`
	Properties  *Properties    `json:"properties,omitempty"`
	Required    []string       `json:"required,omitempty"`
}

// typeScript is the property's type as a TypeScript type, as Ollama's toTypeScriptType helper writes it.
func (p ToolProperty) typeScript() string {
	var parts []string
	if len(p.AnyOf) > 0 {
		for _, alt := range p.AnyOf {
			parts = append(parts, alt.typeScript())
		}
		return strings.Join(parts, " | ")
	}
	if len(p.Type) == 0 {
		return "any"
	}
	names := map[string]string{"string": "string", "number": "number", "integer": "number", "boolean": "boolean",
		"array": "any[]", "object": "Record<string, any>", "null": "null"}
	for _, t := range p.Type {
		name, ok := names[t]
		if !ok {
			name = "any"
		}
		parts = append(parts, name)
	}
	return strings.Join(parts, " | ")
}

// PropertyType is a JSON Schema type: one name, or a list of names.
type PropertyType []string

func (p PropertyType) String() string {
	if len(p) == 0 {
		return ""
	}
	if len(p) == 1 {
		return p[0]
	}
	return fmt.Sprintf("%v", []string(p))
}

func (p PropertyType) MarshalJSON() ([]byte, error) {
	if len(p) == 1 {
		return json.Marshal(p[0])
	}
	return json.Marshal([]string(p))
}

func (p *PropertyType) UnmarshalJSON(data []byte) error {
	var one string
	if err := json.Unmarshal(data, &one); err == nil {
		*p = PropertyType{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(data, &many); err != nil {
		return err
	}
	*p = many
	return nil
}

// ordered is a JSON object that remembers the order of its keys.
type ordered struct {
	keys   []string
	values map[string]json.RawMessage
}

func (o *ordered) decode(data []byte) error {
	o.values = map[string]json.RawMessage{}
	o.keys = nil
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("expected a JSON object, got %v", tok)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		if _, seen := o.values[key]; !seen {
			o.keys = append(o.keys, key)
		}
		o.values[key] = raw
	}
	return nil
}

func (o ordered) encode(value func(key string) (any, error)) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, key := range o.keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(key)
		buf.Write(k)
		buf.WriteByte(':')
		v, err := value(key)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		buf.Write(b)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// Arguments are a tool call's arguments in the order the model wrote them.
type Arguments struct{ o ordered }

func (a *Arguments) UnmarshalJSON(data []byte) error { return a.o.decode(data) }

func (a Arguments) MarshalJSON() ([]byte, error) {
	if a.o.values == nil {
		return []byte("{}"), nil
	}
	return a.o.encode(func(key string) (any, error) {
		// Nested values go through Go's generic decoding, as in Ollama: objects inside come
		// back with sorted keys and compact separators.
		var v any
		if err := json.Unmarshal(a.o.values[key], &v); err != nil {
			return nil, err
		}
		return v, nil
	})
}

func (a *Arguments) String() string {
	b, _ := a.MarshalJSON()
	return string(b)
}

func (a *Arguments) Len() int { return len(a.o.keys) }

// ToMap is the arguments as a plain map (Go templates range over it in sorted key order).
func (a *Arguments) ToMap() map[string]any {
	if a.o.values == nil {
		return nil
	}
	out := map[string]any{}
	for _, key := range a.o.keys {
		var v any
		_ = json.Unmarshal(a.o.values[key], &v)
		out[key] = v
	}
	return out
}

// Properties are a tool's parameter properties in declaration order.
type Properties struct{ o ordered }

func (p *Properties) Len() int {
	if p == nil {
		return 0
	}
	return len(p.o.keys)
}

// ToMap is the properties as a plain map (Go templates range over it in sorted key order).
func (p *Properties) ToMap() map[string]ToolProperty {
	if p == nil || p.o.values == nil {
		return nil
	}
	out := map[string]ToolProperty{}
	for _, key := range p.o.keys {
		var prop ToolProperty
		_ = json.Unmarshal(p.o.values[key], &prop)
		out[key] = prop
	}
	return out
}

func (p *Properties) UnmarshalJSON(data []byte) error { return p.o.decode(data) }

func (p Properties) MarshalJSON() ([]byte, error) {
	if p.o.values == nil {
		return []byte("null"), nil
	}
	return p.o.encode(func(key string) (any, error) {
		var prop ToolProperty
		if err := json.Unmarshal(p.o.values[key], &prop); err != nil {
			return nil, err
		}
		return prop, nil
	})
}
