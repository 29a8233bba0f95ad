// Package template renders a Go template the way Ollama's template package does: the
// same options (missingkey=zero), the same extra functions (with the date frozen), and
// the same template-facing value types for messages, tool calls and tools.
package template

import (
	"bytes"
	"encoding/json"
	"strings"
	gotemplate "text/template"
	"time"

	"gorender/api"
)

// Today is the frozen "current" date, so renderings are reproducible.
var Today = time.Date(2024, time.June, 15, 12, 0, 0, 0, time.UTC)

var funcs = gotemplate.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
	"currentDate": func(args ...string) string {
		return Today.Format("2006-01-02")
	},
	"yesterdayDate": func(args ...string) string {
		return Today.AddDate(0, 0, -1).Format("2006-01-02")
	},
	"toTypeScriptType": func(v any) string {
		if param, ok := v.(api.ToolProperty); ok {
			return param.ToTypeScriptType()
		}
		if param, ok := v.(*api.ToolProperty); ok && param != nil {
			return param.ToTypeScriptType()
		}
		return "any"
	},
}

type templateTools []templateTool

func (t templateTools) String() string {
	b, _ := json.Marshal(t)
	return string(b)
}

type templateArgs map[string]any

func (t templateArgs) String() string {
	if t == nil {
		return "{}"
	}
	b, _ := json.Marshal(t)
	return string(b)
}

type templateProperties map[string]api.ToolProperty

func (t templateProperties) String() string {
	if t == nil {
		return "{}"
	}
	b, _ := json.Marshal(t)
	return string(b)
}

type templateTool struct {
	Type     string               `json:"type"`
	Items    any                  `json:"items,omitempty"`
	Function templateToolFunction `json:"function"`
}

// String prints the tool as JSON, as api.Tool's String method does.
func (t templateTool) String() string {
	b, _ := json.Marshal(t)
	return string(b)
}

type templateToolFunction struct {
	Name        string                         `json:"name"`
	Description string                         `json:"description"`
	Parameters  templateToolFunctionParameters `json:"parameters"`
}

type templateToolFunctionParameters struct {
	Type       string             `json:"type"`
	Defs       any                `json:"$defs,omitempty"`
	Items      any                `json:"items,omitempty"`
	Required   []string           `json:"required,omitempty"`
	Properties templateProperties `json:"properties"`
}

type templateToolCall struct {
	ID       string
	Function templateToolCallFunction
}

type templateToolCallFunction struct {
	Index     int
	Name      string
	Arguments templateArgs
}

type templateMessage struct {
	Role       string
	Content    string
	Thinking   string
	Images     []api.ImageData
	ToolCalls  []templateToolCall
	ToolName   string
	ToolCallID string
}

func convertTools(tools api.Tools) templateTools {
	if tools == nil {
		return nil
	}
	out := make(templateTools, len(tools))
	for i, tool := range tools {
		out[i] = templateTool{
			Type:  tool.Type,
			Items: tool.Items,
			Function: templateToolFunction{
				Name:        tool.Function.Name,
				Description: tool.Function.Description,
				Parameters: templateToolFunctionParameters{
					Type:       tool.Function.Parameters.Type,
					Defs:       tool.Function.Parameters.Defs,
					Items:      tool.Function.Parameters.Items,
					Required:   tool.Function.Parameters.Required,
					Properties: templateProperties(tool.Function.Parameters.Properties.ToMap()),
				},
			},
		}
	}
	return out
}

func convertMessages(messages []api.Message) []*templateMessage {
	if messages == nil {
		return nil
	}
	out := make([]*templateMessage, len(messages))
	for i, msg := range messages {
		var calls []templateToolCall
		for _, tc := range msg.ToolCalls {
			calls = append(calls, templateToolCall{
				ID: tc.ID,
				Function: templateToolCallFunction{
					Index:     tc.Function.Index,
					Name:      tc.Function.Name,
					Arguments: templateArgs(tc.Function.Arguments.ToMap()),
				},
			})
		}
		out[i] = &templateMessage{
			Role:       msg.Role,
			Content:    msg.Content,
			Thinking:   msg.Thinking,
			Images:     msg.Images,
			ToolCalls:  calls,
			ToolName:   msg.ToolName,
			ToolCallID: msg.ToolCallID,
		}
	}
	return out
}

// generic decodes JSON with integers as int and other numbers as float64, so template
// literals and data compare as they would with Go-typed data.
func generic(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return numbers(v), nil
}

func numbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if !strings.ContainsAny(string(v), ".eE") {
			if i, err := v.Int64(); err == nil {
				return int(i)
			}
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i := range v {
			v[i] = numbers(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = numbers(v[k])
		}
	}
	return v
}

// Data builds the map a template executes on: Messages and Tools take Ollama's
// template-facing types, every other key keeps its generic JSON value.
func Data(raw map[string]json.RawMessage) (map[string]any, error) {
	data := make(map[string]any, len(raw))
	for k, v := range raw {
		switch k {
		case "Messages":
			var msgs []api.Message
			if err := json.Unmarshal(v, &msgs); err != nil {
				return nil, err
			}
			data[k] = convertMessages(msgs)
		case "Tools":
			var tools api.Tools
			if err := json.Unmarshal(v, &tools); err != nil {
				return nil, err
			}
			data[k] = convertTools(tools)
		default:
			g, err := generic(v)
			if err != nil {
				return nil, err
			}
			data[k] = g
		}
	}
	return data, nil
}

// Render parses text as Ollama does and executes it on data.
func Render(text string, data map[string]any) (string, error) {
	tmpl, err := gotemplate.New("").Option("missingkey=zero").Funcs(funcs).Parse(text)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		return b.String(), err
	}
	return b.String(), nil
}
