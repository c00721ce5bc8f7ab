package qmp

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestSchemaGolden pins query-qmp-schema for the test command set.
func TestSchemaGolden(t *testing.T) {
	s, _ := newTestServer(t)
	v, err := ToValue(s.Schema())
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for i := range v.Items {
		sb.WriteString(v.Items[i].String())
		sb.WriteString("\n")
	}
	got := sb.String()
	const golden = "testdata/schema.golden.json"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("schema changed; run go test ./qmp -run TestSchemaGolden -update and review the diff\n%s", got)
	}
}

func TestQueryCommandsAndSchemaOverQMP(t *testing.T) {
	s, _ := newTestServer(t)
	c := dial(t, s)
	c.negotiate()
	c.send(`{"execute": "query-commands"}`)
	got := c.recv()
	for _, n := range []string{"qmp_capabilities", "query-version", "query-commands", "query-qmp-schema", "test-save"} {
		if !strings.Contains(got, `{"name": "`+n+`"}`) {
			t.Errorf("query-commands lacks %s: %s", n, got)
		}
	}
	c.send(`{"execute": "query-qmp-schema"}`)
	got = c.recv()
	for _, want := range []string{
		`{"name": "test-save", "meta-type": "command", "arg-type": "`,
		`{"name": "TEST_EVENT", "meta-type": "event", "arg-type": "`,
		`{"name": "mode", "type": "`,
		`"values": ["existing", "absolute-paths"]`,
		`{"name": "str", "meta-type": "builtin", "json-type": "string"}`,
		`{"name": "[str]", "meta-type": "array", "element-type": "str"}`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("schema lacks %s", want)
		}
	}
}
