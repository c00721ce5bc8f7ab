package qmpclient

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/peterh/liner"
	"github.com/schollz/progressbar/v3"
)

const usage = `usage: snapvm-qmp [--wait] SOCKET [COMMAND [key=value ...]]

SOCKET is a unix socket path, unix:PATH or tcp:HOST:PORT.
Without COMMAND: an interactive shell (history, tab completion) that prints answers and
events. Lines are "command key=value ..." or a raw JSON object.
With COMMAND: run it once, print the return value, exit 1 on an error answer.
Values are JSON when they parse (devices=["d0"], count=3), strings otherwise
(tag=before-upgrade); dotted keys build objects (file.filename=disk.qcow2).

  --wait   when the command starts a job (it has job-id=...), follow the job to its end
           with a progress bar, print its error if it failed (exit 1), and dismiss it
`

// Main is snapvm-qmp. It returns the process exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	wait := false
	var pos []string
	for i, a := range args {
		if len(pos) >= 2 {
			pos = append(pos, args[i:]...)
			break
		}
		switch a {
		case "--wait", "-wait", "-w":
			wait = true
		case "-h", "--help", "-help":
			fmt.Fprint(stdout, usage)
			return 0
		default:
			if strings.HasPrefix(a, "-") && len(pos) == 0 {
				fmt.Fprintf(stderr, "snapvm-qmp: unknown option %s\n%s", a, usage)
				return 2
			}
			pos = append(pos, a)
		}
	}
	if len(pos) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	c, err := Dial(pos[0], 10*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "snapvm-qmp: %s: %v\n", pos[0], err)
		return 1
	}
	defer c.Close()
	if len(pos) == 1 {
		return interactive(c, stdin, stdout, stderr)
	}
	schema := LoadSchema(c)
	cmd := pos[1]
	argsObj, err := ParseArgs(cmd, pos[2:], schema)
	if err != nil {
		fmt.Fprintf(stderr, "snapvm-qmp: %v\n", err)
		return 2
	}
	req := map[string]any{"execute": cmd}
	if len(argsObj) > 0 {
		req["arguments"] = argsObj
	}
	resp, err := c.Send(req)
	if err != nil {
		fmt.Fprintf(stderr, "snapvm-qmp: %v\n", err)
		return 1
	}
	if resp.Err != nil {
		fmt.Fprintf(stderr, "snapvm-qmp: %s (%s)\n", resp.Err.Desc, resp.Err.Class)
		return 1
	}
	jobID, isJob := argsObj["job-id"].(string)
	if !(wait && isJob) {
		printReturn(stdout, resp.Return)
		return 0
	}
	jobErr, err := FollowJob(c, jobID, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "snapvm-qmp: following job %s: %v\n", jobID, err)
		return 1
	}
	if jobErr != "" {
		fmt.Fprintf(stderr, "snapvm-qmp: job %s failed: %s\n", jobID, jobErr)
		return 1
	}
	fmt.Fprintf(stdout, "job %s completed\n", jobID)
	return 0
}

// printReturn prints a string return (HMP output) as text, anything else as indented JSON.
func printReturn(w io.Writer, ret json.RawMessage) {
	var s string
	if json.Unmarshal(ret, &s) == nil {
		fmt.Fprint(w, strings.ReplaceAll(s, "\r\n", "\n"))
		return
	}
	var buf bytes.Buffer
	if json.Indent(&buf, ret, "", "  ") != nil {
		buf.Reset()
		buf.Write(ret)
	}
	buf.WriteByte('\n')
	w.Write(buf.Bytes())
}

// jobInfo is the part of query-jobs the client reads.
type jobInfo struct {
	ID              string  `json:"id"`
	Status          string  `json:"status"`
	CurrentProgress int64   `json:"current-progress"`
	TotalProgress   int64   `json:"total-progress"`
	Error           *string `json:"error"`
}

func queryJob(c *Client, id string) (jobInfo, bool, error) {
	raw, err := c.Execute("query-jobs", nil)
	if err != nil {
		return jobInfo{}, false, err
	}
	var jobs []jobInfo
	if err := json.Unmarshal(raw, &jobs); err != nil {
		return jobInfo{}, false, err
	}
	for _, j := range jobs {
		if j.ID == id {
			return j, true, nil
		}
	}
	return jobInfo{}, false, nil
}

// FollowJob waits for job id to conclude, drawing a progress bar on progress from
// query-jobs' current/total, then dismisses it. It returns the job's error text ("" on
// success). JOB_STATUS_CHANGE events wake it up at once; query-jobs is polled between
// them for progress.
func FollowJob(c *Client, id string, progress io.Writer) (string, error) {
	var bar *progressbar.ProgressBar
	defer func() {
		if bar != nil {
			bar.Finish()
			fmt.Fprintln(progress)
		}
	}()
	for {
		info, found, err := queryJob(c, id)
		if err != nil {
			return "", err
		}
		if !found {
			return "", errors.New("the job is gone (was it dismissed automatically?)")
		}
		if info.TotalProgress > 0 {
			if bar == nil {
				bar = progressbar.NewOptions64(info.TotalProgress,
					progressbar.OptionSetWriter(progress),
					progressbar.OptionSetDescription(id),
					progressbar.OptionSetWidth(30),
					progressbar.OptionShowCount(),
					progressbar.OptionThrottle(50*time.Millisecond))
			} else if bar.GetMax64() != info.TotalProgress {
				bar.ChangeMax64(info.TotalProgress)
			}
			bar.Set64(info.CurrentProgress)
		}
		if info.Status == "concluded" {
			if _, err := c.Execute("job-dismiss", map[string]string{"id": id}); err != nil {
				return "", fmt.Errorf("dismissing: %w", err)
			}
			if info.Error != nil {
				return *info.Error, nil
			}
			return "", nil
		}
		if c.Closed() {
			return "", errors.New("connection closed")
		}
		c.NextEvent(200 * time.Millisecond) // any event, or a tick, triggers a new look
	}
}

// lineReader is where the shell's lines come from: liner on a terminal, plain lines
// otherwise (pipes, tests).
type lineReader interface {
	Prompt(string) (string, error)
	AppendHistory(string)
	Close() error
}

type plainReader struct{ s *bufio.Scanner }

func (p plainReader) Prompt(string) (string, error) {
	if p.s.Scan() {
		return p.s.Text(), nil
	}
	if err := p.s.Err(); err != nil {
		return "", err
	}
	return "", io.EOF
}
func (plainReader) AppendHistory(string) {}
func (plainReader) Close() error         { return nil }

func historyPath() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".snapvm_qmp_history")
}

func interactive(c *Client, stdin io.Reader, stdout, stderr io.Writer) int {
	schema := LoadSchema(c)
	var lr lineReader
	f, isFile := stdin.(*os.File)
	if isFile && f == os.Stdin && liner.TerminalSupported() && isTerminal(f) {
		l := liner.NewLiner()
		l.SetCtrlCAborts(true)
		names := schema.Commands()
		sort.Strings(names)
		l.SetCompleter(func(line string) []string {
			if strings.Contains(line, " ") {
				return nil
			}
			var out []string
			for _, n := range names {
				if strings.HasPrefix(n, line) {
					out = append(out, n)
				}
			}
			return out
		})
		if p := historyPath(); p != "" {
			if hf, err := os.Open(p); err == nil {
				l.ReadHistory(hf)
				hf.Close()
			}
			defer func() {
				if hf, err := os.Create(p); err == nil {
					l.WriteHistory(hf)
					hf.Close()
				}
			}()
		}
		lr = l
		var g struct {
			Version struct {
				Qemu    struct{ Major, Minor, Micro int } `json:"qemu"`
				Package string                            `json:"package"`
			} `json:"version"`
		}
		json.Unmarshal(c.Greeting, &g)
		fmt.Fprintf(stdout, "Connected to QMP %d.%d.%d (%s). Type a command, \"help\" or Ctrl-D.\n",
			g.Version.Qemu.Major, g.Version.Qemu.Minor, g.Version.Qemu.Micro, g.Version.Package)
	} else {
		lr = plainReader{bufio.NewScanner(stdin)}
	}
	defer lr.Close()
	// Events are printed as they come while the shell waits for input, and before
	// the answer of a command that they preceded; printMu keeps that order.
	out := &syncWriter{w: stdout}
	printEvents := func() { // Preconditions: out.mu held.
		for {
			ev, ok := c.NextEvent(0)
			if !ok {
				return
			}
			out.w.Write(append(ev.Raw, '\n'))
		}
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if c.WaitEvent(100 * time.Millisecond) {
				out.mu.Lock()
				printEvents()
				out.mu.Unlock()
			} else if c.Closed() {
				return
			}
		}
	}()
	status := 0
	for {
		line, err := lr.Prompt("(snapvm) ")
		if err != nil {
			if errors.Is(err, liner.ErrPromptAborted) {
				continue
			}
			break
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		lr.AppendHistory(line)
		if line == "help" {
			fmt.Fprintf(out, "commands: %s\n", strings.Join(sortedCopy(schema.Commands()), " "))
			continue
		}
		if line == "exit" {
			break
		}
		req, err := ParseLine(line, schema)
		if err != nil {
			fmt.Fprintf(out, "error: %v\n", err)
			status = 1
			continue
		}
		resp, err := c.Send(req)
		if err != nil {
			fmt.Fprintf(out, "error: %v\n", err)
			return 1
		}
		if resp.Err != nil {
			fmt.Fprintf(out, "error: %s (%s)\n", resp.Err.Desc, resp.Err.Class)
			status = 1
			continue
		}
		var buf bytes.Buffer
		printReturn(&buf, resp.Return)
		out.mu.Lock()
		printEvents()
		out.w.Write(buf.Bytes())
		out.mu.Unlock()
	}
	return status
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
