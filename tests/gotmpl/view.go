package main

// What a TEMPLATE sees. Ollama (template/template.go) does not hand its api structs to a template:
// since 0.14 it converts tools and messages into view types whose properties and arguments are
// plain Go maps, so that `range` works on them. A plain map ranges, and marshals to JSON, in sorted
// key order: the declaration order that the api types keep is lost to templates (on purpose, for
// compatibility; see Ollama's change "preserve tool definition and call JSON ordering"). Nested
// property objects stay ordered api values. Only the tool types print as JSON (their String
// methods); a bare function, parameters or tool call prints as a Go struct, as in Ollama.

import "encoding/json"

type viewTools []viewTool

func (t viewTools) String() string {
	b, _ := json.Marshal(t)
	return string(b)
}

type viewTool struct {
	Type     string           `json:"type"`
	Items    any              `json:"items,omitempty"`
	Function viewToolFunction `json:"function"`
}

func (t viewTool) String() string {
	b, _ := json.Marshal(t)
	return string(b)
}

// Ollama's view drops omitempty from the description.
type viewToolFunction struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Parameters  viewParameters `json:"parameters"`
}

type viewParameters struct {
	Type       string         `json:"type"`
	Defs       any            `json:"$defs,omitempty"`
	Items      any            `json:"items,omitempty"`
	Required   []string       `json:"required,omitempty"`
	Properties viewProperties `json:"properties"`
}

type viewProperties map[string]ToolProperty

func (p viewProperties) String() string {
	if p == nil {
		return "{}"
	}
	b, _ := json.Marshal(p)
	return string(b)
}

type viewArgs map[string]any

func (a viewArgs) String() string {
	if a == nil {
		return "{}"
	}
	b, _ := json.Marshal(a)
	return string(b)
}

// The message view has no JSON tags: `json` of a message writes Go's field names, as in Ollama.
type viewMessage struct {
	Role       string
	Content    string
	Thinking   string
	Images     []string
	ToolCalls  []viewToolCall
	ToolName   string
	ToolCallID string
}

type viewToolCall struct {
	ID       string
	Function viewToolCallFunction
}

type viewToolCallFunction struct {
	Index     int
	Name      string
	Arguments viewArgs
}

func viewOfTools(tools Tools) viewTools {
	if tools == nil {
		return nil
	}
	out := make(viewTools, len(tools))
	for i, t := range tools {
		p := t.Function.Parameters
		out[i] = viewTool{Type: t.Type, Items: t.Items, Function: viewToolFunction{
			Name: t.Function.Name, Description: t.Function.Description,
			Parameters: viewParameters{Type: p.Type, Defs: p.Defs, Items: p.Items, Required: p.Required, Properties: p.Properties.ToMap()},
		}}
	}
	return out
}

func viewOfMessages(msgs []*Message) []*viewMessage {
	if msgs == nil {
		return nil
	}
	out := make([]*viewMessage, len(msgs))
	for i, m := range msgs {
		var calls []viewToolCall
		for _, c := range m.ToolCalls {
			calls = append(calls, viewToolCall{ID: c.ID, Function: viewToolCallFunction{
				Index: c.Function.Index, Name: c.Function.Name, Arguments: c.Function.Arguments.ToMap(),
			}})
		}
		out[i] = &viewMessage{Role: m.Role, Content: m.Content, Thinking: m.Thinking, Images: m.Images,
			ToolCalls: calls, ToolName: m.ToolName, ToolCallID: m.ToolCallID}
	}
	return out
}
