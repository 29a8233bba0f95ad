// Command gorender is the reference side of ollamapy's differential template tests: it
// reads one JSON request per line on stdin, {"template": "...", "data": {...}}, renders
// the template with Go's text/template as Ollama does, and writes one JSON line back,
// {"output": "...", "error": "..." or null}.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"gorender/template"
)

type request struct {
	Template string                     `json:"template"`
	Data     map[string]json.RawMessage `json:"data"`
}

type response struct {
	Output string  `json:"output"`
	Error  *string `json:"error"`
}

func render(req request) (out response) {
	defer func() {
		if r := recover(); r != nil {
			msg := fmt.Sprintf("panic: %v", r)
			out = response{Error: &msg}
		}
	}()
	var data map[string]any
	if req.Data != nil {
		var err error
		if data, err = template.Data(req.Data); err != nil {
			msg := "bad data: " + err.Error()
			return response{Error: &msg}
		}
	}
	output, err := template.Render(req.Template, data)
	if err != nil {
		msg := err.Error()
		return response{Output: output, Error: &msg}
	}
	return response{Output: output}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			msg := "bad request: " + err.Error()
			enc.Encode(response{Error: &msg})
		} else {
			enc.Encode(render(req))
		}
		out.Flush()
	}
}
