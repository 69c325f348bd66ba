// Command porcupine-check runs Porcupine's linearizability checker on one history
// file, for benchmarks/linearizability_vs_porcupine.py, which builds it against a
// local copy of github.com/anishathalye/porcupine (the go.mod it generates replaces
// the module with that directory) and runs it beside `distcheck linearizable` on
// the same files.
//
//	porcupine-check -format kv|etcd FILE
//
// It reads the two formats distcheck reads for these files:
//
//   - kv: Porcupine's key-value logs, one EDN map per line,
//     {:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"};
//     get, put and append on string values, a missing key reading as "".
//     The model is partitioned by key, as Porcupine's own key-value model is.
//   - etcd: Jepsen's etcd log lines, INFO  jepsen.util - 3	:invoke	:read	nil;
//     read, write and cas on one register that starts as nil.
//
// Outcomes, as distcheck reads them (docs/histories.md): :ok completes an
// operation with its result; :fail means it did not take effect, so it is left
// out, except a cas, whose :fail is the answer false; :info, or no completion at
// all, means it may or may not have taken effect: it stays open until after the
// last event and its result is not checked.
//
// It prints one JSON object on one line: the file, the format, the number of
// operations, the verdict (linearizable true or false) and two times in seconds:
// parse_seconds (reading the file into porcupine.Operation values) and
// check_seconds (the porcupine.CheckOperations call alone).  Bad input or usage:
// one line on stderr and exit code 2.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// An operation's input: what it was asked to do.
type input struct {
	op       string // get/put/append (kv), read/write/cas (etcd)
	key      string // kv only
	value    string // put/append/write: the value; cas: the new value
	expected string // cas: the value it expects
}

// An operation's output: what its client saw.  An operation that never completed
// has unknown set, and the model accepts any step for it.
type output struct {
	value   string // get/read: the value read ("nil" for an absent etcd value)
	ok      bool   // cas: whether it took effect
	unknown bool
}

// The events of one client's operation, paired up as the file is read.
type pending struct {
	in   input
	call int64
}

// history collects operations from events: invocations wait per process for
// their completion, and whatever is still open at the end gets a return after
// every event.
type history struct {
	open map[string]pending
	ops  []porcupine.Operation
	ids  map[string]int
	time int64
}

func newHistory() *history {
	return &history{open: map[string]pending{}, ids: map[string]int{}}
}

func (h *history) clientID(process string) int {
	id, ok := h.ids[process]
	if !ok {
		id = len(h.ids)
		h.ids[process] = id
	}
	return id
}

func (h *history) invoke(process string, in input) error {
	if _, busy := h.open[process]; busy {
		return fmt.Errorf("process %s invokes an operation while its last one is open", process)
	}
	h.time++
	h.open[process] = pending{in, h.time}
	return nil
}

// complete ends process's open operation; keep false drops it (it did not take effect).
func (h *history) complete(process string, keep bool, out output) error {
	p, ok := h.open[process]
	if !ok {
		return fmt.Errorf("a completion for process %s, which has no open operation", process)
	}
	delete(h.open, process)
	h.time++
	if keep {
		h.ops = append(h.ops, porcupine.Operation{
			ClientId: h.clientID(process), Input: p.in, Call: p.call, Output: out, Return: h.time,
		})
	}
	return nil
}

// abandon leaves process's open operation open to the end (:info): the process
// may go on with new operations, so it is forgotten here and finished by finish.
func (h *history) abandon(process string) error {
	p, ok := h.open[process]
	if !ok {
		return fmt.Errorf("an :info for process %s, which has no open operation", process)
	}
	delete(h.open, process)
	h.ops = append(h.ops, porcupine.Operation{
		ClientId: h.clientID(process), Input: p.in, Call: p.call, Output: output{unknown: true}, Return: -1,
	})
	return nil
}

func (h *history) finish() []porcupine.Operation {
	end := h.time + 1
	for process, p := range h.open {
		h.ops = append(h.ops, porcupine.Operation{
			ClientId: h.clientID(process), Input: p.in, Call: p.call, Output: output{unknown: true}, Return: end,
		})
	}
	for i := range h.ops {
		if h.ops[i].Return < 0 {
			h.ops[i].Return = end
		}
	}
	return h.ops
}

// ------------------------------------------------------------------ key-value

var kvLine = regexp.MustCompile(
	`^\{:process (\d+), :type :(invoke|ok|fail|info), :f :(get|put|append), :key "([^"\\]*)", :value (nil|"[^"\\]*")\}$`)

func readKV(path string) ([]porcupine.Operation, error) {
	h := newHistory()
	err := eachLine(path, func(number int, line string) error {
		m := kvLine.FindStringSubmatch(line)
		if m == nil {
			return fmt.Errorf("line %d: expected {:process 0, :type :invoke, :f :get, :key \"k\", :value nil}", number)
		}
		process, kind, f, key, value := m[1], m[2], m[3], m[4], strings.Trim(m[5], `"`)
		if m[5] == "nil" {
			value = ""
		}
		switch kind {
		case "invoke":
			return h.invoke(process, input{op: f, key: key, value: value})
		case "ok":
			return h.complete(process, true, output{value: value})
		case "fail":
			return h.complete(process, false, output{})
		default:
			return h.abandon(process)
		}
	})
	return h.finish(), err
}

func kvModel() porcupine.Model {
	return porcupine.Model{
		// One register per key: linearizability is local, so each key is checked alone.
		Partition: func(ops []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range ops {
				key := op.Input.(input).key
				if _, seen := byKey[key]; !seen {
					keys = append(keys, key)
				}
				byKey[key] = append(byKey[key], op)
			}
			parts := make([][]porcupine.Operation, 0, len(keys))
			for _, key := range keys {
				parts = append(parts, byKey[key])
			}
			return parts
		},
		Init: func() interface{} { return "" },
		Step: func(state, in, out interface{}) (bool, interface{}) {
			st, i, o := state.(string), in.(input), out.(output)
			switch i.op {
			case "get":
				return o.unknown || o.value == st, st
			case "put":
				return true, i.value
			default: // append
				return true, st + i.value
			}
		},
		Equal: func(a, b interface{}) bool { return a.(string) == b.(string) },
	}
}

// ----------------------------------------------------------------------- etcd

var (
	etcdLine  = regexp.MustCompile(`jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(read|write|cas)\s+(.*?)\s*$`)
	casValues = regexp.MustCompile(`^\[(\S+)\s+(\S+)\]$`)
)

func readEtcd(path string) ([]porcupine.Operation, error) {
	h := newHistory()
	err := eachLine(path, func(number int, line string) error {
		if !strings.Contains(line, "jepsen.util") {
			return nil // the rest of Jepsen's log
		}
		m := etcdLine.FindStringSubmatch(line)
		if m == nil {
			return nil // the nemesis and other records that are not a client's operation
		}
		process, kind, f, value := m[1], m[2], m[3], m[4]
		switch kind {
		case "invoke":
			in := input{op: f, value: value}
			if f == "cas" {
				pair := casValues.FindStringSubmatch(value)
				if pair == nil {
					return fmt.Errorf("line %d: a cas takes [expected new], not %q", number, value)
				}
				in.expected, in.value = pair[1], pair[2]
			}
			return h.invoke(process, in)
		case "ok":
			return h.complete(process, true, output{value: value, ok: true})
		case "fail":
			// A cas that failed answered false; any other :fail did not take effect.
			return h.complete(process, f == "cas", output{ok: false})
		default:
			return h.abandon(process)
		}
	})
	return h.finish(), err
}

func etcdModel() porcupine.Model {
	return porcupine.Model{
		Init: func() interface{} { return "nil" },
		Step: func(state, in, out interface{}) (bool, interface{}) {
			st, i, o := state.(string), in.(input), out.(output)
			switch i.op {
			case "read":
				return o.unknown || o.value == st, st
			case "write":
				return true, i.value
			default: // cas
				if i.expected == st {
					return o.unknown || o.ok, i.value
				}
				return o.unknown || !o.ok, st
			}
		},
		Equal: func(a, b interface{}) bool { return a.(string) == b.(string) },
	}
}

// -------------------------------------------------------------------- the run

func eachLine(path string, do func(number int, line string) error) error {
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 1<<16), 1<<24)
	number := 0
	for scanner.Scan() {
		number++
		line := strings.TrimRight(scanner.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := do(number, line); err != nil {
			return err
		}
	}
	return scanner.Err()
}

type report struct {
	File         string  `json:"file"`
	Format       string  `json:"format"`
	Operations   int     `json:"operations"`
	Linearizable bool    `json:"linearizable"`
	ParseSeconds float64 `json:"parse_seconds"`
	CheckSeconds float64 `json:"check_seconds"`
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "porcupine-check: "+message)
	os.Exit(2)
}

func main() {
	format := flag.String("format", "", "the history's format: kv or etcd")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: porcupine-check -format kv|etcd FILE")
	}
	flag.Parse()
	if flag.NArg() != 1 {
		fail("expected one history file: porcupine-check -format kv|etcd FILE")
	}
	path := flag.Arg(0)
	var read func(string) ([]porcupine.Operation, error)
	var model porcupine.Model
	switch *format {
	case "kv":
		read, model = readKV, kvModel()
	case "etcd":
		read, model = readEtcd, etcdModel()
	default:
		fail(fmt.Sprintf("-format is %q; expected kv or etcd", *format))
	}
	started := time.Now()
	ops, err := read(path)
	parsed := time.Since(started)
	if err != nil {
		var pathErr *os.PathError
		if errors.As(err, &pathErr) {
			fail(fmt.Sprintf("cannot read %s: %v", path, pathErr.Err))
		}
		fail(fmt.Sprintf("%s: %v", path, err))
	}
	if len(ops) == 0 {
		fail(fmt.Sprintf("%s: no operations (read as %s)", path, *format))
	}
	started = time.Now()
	ok := porcupine.CheckOperations(model, ops)
	checked := time.Since(started)
	out, _ := json.Marshal(report{path, *format, len(ops), ok, parsed.Seconds(), checked.Seconds()})
	fmt.Println(string(out))
}
