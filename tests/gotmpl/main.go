// Command gotmpl renders an Ollama TEMPLATE with Go's text/template, the way Ollama does:
// the same helper functions, the same view of tools and messages (view.go), missingkey=zero, the appended {{ .Response }} for templates that
// name neither Messages nor Response, consecutive messages of one role merged, and the legacy
// System/Prompt/Response loop for templates without .Messages.
//
// It reads one JSON request on stdin ({"template", "messages", "tools", "prompt", "suffix"}) or
// {"batch": [request, ...]}, and writes {"output": ...} or {"error": ...} (a list for a batch).
// Test tooling: model-serving's template fidelity tests and the Ollama test double use it.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

type request struct {
	Template string    `json:"template"`
	Messages []Message `json:"messages"`
	Tools    Tools     `json:"tools"`
	Prompt   string    `json:"prompt"`
	Suffix   string    `json:"suffix"`
	Think    bool      `json:"think"`
}

type result struct {
	Output *string  `json:"output,omitempty"`
	Error  string   `json:"error,omitempty"`
	Vars   []string `json:"vars,omitempty"`
}

var helpers = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
	// Ollama's date helpers ignore their format argument.
	"currentDate":   func(args ...string) string { return time.Now().Format("2006-01-02") },
	"yesterdayDate": func(args ...string) string { return time.Now().AddDate(0, 0, -1).Format("2006-01-02") },
	"toTypeScriptType": func(v any) string {
		if p, ok := v.(ToolProperty); ok {
			return p.typeScript()
		}
		if p, ok := v.(*ToolProperty); ok && p != nil {
			return p.typeScript()
		}
		return "any"
	},
}

func parseTemplate(text string) (*template.Template, []string, error) {
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(helpers).Parse(text)
	if err != nil {
		return nil, nil, err
	}
	if name := bareTemplateCall(tmpl); name != "" {
		// Ollama's Vars() reads the pipe of every {{template}} action without a nil check: one with no argument panics it.
		return nil, nil, fmt.Errorf("{{template %q}} has no argument: Ollama's Vars() panics on its nil pipe", name)
	}
	vars := identifiers(tmpl)
	if !contains(vars, "messages") && !contains(vars, "response") {
		// Ollama appends a {{ .Response }} action to such templates.
		tmpl.Tree.Root.Nodes = append(tmpl.Tree.Root.Nodes, responseAction())
	}
	return tmpl, vars, nil
}

func responseAction() parse.Node {
	field := &parse.FieldNode{NodeType: parse.NodeField, Ident: []string{"Response"}}
	cmd := &parse.CommandNode{NodeType: parse.NodeCommand, Args: []parse.Node{field}}
	return &parse.ActionNode{NodeType: parse.NodeAction, Pipe: &parse.PipeNode{NodeType: parse.NodePipe, Cmds: []*parse.CommandNode{cmd}}}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// eachNode calls visit on every node of every defined template, pipelines and their arguments included.
func eachNode(tmpl *template.Template, visit func(parse.Node)) {
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		visit(n)
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.TemplateNode:
			if n.Pipe != nil {
				walk(n.Pipe)
			}
		case *parse.IfNode:
			walk(&n.BranchNode)
		case *parse.RangeNode:
			walk(&n.BranchNode)
		case *parse.WithNode:
			walk(&n.BranchNode)
		case *parse.BranchNode:
			walk(n.Pipe)
			walk(n.List)
			if n.ElseList != nil {
				walk(n.ElseList)
			}
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				for _, a := range c.Args {
					walk(a)
				}
			}
		}
	}
	for _, t := range tmpl.Templates() {
		if t.Tree != nil {
			walk(t.Tree.Root)
		}
	}
}

// bareTemplateCall names a {{template "name"}} action without an argument, in any defined template ("" if none).
func bareTemplateCall(tmpl *template.Template) string {
	found := ""
	eachNode(tmpl, func(n parse.Node) {
		if t, ok := n.(*parse.TemplateNode); ok && t.Pipe == nil && found == "" {
			found = t.Name
		}
	})
	return found
}

// identifiers lists the lower-cased field and variable names a template uses.
func identifiers(tmpl *template.Template) []string {
	seen := map[string]bool{}
	eachNode(tmpl, func(n parse.Node) {
		switch n := n.(type) {
		case *parse.FieldNode:
			for _, id := range n.Ident {
				seen[strings.ToLower(id)] = true
			}
		case *parse.VariableNode:
			for _, id := range n.Ident {
				seen[strings.ToLower(id)] = true
			}
		}
	})
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	return out
}

// merge joins consecutive messages of one role (tool results excepted) and collects the system texts.
func merge(msgs []Message) (string, []*Message) {
	var systems []string
	var out []*Message
	for i := range msgs {
		m := msgs[i]
		if m.Role == "system" {
			systems = append(systems, m.Content)
		}
		if n := len(out); n > 0 && out[n-1].Role == m.Role && m.Role != "tool" {
			out[n-1].Content += "\n\n" + m.Content
			continue
		}
		out = append(out, &m)
	}
	return strings.Join(systems, "\n\n"), out
}

func render(req request) (string, []string, error) {
	tmpl, vars, err := parseTemplate(req.Template)
	if err != nil {
		return "", nil, err
	}
	system, msgs := merge(req.Messages)
	var buf bytes.Buffer
	switch {
	case req.Prompt != "" && req.Suffix != "":
		err = tmpl.Execute(&buf, map[string]any{"Prompt": req.Prompt, "Suffix": req.Suffix, "Response": "", "Think": req.Think, "IsThinkSet": false})
	case contains(vars, "messages") || contains(vars, "document"):
		err = tmpl.Execute(&buf, map[string]any{"System": system, "Messages": viewOfMessages(msgs), "Tools": viewOfTools(req.Tools), "Response": "", "Think": req.Think, "IsThinkSet": false})
	default:
		err = legacy(tmpl, msgs, req.Think, &buf)
	}
	return buf.String(), vars, err
}

// legacy renders a System/Prompt/Response template once per exchange, and the last exchange
// only up to its {{ .Response }}, which is where the model continues.
func legacy(tmpl *template.Template, msgs []*Message, think bool, w io.Writer) error {
	var system, prompt, response string
	exec := func(t *template.Template) error {
		err := t.Execute(w, map[string]any{"System": system, "Prompt": prompt, "Response": response, "Think": think, "IsThinkSet": false})
		system, prompt, response = "", "", ""
		return err
	}
	for _, m := range msgs {
		switch m.Role {
		case "system":
			if prompt != "" || response != "" {
				if err := exec(tmpl); err != nil {
					return err
				}
			}
			system = m.Content
		case "user":
			if response != "" {
				if err := exec(tmpl); err != nil {
					return err
				}
			}
			prompt = m.Content
		case "assistant":
			response = m.Content
		}
	}
	root := tmpl.Tree.Root.CopyList()
	cut := false
	root = prune(root, &cut).(*parse.ListNode)
	last, err := template.New("").Funcs(helpers).AddParseTree("", &parse.Tree{Root: root})
	if err != nil {
		return err
	}
	return exec(last)
}

// prune drops every node that follows the first .Response field, in document order.
func prune(n parse.Node, cut *bool) parse.Node {
	if *cut {
		return nil
	}
	switch t := n.(type) {
	case *parse.FieldNode:
		if contains(t.Ident, "Response") {
			*cut = true
		}
		return n
	case *parse.ListNode:
		var kept []parse.Node
		for _, c := range t.Nodes {
			if k := prune(c, cut); k != nil {
				kept = append(kept, k)
			}
		}
		t.Nodes = kept
		return t
	case *parse.IfNode:
		pruneBranch(&t.BranchNode, cut)
	case *parse.RangeNode:
		pruneBranch(&t.BranchNode, cut)
	case *parse.WithNode:
		pruneBranch(&t.BranchNode, cut)
	case *parse.ActionNode:
		p := prune(t.Pipe, cut)
		if p == nil {
			return nil
		}
		t.Pipe = p.(*parse.PipeNode)
	case *parse.PipeNode:
		var cmds []*parse.CommandNode
		for _, c := range t.Cmds {
			var args []parse.Node
			for _, a := range c.Args {
				if k := prune(a, cut); k != nil {
					args = append(args, k)
				}
			}
			if len(args) == 0 {
				return nil
			}
			c.Args = args
			cmds = append(cmds, c)
		}
		if len(cmds) == 0 {
			return nil
		}
		t.Cmds = cmds
	}
	return n
}

func pruneBranch(b *parse.BranchNode, cut *bool) {
	if p := prune(b.Pipe, cut); p != nil {
		b.Pipe = p.(*parse.PipeNode)
	}
	b.List = prune(b.List, cut).(*parse.ListNode)
	if b.ElseList != nil {
		b.ElseList = prune(b.ElseList, cut).(*parse.ListNode)
	}
}

func answer(req request) result {
	out, vars, err := render(req)
	if err != nil {
		return result{Error: err.Error(), Vars: vars}
	}
	return result{Output: &out, Vars: vars}
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var probe struct {
		Batch []json.RawMessage `json:"batch"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		fmt.Fprintln(os.Stderr, "bad request:", err)
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if probe.Batch == nil {
		var req request
		if err := json.Unmarshal(data, &req); err != nil {
			fmt.Fprintln(os.Stderr, "bad request:", err)
			os.Exit(2)
		}
		_ = enc.Encode(answer(req))
		return
	}
	results := make([]result, 0, len(probe.Batch))
	for _, raw := range probe.Batch {
		var req request
		if err := json.Unmarshal(raw, &req); err != nil {
			results = append(results, result{Error: "bad request: " + err.Error()})
			continue
		}
		results = append(results, answer(req))
	}
	_ = enc.Encode(results)
}
