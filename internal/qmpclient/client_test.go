package qmpclient

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/job"
	"github.com/snapvm/snapvm/qmp"
)

type saveArgs struct {
	JobID   string   `json:"job-id"`
	Tag     string   `json:"tag"`
	VMState string   `json:"vmstate"`
	Devices []string `json:"devices"`
}

type fileArgs struct {
	Driver string `json:"driver"`
	File   struct {
		Filename string `json:"filename"`
	} `json:"file"`
	Count *int `json:"count,omitempty"`
}

// startServer runs a QMP server with a job-creating command on a unix socket.
func startServer(t *testing.T) string {
	path, _ := startServers(t)
	return path
}

// startServers is startServer plus a tcp listener on the same server; it returns both
// addresses in snapvm-qmp's spelling (path, tcp:HOST:PORT).
func startServers(t *testing.T) (string, string) {
	t.Helper()
	s := qmp.NewServer(qmp.ServerOptions{Package: "snapvm test", Logger: slog.New(slog.DiscardHandler)})
	jobs := job.NewManager(s.Emit)
	qmp.Register(s, "snapshot-save", func(ctx context.Context, a saveArgs) (struct{}, error) {
		_, err := jobs.Create(a.JobID, "snapshot-save", job.Options{ManualDismiss: true}, func(ctx context.Context, j *job.Job) error {
			j.SetTotal(4)
			for i := 0; i < 4; i++ {
				time.Sleep(20 * time.Millisecond)
				j.Progress(1)
			}
			if a.Tag == "bad" {
				return errors.New("Snapshot 'bad' already exists")
			}
			return nil
		})
		return struct{}{}, err
	})
	qmp.Register(s, "echo-file", func(ctx context.Context, a fileArgs) (fileArgs, error) { return a, nil })
	qmp.Register(s, "query-jobs", func(context.Context, struct{}) ([]job.Info, error) { return jobs.Query(), nil })
	qmp.Register(s, "job-dismiss", func(_ context.Context, a struct {
		ID string `json:"id"`
	}) (struct{}, error) {
		return struct{}{}, jobs.Dismiss(a.ID)
	})
	qmp.Register(s, "human-monitor-command", func(_ context.Context, a struct {
		CommandLine string `json:"command-line"`
	}) (string, error) {
		return "VM status: running\r\n", nil
	})
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := qmp.Listen("unix:" + path + ",server=on,wait=off")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	lt, err := qmp.Listen("tcp:127.0.0.1:0,server=on,wait=off")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lt)
	t.Cleanup(func() { s.Close() })
	return path, "tcp:" + lt.Addr().String()
}

func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestOneShot(t *testing.T) {
	path, tcp := startServers(t)
	for _, target := range []string{path, "unix:" + path, tcp} {
		code, out, _ := run(t, "", target, "query-version")
		if code != 0 || !strings.Contains(out, `"package": "snapvm test"`) {
			t.Fatalf("query-version on %s: %d %q", target, code, out)
		}
	}
	code, out, errs := run(t, "", "unix:/nonexistent/sock", "query-version")
	if code != 1 || !strings.Contains(errs, "snapvm-qmp: unix:/nonexistent/sock:") {
		t.Fatalf("bad socket: %d %q %q", code, out, errs)
	}
	code, out, _ = run(t, "", "unix:"+path, "human-monitor-command", "command-line=info status")
	if code != 0 || out != "VM status: running\n" {
		t.Fatalf("hmp: %d %q", code, out)
	}
	// Errors: exit 1 and the description on stderr.
	code, _, errs = run(t, "", path, "no-such-command")
	if code != 1 || !strings.Contains(errs, "The command no-such-command has not been found (CommandNotFound)") {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
	// Schema-guided values: filename=1 stays a string, count=3 is a number, dotted keys nest.
	code, out, errs = run(t, "", path, "echo-file", "driver=qcow2", "file.filename=1", "count=3")
	if code != 0 || !strings.Contains(out, `"filename": "1"`) || !strings.Contains(out, `"count": 3`) {
		t.Fatalf("echo-file: %d %q %q", code, out, errs)
	}
	code, _, errs = run(t, "", path, "echo-file", "driver")
	if code != 2 || !strings.Contains(errs, "not key=value") {
		t.Fatalf("bad argument: %d %q", code, errs)
	}
}

func TestWaitJob(t *testing.T) {
	path := startServer(t)
	code, out, errs := run(t, "", "--wait", path, "snapshot-save", "job-id=s1", "tag=1", "vmstate=d0", "devices=d0")
	if code != 0 || out != "job s1 completed\n" {
		t.Fatalf("wait: %d %q %q", code, out, errs)
	}
	if !strings.Contains(errs, "4/4") {
		t.Errorf("no progress bar in %q", errs)
	}
	// The job was dismissed: the id is free again.
	code, out, errs = run(t, "", path, "--wait", "snapshot-save", "job-id=s1", "tag=bad", "vmstate=d0", `devices=["d0"]`)
	if code != 1 || !strings.Contains(errs, "job s1 failed: Snapshot 'bad' already exists") {
		t.Fatalf("failing job: %d %q %q", code, out, errs)
	}
	code, out, _ = run(t, "", path, "query-jobs")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("jobs left: %q", out)
	}
	// Job creation errors are plain error answers.
	code, _, errs = run(t, "", "--wait", path, "snapshot-save", "job-id=1bad", "tag=t", "vmstate=d0", `devices=["d0"]`)
	if code != 1 || !strings.Contains(errs, "Invalid job ID '1bad'") {
		t.Fatalf("bad id: %d %q", code, errs)
	}
}

func TestInteractive(t *testing.T) {
	path := startServer(t)
	in := strings.Join([]string{
		`query-version`,
		`{"execute": "human-monitor-command", "arguments": {"command-line": "info status"}, "id": 7}`,
		`snapshot-save job-id=j tag="two words" vmstate=d0 devices=["d0", "d1"]`,
		`bogus`,
		`echo-file driver`,
		``,
	}, "\n")
	code, out, _ := run(t, in, path)
	if code != 1 {
		t.Errorf("exit %d, want 1 after an error answer", code)
	}
	for _, want := range []string{
		`"package": "snapvm test"`,
		"VM status: running\n",
		"error: The command bogus has not been found (CommandNotFound)",
		"error: argument \"driver\" is not key=value",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestParseLine(t *testing.T) {
	schema := &Schema{
		cmdArgs: map[string]string{"snapshot-save": "1"},
		members: map[string]map[string]string{"1": {"tag": "str", "job-id": "str", "devices": "[str]", "names": "[str]"}},
		strs:    map[string]bool{"str": true},
		arrays:  map[string]string{"[str]": "str"},
	}
	req, err := ParseLine(`snapshot-save job-id=j tag=123 devices=["a", "b"] names=x,y file.driver=file file.x=true`, schema)
	if err != nil {
		t.Fatal(err)
	}
	args := req["arguments"].(map[string]any)
	if args["tag"] != "123" || args["job-id"] != "j" {
		t.Errorf("args %v", args)
	}
	if d, ok := args["devices"].([]any); !ok || len(d) != 2 {
		t.Errorf("devices %v", args["devices"])
	}
	if n, ok := args["names"].([]any); !ok || len(n) != 2 || n[1] != "y" {
		t.Errorf("names %v", args["names"])
	}
	if f := args["file"].(map[string]any); f["driver"] != "file" || f["x"] != true {
		t.Errorf("file %v", f)
	}
	if _, err := ParseLine(`x a=1 a=2`, nil); err == nil {
		t.Error("duplicate key accepted")
	}
	if _, err := ParseLine(`x a=1 a.b=2`, nil); err == nil {
		t.Error("value and object accepted")
	}
	if _, err := ParseLine(`x a="unterminated`, nil); err == nil {
		t.Error("unterminated string accepted")
	}
}

func TestTarget(t *testing.T) {
	for _, tc := range [][3]string{
		{"/tmp/x.sock", "unix", "/tmp/x.sock"},
		{"unix:/tmp/x.sock", "unix", "/tmp/x.sock"},
		{"tcp:127.0.0.1:4444", "tcp", "127.0.0.1:4444"},
	} {
		if n, a := Target(tc[0]); n != tc[1] || a != tc[2] {
			t.Errorf("%s: %s %s", tc[0], n, a)
		}
	}
}
