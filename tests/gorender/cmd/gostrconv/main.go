// Command gostrconv is the reference side of ollamapy's differential tests of
// ollamapy.golang: it reads one JSON array of cases on stdin and writes one JSON array of
// results, {"out": "...", "err": "..." or null}, computed by Go's strconv, encoding/json
// and time. Strings travel as hex bytes so invalid UTF-8 reaches Go intact; floats travel
// as their float64 bits so NaN, -0 and every last bit arrive exactly.
package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"time"
)

type testCase struct {
	Op     string `json:"op"`
	Hex    string `json:"hex"`
	Bits   string `json:"bits"`
	Fmt    string `json:"fmt"`
	Prec   int    `json:"prec"`
	Size   int    `json:"size"`
	Base   int    `json:"base"`
	Rune   int64  `json:"rune"`
	Source string `json:"json"`
}

type result struct {
	Out string  `json:"out"`
	Err *string `json:"err"`
}

func fail(err error) result {
	msg := err.Error()
	return result{Err: &msg}
}

func run(c testCase) result {
	raw, err := hex.DecodeString(c.Hex)
	if err != nil {
		return fail(err)
	}
	s := string(raw)
	var f float64
	if c.Bits != "" {
		bits, err := strconv.ParseUint(c.Bits, 16, 64)
		if err != nil {
			return fail(err)
		}
		f = math.Float64frombits(bits)
	}
	switch c.Op {
	case "quote":
		return result{Out: strconv.Quote(s)}
	case "quote_ascii":
		return result{Out: strconv.QuoteToASCII(s)}
	case "quote_rune":
		return result{Out: strconv.QuoteRune(rune(c.Rune))}
	case "quote_rune_ascii":
		return result{Out: strconv.QuoteRuneToASCII(rune(c.Rune))}
	case "can_backquote":
		return result{Out: strconv.FormatBool(strconv.CanBackquote(s))}
	case "format_float":
		return result{Out: strconv.FormatFloat(f, c.Fmt[0], c.Prec, c.Size)}
	case "sprint_float":
		return result{Out: fmt.Sprint(f)}
	case "parse_bool":
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fail(err)
		}
		return result{Out: strconv.FormatBool(b)}
	case "parse_int":
		n, err := strconv.ParseInt(s, c.Base, c.Size)
		if err != nil {
			return fail(err)
		}
		return result{Out: strconv.FormatInt(n, 10)}
	case "parse_uint":
		n, err := strconv.ParseUint(s, c.Base, c.Size)
		if err != nil {
			return fail(err)
		}
		return result{Out: strconv.FormatUint(n, 10)}
	case "json_string":
		b, err := json.Marshal(s)
		if err != nil {
			return fail(err)
		}
		return result{Out: string(b)}
	case "json_float":
		var v any = f
		if c.Size == 32 {
			v = float32(f)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fail(err)
		}
		return result{Out: string(b)}
	case "json_value":
		var v any
		if err := json.Unmarshal([]byte(c.Source), &v); err != nil {
			return fail(err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fail(err)
		}
		return result{Out: string(b)}
	case "parse_duration":
		d, err := time.ParseDuration(s)
		if err != nil {
			return fail(err)
		}
		return result{Out: d.String()}
	}
	return fail(fmt.Errorf("unknown op %q", c.Op))
}

func main() {
	var cases []testCase
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	results := make([]result, len(cases))
	for i, c := range cases {
		results[i] = run(c)
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
