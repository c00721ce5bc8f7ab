package block

import (
	"encoding/json"
	"testing"
)

func TestParseOptionsJSONErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"node-name":"x"}`, "Parameter 'driver' is missing"},
		{`{"driver":"file","filename":"f","node-name":"x","read-only":"yes"}`, "Invalid parameter type for 'read-only', expected: boolean"},
		{`{"driver":"bogus","node-name":"z"}`, "Parameter 'driver' does not accept value 'bogus'"},
		{`{"driver":"file","node-name":"z"}`, "Parameter 'filename' is missing"},
		{`{"driver":"raw","file":{"driver":"file","filename":"r"},"node-name":"z","extra":1}`, "Parameter 'extra' is unexpected"},
		{`{"driver":"raw","file":{"driver":"file","filename":"r","bad":1},"node-name":"z"}`, "Parameter 'file.bad' is unexpected"},
		{`{"driver":"raw","file":{"filename":"r"},"node-name":"z"}`, "Parameter 'file.driver' is missing"},
		{`{"driver":"raw","file":{"driver":"file","filename":"r"},"node-name":"y2","discard":"bad"}`, "Parameter 'discard' does not accept value 'bad'"},
		{`{"driver":"raw","file":5,"node-name":"y3"}`, "Invalid parameter type for 'file', expected: BlockdevRef"},
		{`{"driver":"raw","file":null,"node-name":"y3"}`, "Invalid parameter type for 'file', expected: BlockdevRef"},
		{`{"driver":"raw","node-name":"y3"}`, "Parameter 'file' is missing"},
		{`{"driver":"qcow2","file":"f","backing":5,"node-name":"y4"}`, "Invalid parameter type for 'backing', expected: BlockdevRefOrNull"},
		{`{"driver":"file","filename":5,"node-name":"y5"}`, "Invalid parameter type for 'filename', expected: string"},
		{`{"driver":"file","filename":"r","node-name":5}`, "Invalid parameter type for 'node-name', expected: string"},
		{`{"driver":"raw","file":"y","backing":"y","node-name":"y8"}`, "Parameter 'backing' is unexpected"},
		{`{"driver":"file","filename":"r","node-name":"x","cache":{"direct":1}}`, "Invalid parameter type for 'cache.direct', expected: boolean"},
		{`[1]`, "Invalid parameter type for 'arguments', expected: object"},
	}
	for _, c := range cases {
		_, err := ParseOptionsJSON(json.RawMessage(c.in))
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: got %v, want %q", c.in, err, c.want)
		}
	}
}

func TestParseOptionsJSON(t *testing.T) {
	o, err := ParseOptionsJSON(json.RawMessage(`{"driver":"qcow2","node-name":"d0","read-only":true,
		"file":{"driver":"file","filename":"a.qcow2","node-name":"f0"},"backing":null,
		"cache":{"direct":false,"no-flush":true},"detect-zeroes":"unmap","discard":"unmap"}`))
	if err != nil {
		t.Fatal(err)
	}
	if o.Driver != "qcow2" || o.NodeName != "d0" || o.ReadOnly == nil || !*o.ReadOnly {
		t.Errorf("bad root: %+v", o)
	}
	if o.File == nil || o.File.Options == nil || o.File.Options.Filename != "a.qcow2" || o.File.Options.NodeName != "f0" {
		t.Errorf("bad file: %+v", o.File)
	}
	if o.Backing == nil || !o.Backing.Null {
		t.Errorf("backing null not recognised: %+v", o.Backing)
	}
	if *o.CacheNoFlush != true || o.DetectZeroes != "unmap" || o.Discard != "unmap" {
		t.Errorf("bad extras: %+v", o)
	}
	o, err = ParseOptionsJSON(json.RawMessage(`{"driver":"qcow2","node-name":"d1","file":"f0","backing":"b0"}`))
	if err != nil || o.File.NodeName != "f0" || o.Backing.NodeName != "b0" {
		t.Fatalf("refs by name: %+v %v", o, err)
	}
}

func TestParseOptionsArg(t *testing.T) {
	o, err := ParseOptionsArg("driver=qcow2,node-name=d0,file.driver=file,file.filename=a,,b.qcow2,read-only=on")
	if err != nil {
		t.Fatal(err)
	}
	if o.Driver != "qcow2" || o.NodeName != "d0" || !*o.ReadOnly || o.File.Options.Filename != "a,b.qcow2" {
		t.Errorf("got %+v file %+v", o, o.File.Options)
	}
	o, err = ParseOptionsArg("driver=qcow2,node-name=d0,file=f0,backing=")
	if err != nil || o.File.NodeName != "f0" || !o.Backing.Null {
		t.Errorf("refs: %+v %v", o, err)
	}
	// backing=null on the command line names a node called "null", as in QEMU.
	o, err = ParseOptionsArg("driver=qcow2,node-name=d0,file=f0,backing=null")
	if err != nil || o.Backing.NodeName != "null" {
		t.Errorf("backing=null: %+v %v", o, err)
	}
	o, err = ParseOptionsArg("driver=file,filename=r,node-name=r,node-name=s")
	if err != nil || o.NodeName != "s" {
		t.Errorf("repeated key: %+v %v", o, err)
	}
	errs := []struct{ in, want string }{
		{"driver=file,filename=r,node-name=r,read-only=maybe", "Parameter 'read-only' expects 'on' or 'off'"},
		{"driver=file,filename=r,node-name=r,bogus=1", "Parameter 'bogus' is unexpected"},
		{"node-name=r", "Parameter 'driver' is missing"},
		{"driver=file,filename=r,node-name=r,file=x", "Parameter 'file' is unexpected"},
		{"driver=file,filename=r,node-name=r,filename.x=3", "Parameters 'filename.*' used inconsistently"},
		{"driver=file,foo", "Expected '=' after parameter 'foo'"},
		{"driver=raw,file.driver=file,file.filename=r,file.read-only=x", "Parameter 'file.read-only' expects 'on' or 'off'"},
	}
	for _, c := range errs {
		_, err := ParseOptionsArg(c.in)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: got %v, want %q", c.in, err, c.want)
		}
	}
}

func FuzzParseOptionsArg(f *testing.F) {
	for _, s := range []string{"driver=qcow2,node-name=d0,file.driver=file,file.filename=x", "a.b.c=1,a.b=2", ",,=,", "driver=raw,file=x,backing="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseOptionsArg(s)
	})
}

func FuzzParseOptionsJSON(f *testing.F) {
	for _, s := range []string{`{"driver":"qcow2","node-name":"d0","file":{"driver":"file","filename":"x"},"backing":null}`, `{"driver":"raw","file":"f"}`, `null`, `{"cache":[]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseOptionsJSON(json.RawMessage(s))
	})
}
