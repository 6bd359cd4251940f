// stargz-grpc: benchmark tooling, not product. Serves the stargz-snapshotter
// library's snapshotter (Debian's golang-github-containerd-stargz-snapshotter-dev
// 0.12) over gRPC on a unix socket, for containerd to load as a proxy
// snapshotter:
//
//	[proxy_plugins.stargz]
//	  type = "snapshot"
//	  address = "DIR/stargz.sock"
//
// Flags: -address SOCKET -root DIR [-config FILE.toml] [-log-level LEVEL]
// [-insecure-host HOST:PORT ...] (a registry reached over plain HTTP, as
// upstream's [[resolver.host."HOST".mirrors]] insecure = true).
// The config file has upstream's containerd-stargz-grpc config.toml format
// (fs/config.Config plus [resolver]); keychains are not wired (no auth).
//
// Why not simply service.NewStargzSnapshotterService: Debian's package
// service/resolver (imported by service) has cri.go, which imports
// k8s.io/cri-api, and bookworm packages no k8s.io/cri-api. So newSnapshotter
// below is service.NewStargzSnapshotterService (service/service.go) without
// the CRI-label source, and registryHosts is resolver.RegistryHostsFromConfig
// (service/resolver/registry.go) without credentials: the same filesystem,
// snapshotter, overlay and fetch code as upstream's containerd-stargz-grpc.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/reference"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/overlay/overlayutils"
	stargzfs "github.com/containerd/stargz-snapshotter/fs"
	fsconfig "github.com/containerd/stargz-snapshotter/fs/config"
	"github.com/containerd/stargz-snapshotter/fs/layer"
	"github.com/containerd/stargz-snapshotter/fs/source"
	snbase "github.com/containerd/stargz-snapshotter/snapshot"
	rhttp "github.com/hashicorp/go-retryablehttp"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
)

// Config is upstream's containerd-stargz-grpc config (service.Config) minus
// the keychains.
type Config struct {
	fsconfig.Config
	ResolverConfig resolverConfig `toml:"resolver"`
}

type resolverConfig struct {
	Host map[string]hostConfig `toml:"host"`
}

type hostConfig struct {
	Mirrors []mirrorConfig `toml:"mirrors"`
}

type mirrorConfig struct {
	Host              string `toml:"host"`
	Insecure          bool   `toml:"insecure"`
	RequestTimeoutSec int    `toml:"request_timeout_sec"`
}

const defaultRequestTimeoutSec = 30

// registryHosts: resolver.RegistryHostsFromConfig without credentials.
func registryHosts(cfg resolverConfig) source.RegistryHosts {
	return func(ref reference.Spec) (hosts []docker.RegistryHost, _ error) {
		host := ref.Hostname()
		for _, h := range append(cfg.Host[host].Mirrors, mirrorConfig{Host: host}) {
			client := rhttp.NewClient()
			client.Logger = nil
			tr := client.StandardClient()
			if h.RequestTimeoutSec >= 0 {
				if h.RequestTimeoutSec == 0 {
					tr.Timeout = defaultRequestTimeoutSec * time.Second
				} else {
					tr.Timeout = time.Duration(h.RequestTimeoutSec) * time.Second
				}
			}
			rh := docker.RegistryHost{
				Client:       tr,
				Host:         h.Host,
				Scheme:       "https",
				Path:         "/v2",
				Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
				Authorizer:   docker.NewDockerAuthorizer(docker.WithAuthClient(tr)),
			}
			if localhost, _ := docker.MatchLocalhost(rh.Host); localhost || h.Insecure {
				rh.Scheme = "http"
			}
			hosts = append(hosts, rh)
		}
		return
	}
}

// newSnapshotter: service.NewStargzSnapshotterService without CRI labels.
func newSnapshotter(ctx context.Context, root string, cfg *Config) (snapshots.Snapshotter, error) {
	hosts := registryHosts(cfg.ResolverConfig)
	snRoot := filepath.Join(root, "snapshotter")
	userxattr, err := overlayutils.NeedsUserXAttr(snRoot)
	if err != nil {
		log.G(ctx).WithError(err).Warnf("cannot detect whether userxattr is needed, assuming %v", userxattr)
	}
	opq := layer.OverlayOpaqueTrusted
	if userxattr {
		opq = layer.OverlayOpaqueUser
	}
	fs, err := stargzfs.NewFilesystem(filepath.Join(root, "stargz"), cfg.Config,
		stargzfs.WithGetSources(source.FromDefaultLabels(hosts)),
		stargzfs.WithOverlayOpaqueType(opq))
	if err != nil {
		return nil, fmt.Errorf("configuring the filesystem: %w", err)
	}
	return snbase.NewSnapshotter(ctx, snRoot, fs, snbase.AsynchronousRemove)
}

type hostList []string

func (h *hostList) String() string     { return strings.Join(*h, ",") }
func (h *hostList) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	address := flag.String("address", "/run/stargz-bench/stargz.sock", "unix socket of the gRPC Snapshots service")
	root := flag.String("root", "/var/lib/stargz-bench", "root directory of the snapshotter")
	configPath := flag.String("config", "", "containerd-stargz-grpc style config.toml (optional)")
	logLevel := flag.String("log-level", "info", "logrus level")
	var insecure hostList
	flag.Var(&insecure, "insecure-host", "registry HOST:PORT reached over plain HTTP (repeatable)")
	flag.Parse()

	lvl, err := logrus.ParseLevel(*logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad -log-level: %v\n", err)
		os.Exit(2)
	}
	logrus.SetLevel(lvl)
	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	ctx := log.WithLogger(context.Background(), log.L)

	var cfg Config
	if *configPath != "" {
		if _, err := toml.DecodeFile(*configPath, &cfg); err != nil {
			log.G(ctx).WithError(err).Fatalf("reading %s", *configPath)
		}
	}
	if cfg.ResolverConfig.Host == nil {
		cfg.ResolverConfig.Host = map[string]hostConfig{}
	}
	for _, h := range insecure {
		hc := cfg.ResolverConfig.Host[h]
		hc.Mirrors = append(hc.Mirrors, mirrorConfig{Host: h, Insecure: true})
		cfg.ResolverConfig.Host[h] = hc
	}

	if err := os.MkdirAll(*root, 0700); err != nil {
		log.G(ctx).WithError(err).Fatal("creating root")
	}
	if err := os.MkdirAll(filepath.Join(*root, "snapshotter"), 0700); err != nil {
		log.G(ctx).WithError(err).Fatal("creating root")
	}
	if err := overlayutils.Supported(filepath.Join(*root, "snapshotter")); err != nil {
		log.G(ctx).WithError(err).Warn("overlayfs may not be supported")
	}
	sn, err := newSnapshotter(ctx, *root, &cfg)
	if err != nil {
		log.G(ctx).WithError(err).Fatal("creating the snapshotter")
	}

	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))

	if err := os.MkdirAll(filepath.Dir(*address), 0700); err != nil {
		log.G(ctx).WithError(err).Fatal("creating socket dir")
	}
	_ = os.Remove(*address)
	l, err := net.Listen("unix", *address)
	if err != nil {
		log.G(ctx).WithError(err).Fatalf("listening on %s", *address)
	}

	errCh := make(chan error, 1)
	go func() { errCh <- rpc.Serve(l) }()
	log.G(ctx).Infof("stargz snapshotter serving on %s (root %s)", *address, *root)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		log.G(ctx).Infof("got %v, shutting down", s)
	case err := <-errCh:
		log.G(ctx).WithError(err).Error("gRPC server stopped")
	}
	rpc.Stop()
	// Close unmounts the FUSE layers (the snapshotter's cleanup).
	if err := sn.Close(); err != nil {
		log.G(ctx).WithError(err).Warn("closing the snapshotter")
	}
	_ = os.Remove(*address)
}
