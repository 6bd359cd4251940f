// Package conformance runs containerd's own snapshotter conformance suite
// (github.com/containerd/containerd/snapshots/testsuite, containerd 1.6) against
// ocix-snapshotter, driven over gRPC through containerd's proxy client
// (snapshots/proxy), exactly as containerd talks to a proxy snapshotter plugin.
//
// Every subtest of the suite gets a fresh daemon:
//
//	$OCIX_SNAPSHOTTER --address <root>/s.sock --root <root>/state [$OCIX_SNAPSHOTTER_ARGS...]
//
// CONFORMANCE_TARGET selects what is tested:
//
//	ocix            (default) the daemon named by OCIX_SNAPSHOTTER
//	overlay-inproc  containerd's overlay snapshotter, in process (validates the suite setup)
//	overlay-daemon  containerd's overlay snapshotter served over gRPC by this test binary
//	                re-executed as a daemon, through the very same process, socket and
//	                proxy code path as ocix (validates the harness itself)
//
// See README.md in this directory.
package conformance

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/overlay"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

const (
	// serveEnv makes the test binary act as an overlay snapshotter daemon
	// (target overlay-daemon) instead of running tests.
	serveEnv = "CONFORMANCE_SERVE_OVERLAY"
	// maxOutput caps how much daemon output is kept in memory per daemon
	// (the head and the tail are kept; the middle is elided).
	maxOutput = 256 << 10
	// unixPathMax is sizeof(sockaddr_un.sun_path) - 1 on Linux.
	unixPathMax = 107
)

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		os.Exit(serveOverlay(os.Args[1:]))
	}
	flag.Parse()
	os.Exit(m.Run())
}

func TestSnapshotterConformance(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the snapshotter conformance suite mounts filesystems and needs root")
	}
	target := os.Getenv("CONFORMANCE_TARGET")
	if target == "" {
		target = "ocix"
	}
	switch target {
	case "ocix":
		bin := os.Getenv("OCIX_SNAPSHOTTER")
		if bin == "" {
			t.Fatal("OCIX_SNAPSHOTTER is not set (path to the ocix-snapshotter binary)")
		}
		bin, err := filepath.Abs(bin)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			t.Fatalf("OCIX_SNAPSHOTTER=%s is not an executable file (%v)", bin, err)
		}
		extra := strings.Fields(os.Getenv("OCIX_SNAPSHOTTER_ARGS"))
		testsuite.SnapshotterSuite(t, "ocix", daemonSnapshotter(bin, extra, nil))
	case "overlay-daemon":
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		testsuite.SnapshotterSuite(t, "overlay-daemon",
			daemonSnapshotter(self, nil, []string{serveEnv + "=1"}))
	case "overlay-inproc":
		testsuite.SnapshotterSuite(t, "overlay-inproc", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
			sn, err := overlay.NewSnapshotter(root)
			if err != nil {
				return nil, nil, err
			}
			return sn, sn.Close, nil
		})
	default:
		t.Fatalf("unknown CONFORMANCE_TARGET %q (want ocix, overlay-inproc or overlay-daemon)", target)
	}
}

// daemonSnapshotter returns a testsuite.SnapshotterFunc that starts a fresh
// snapshotter daemon per test and talks to it through containerd's proxy.
func daemonSnapshotter(bin string, extraArgs, extraEnv []string) testsuite.SnapshotterFunc {
	return func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		sock := filepath.Join(root, "s.sock")
		state := filepath.Join(root, "state")
		if len(sock) > unixPathMax {
			return nil, nil, fmt.Errorf("socket path %s is longer than %d bytes; use a shorter TMPDIR", sock, unixPathMax)
		}

		d, err := startDaemon(ctx, bin, append([]string{"--address", sock, "--root", state}, extraArgs...), extraEnv, root)
		if err != nil {
			return nil, nil, err
		}
		if err := d.waitForSocket(sock, durationFromEnv("OCIX_STARTUP_TIMEOUT", 30*time.Second)); err != nil {
			_ = d.stop(5 * time.Second)
			return nil, nil, d.withOutput(err)
		}

		dialCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := grpc.DialContext(dialCtx, sock,
			grpc.WithInsecure(),
			grpc.WithBlock(),
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: 5 * time.Second}),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				var dialer net.Dialer
				return dialer.DialContext(ctx, "unix", addr)
			}),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)),
		)
		if err != nil {
			_ = d.stop(5 * time.Second)
			return nil, nil, d.withOutput(fmt.Errorf("grpc dial %s: %w", sock, err))
		}
		sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "ocix")

		var once sync.Once
		var cleanupErr error
		cleanup := func() error {
			once.Do(func() {
				var errs []string
				if err := sn.Close(); err != nil {
					errs = append(errs, fmt.Sprintf("close proxy: %v", err))
				}
				if err := conn.Close(); err != nil {
					errs = append(errs, fmt.Sprintf("close grpc connection: %v", err))
				}
				if err := d.stop(durationFromEnv("OCIX_STOP_TIMEOUT", 10*time.Second)); err != nil {
					errs = append(errs, err.Error())
				}
				if left := unmountUnder(root); len(left) > 0 {
					// Not a conformance failure, but worth seeing: the daemon
					// exited and left mounts behind under its root.
					d.logf("daemon left %d mount(s) under %s (lazily unmounted now): %s",
						len(left), root, strings.Join(left, ", "))
				}
				if len(errs) > 0 {
					cleanupErr = errors.New(strings.Join(errs, "; "))
				}
			})
			return cleanupErr
		}
		return sn, cleanup, nil
	}
}

// daemon is one snapshotter process.
type daemon struct {
	cmd    *exec.Cmd
	out    *outputBuffer
	tb     testing.TB // the suite's subtest, when it can be found (see testFromContext)
	ctx    context.Context
	done   chan struct{} // closed when the process has exited
	copied chan struct{} // closed when nothing holds its output pipe any more
	err    error         // cmd.Wait's result, valid after done
	file   *os.File      // copy of the output under CONFORMANCE_LOG_DIR, if set
}

func startDaemon(ctx context.Context, bin string, args, extraEnv []string, root string) (*daemon, error) {
	d := &daemon{out: &outputBuffer{}, ctx: ctx, done: make(chan struct{})}
	d.tb = testFromContext(ctx)

	var w io.Writer = d.out
	if dir := os.Getenv("CONFORMANCE_LOG_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err == nil {
			name := filepath.Base(filepath.Dir(root))
			if d.tb != nil {
				name = strings.NewReplacer("/", "_", " ", "_").Replace(d.tb.Name())
			}
			if f, err := os.Create(filepath.Join(dir, name+".log")); err == nil {
				d.file = f
				w = io.MultiWriter(d.out, f)
			}
		}
	}

	// The daemon writes into a pipe of ours (an *os.File, so exec starts no
	// copying goroutine and cmd.Wait returns when the daemon itself exits,
	// even if a child of it still holds the pipe open).
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	d.copied = make(chan struct{})
	go func() {
		_, _ = io.Copy(w, pr)
		pr.Close()
		if d.file != nil {
			d.file.Close()
		}
		close(d.copied)
	}()

	cmd := exec.Command(bin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdin = nil
	cmd.Stdout = pw
	cmd.Stderr = pw
	// Own process group, so a SIGKILL takes helpers (e.g. FUSE servers) too;
	// and die with the test binary if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		<-d.copied
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	d.cmd = cmd
	d.logf("started %s (pid %d)", strings.Join(cmd.Args, " "), cmd.Process.Pid)
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()

	if d.tb != nil {
		// Runs after the suite's own deferred cleanup, so it sees every
		// failure of the subtest, including "Cleanup failed".
		d.tb.Cleanup(func() {
			if d.tb.Failed() {
				d.tb.Log(d.out.dump(fmt.Sprintf("output of %s (pid %d)", filepath.Base(bin), cmd.Process.Pid)))
			}
		})
	}
	return d, nil
}

// withOutput adds the daemon's output to err unless the subtest's failure
// hook (see startDaemon) will print it anyway.
func (d *daemon) withOutput(err error) error {
	if d.tb != nil {
		return err
	}
	return fmt.Errorf("%w\n%s", err, d.out.dump("daemon output"))
}

func (d *daemon) logf(format string, args ...interface{}) {
	if d.tb != nil {
		d.tb.Logf(format, args...)
		return
	}
	log.G(d.ctx).Infof(format, args...)
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// waitForSocket waits until sock accepts connections, failing early when the
// daemon exits.
func (d *daemon) waitForSocket(sock string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if d.exited() {
			return fmt.Errorf("daemon exited before serving %s: %s", sock, describeExit(d.err))
		}
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon did not accept connections on %s within %s", sock, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM, then SIGKILL (to the process group) after timeout. It
// returns an error unless the daemon was still running and then exited with
// status 0 on SIGTERM within the timeout.
func (d *daemon) stop(timeout time.Duration) error {
	if d.exited() {
		d.finish()
		return fmt.Errorf("daemon exited before the test finished: %s", describeExit(d.err))
	}
	pid := d.cmd.Process.Pid
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM to daemon (pid %d): %w", pid, err)
	}
	select {
	case <-d.done:
	case <-time.After(timeout):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-d.done
		d.finish()
		return fmt.Errorf("daemon (pid %d) did not exit within %s of SIGTERM; killed", pid, timeout)
	}
	// Kill anything left in its process group, and collect the last output.
	d.finish()
	if d.err != nil {
		return fmt.Errorf("daemon (pid %d) exit after SIGTERM: %s", pid, describeExit(d.err))
	}
	return nil
}

// finish kills whatever is left of the daemon's process group (it has
// exited) and waits briefly for the rest of its output.
func (d *daemon) finish() {
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-d.copied:
	case <-time.After(5 * time.Second):
		d.logf("daemon output pipe still open 5s after exit (a process outside its process group holds it)")
	}
}

func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			if ws.Signal() == syscall.SIGTERM {
				return "killed by SIGTERM (no graceful shutdown on SIGTERM)"
			}
			return fmt.Sprintf("killed by signal %v", ws.Signal())
		}
	}
	return err.Error()
}

// testFromContext digs the *testing.T of the current subtest out of the
// logger that the suite attaches to ctx (log/logtest.WithT). The suite only
// hands ctx to the snapshotter factory, and the daemon's output is only
// worth printing when that subtest fails. Returns nil if it cannot be found.
func testFromContext(ctx context.Context) (tb testing.TB) {
	defer func() {
		if recover() != nil {
			tb = nil
		}
	}()
	entry := log.G(ctx)
	if entry == nil || entry.Logger == nil {
		return nil
	}
	for _, hooks := range entry.Logger.Hooks {
		for _, h := range hooks {
			v := reflect.ValueOf(h)
			if v.Kind() != reflect.Ptr || v.Elem().Kind() != reflect.Struct {
				continue
			}
			f := v.Elem().FieldByName("t")
			if !f.IsValid() || !f.CanAddr() || f.Kind() != reflect.Interface {
				continue
			}
			f = reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
			if t, ok := f.Interface().(testing.TB); ok && t != nil {
				return t
			}
		}
	}
	return nil
}

// unmountUnder lazily unmounts every mount point below dir, deepest first,
// and returns them.
func unmountUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	prefix := filepath.Clean(dir) + "/"
	unescape := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		if mp := unescape.Replace(fields[4]); strings.HasPrefix(mp, prefix) {
			points = append(points, mp)
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = mount.UnmountAll(points[i], syscall.MNT_DETACH)
	}
	return points
}

func durationFromEnv(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d
		}
	}
	return def
}

// outputBuffer keeps a daemon's stdout and stderr: the first half of
// maxOutput bytes and a rolling tail.
type outputBuffer struct {
	mu      sync.Mutex
	head    bytes.Buffer
	tail    []byte
	dropped int64
}

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := maxOutput/2 - b.head.Len(); room > 0 {
		k := room
		if k > len(p) {
			k = len(p)
		}
		b.head.Write(p[:k])
		p = p[k:]
	}
	b.tail = append(b.tail, p...)
	if over := len(b.tail) - maxOutput/2; over > 0 {
		b.dropped += int64(over)
		b.tail = append(b.tail[:0], b.tail[over:]...)
	}
	return n, nil
}

func (b *outputBuffer) dump(title string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s strings.Builder
	fmt.Fprintf(&s, "----- %s -----\n", title)
	s.Write(b.head.Bytes())
	if b.dropped > 0 {
		fmt.Fprintf(&s, "\n[... %d bytes elided ...]\n", b.dropped)
	}
	s.Write(b.tail)
	if b.head.Len()+len(b.tail) == 0 {
		s.WriteString("(no output)")
	}
	fmt.Fprintf(&s, "\n----- end of %s -----", title)
	return s.String()
}

// serveOverlay is the overlay-daemon target's daemon: containerd's overlay
// snapshotter behind containerd's own gRPC service adapter, with the same
// command line as ocix-snapshotter.
func serveOverlay(args []string) int {
	fs := flag.NewFlagSet("overlay-daemon", flag.ContinueOnError)
	address := fs.String("address", "", "unix socket to serve on")
	root := fs.String("root", "", "state directory")
	fs.String("config", "", "ignored")
	if err := fs.Parse(args); err != nil || *address == "" || *root == "" {
		fmt.Fprintln(os.Stderr, "usage: overlay-daemon --address SOCKET --root DIR")
		return 2
	}
	if err := os.MkdirAll(*root, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sn, err := overlay.NewSnapshotter(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := net.Listen("unix", *address)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "overlay-daemon: %v, stopping\n", s)
		srv.GracefulStop()
	}()
	fmt.Fprintf(os.Stderr, "overlay-daemon: serving on %s, root %s\n", *address, *root)
	if err := srv.Serve(l); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := sn.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
