package imgcmd

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{"0": 0, "12345": 12345, "1k": 1024, "1K": 1024, "64M": 64 << 20, "1.5G": 3 << 29, "1T": 1 << 40, "1b": 1, "2B": 2}
	for in, want := range good {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%q: %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-5", "+1", "12x", "1.5", "k", "99999999999E", "1..2M"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestSizeToStr(t *testing.T) {
	cases := map[uint64]string{0: "0 B", 1000: "0.977 KiB", 200704: "196 KiB", 1310720: "1.25 MiB", 1 << 30: "1 GiB", 777216: "759 KiB", 512: "512 B"}
	for in, want := range cases {
		if got := sizeToStr(in); got != want {
			t.Errorf("%d: %q, want %q", in, got, want)
		}
	}
}

func TestGetopt(t *testing.T) {
	opts, pos, err := getopt([]string{"-fqcow2", "a", "-o", "x=1", "--output=json", "b", "-q", "--", "-c"}, ":f:o:q", "output=")
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 4 || opts[0] != (opt{"f", "qcow2"}) || opts[1] != (opt{"o", "x=1"}) || opts[2] != (opt{"output", "json"}) || opts[3].name != "q" {
		t.Errorf("opts %v", opts)
	}
	if strings.Join(pos, " ") != "a b -c" {
		t.Errorf("pos %v", pos)
	}
	for args, want := range map[string]string{"-Z": "unrecognized option '-Z'", "-f": "missing argument for option '-f'",
		"--output": "missing argument for option '--output'", "--bogus": "unrecognized option '--bogus'"} {
		if _, _, err := getopt([]string{args}, ":f:", "output="); err == nil || err.Error() != want {
			t.Errorf("%s: %v", args, err)
		}
	}
}

// The member order qemu-img prints for an ImageInfo and an ImageCheck.
func TestQemuJSONOrder(t *testing.T) {
	var b bytes.Buffer
	type info struct {
		Filename    string `json:"filename"`
		Format      string `json:"format"`
		DirtyFlag   bool   `json:"dirty-flag"`
		ActualSize  int64  `json:"actual-size"`
		VirtualSize int64  `json:"virtual-size"`
	}
	if err := writeQemuJSON(&b, info{"r.raw", "raw", false, 4096, 1048576}); err != nil {
		t.Fatal(err)
	}
	want := "{\n    \"virtual-size\": 1048576,\n    \"filename\": \"r.raw\",\n    \"format\": \"raw\",\n    \"actual-size\": 4096,\n    \"dirty-flag\": false\n}\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	writeQemuJSON(&b, imageCheck{Filename: "c1.qcow2", Format: "qcow2", ImageEndOffset: 262144, TotalClusters: 16384})
	want = "{\n    \"image-end-offset\": 262144,\n    \"total-clusters\": 16384,\n    \"check-errors\": 0,\n    \"filename\": \"c1.qcow2\",\n    \"format\": \"qcow2\"\n}\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"nosuchcmd"}, 1, "snapvm-img: Command not found: nosuchcmd\n"},
		{[]string{"create", "-Z"}, 1, "snapvm-img: unrecognized option '-Z'\nTry 'snapvm-img --help' for more information\n"},
		{[]string{"create", "-f", "qcow2", "x.qcow2", "12x"}, 1, "snapvm-img: Invalid image size specified. You may use k, M, G, T, P or E suffixes for\nsnapvm-img: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n"},
		{[]string{"bench", "-c", "x", "f"}, 1, "snapvm-img: Invalid request count specified\n"},
		{[]string{"bench", "-d", "0", "f"}, 1, "snapvm-img: Invalid queue depth specified\n"},
		{[]string{"info", "--output=xml", "f"}, 1, "snapvm-img: --output must be used with human or json as argument.\n"},
		{[]string{"compare", "a"}, 1, "snapvm-img: Expecting two image file names\nTry 'snapvm-img --help' for more information\n"},
		{[]string{"snapshot", "-l", "-c", "x", "f"}, 1, "snapvm-img: Cannot mix '-l', '-a', '-c', '-d'\nTry 'snapvm-img --help' for more information\n"},
	} {
		var out, errb bytes.Buffer
		code := Main(c.args, &out, &errb)
		if code != c.code || errb.String() != c.msg || out.Len() != 0 {
			t.Errorf("%v: code %d stderr %q stdout %q", c.args, code, errb.String(), out.String())
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1", "1.5G", "12x", "99999999999999999999", "0.0001k", "E"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := parseSize(s); err == nil && n < 0 {
			t.Errorf("%q gave negative %d", s, n)
		}
	})
}

func FuzzGetopt(f *testing.F) {
	f.Add("-fqcow2 a --output=json -- -x")
	f.Add("--output -o")
	f.Fuzz(func(t *testing.T, s string) {
		_, _, _ = getopt(strings.Fields(s), ":f:o:qh", "output=", "shrink")
		_, _ = parseOptList(s)
	})
}
