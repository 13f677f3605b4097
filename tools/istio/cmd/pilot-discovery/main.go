// Command pilot-discovery runs Istio's istiod (istio.io/istio/pilot/pkg/bootstrap, at the pseudo-version
// pinned in go.mod) outside Kubernetes, for tests of what istiod does with a plugged-in CA dir.
//
// What it differs in from Istio's own pilot-discovery (pilot/cmd/pilot-discovery/app/cmd.go):
//   - It is given an in-memory fake Kubernetes client (kube.NewFakeClient), as Istio's bootstrap tests do
//     (pilot/pkg/bootstrap/server_test.go). istiod of this era dereferences the Kubernetes client in the
//     service-entry controller even when no Kubernetes registry is configured, so without one it panics
//     (nil pointer) on the plugged-in CA path. The client lives in an unexported field (Server.kubeClient)
//     that only bootstrap's own package can set; we set it from our init function with reflect+unsafe,
//     before NewServer reads it (initKubeClient keeps a client that is already set).
//   - Only the flags tests need; everything listens where the flags say (127.0.0.1 by default), the
//     webhooks share the HTTP port, no Kubernetes registry, file config from an (empty) --configDir.
//
// istiod reads its CA settings from the environment when its packages initialise, so they are not flags:
//
//	ROOT_CA_DIR=<dir>             the plugged-in CA dir (ca-key.pem, ca-cert.pem, cert-chain.pem, root-cert.pem);
//	                              required here because istiod's default is a relative path
//	PILOT_CERT_PROVIDER=istiod    istiod signs its own serving certificate from that CA (the default)
//	ISTIO_MULTIROOT_MESH=true     optional: accept root-cert.pem changes that add or remove roots
//
// Once istiod has started (its ports are bound), one line is printed to stdout:
//
//	{"msg":"pilot-discovery started","http":"127.0.0.1:…","grpc":"…","secureGrpc":"…","monitoring":"…"}
//
// SIGTERM or SIGINT stops it.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"istio.io/istio/pilot/pkg/bootstrap"
	"istio.io/istio/pkg/kube"
	"istio.io/istio/pkg/log"
)

func main() {
	fs := flag.NewFlagSet("pilot-discovery", flag.ExitOnError)
	httpAddr := fs.String("httpAddr", "127.0.0.1:8080", "HTTP address: /ready, debug, webhooks")
	grpcAddr := fs.String("grpcAddr", "127.0.0.1:15010", "plain-text xDS gRPC address")
	secureGRPCAddr := fs.String("secureGRPCAddr", "127.0.0.1:15012", "TLS gRPC address: xDS and the CA (IstioCertificateService)")
	monitoringAddr := fs.String("monitoringAddr", "127.0.0.1:15014", "address of /metrics")
	configDir := fs.String("configDir", "", "folder of Istio config YAML (required; may be empty)")
	domain := fs.String("domain", "cluster.local", "DNS domain suffix")
	namespace := fs.String("namespace", bootstrap.PodNamespace, "istiod's namespace (its serving certificate is for istiod.<namespace>.svc)")
	meshConfig := fs.String("meshConfig", "", "mesh config file (default: Istio's default mesh config)")
	shutdown := fs.Duration("shutdownDuration", time.Second, "how long a graceful stop may take")
	logOpts := log.DefaultOptions()
	logOpts.AttachFlags(stringArrayVar(fs), fs.StringVar, fs.IntVar, fs.BoolVar)
	_ = fs.Parse(os.Args[1:])

	if err := run(*httpAddr, *grpcAddr, *secureGRPCAddr, *monitoringAddr, *configDir, *domain, *namespace, *meshConfig, *shutdown, logOpts); err != nil {
		fmt.Fprintf(os.Stderr, "pilot-discovery: %v\n", err)
		os.Exit(1)
	}
}

func run(httpAddr, grpcAddr, secureGRPCAddr, monitoringAddr, configDir, domain, namespace, meshConfig string, shutdown time.Duration, logOpts *log.Options) error {
	caDir := os.Getenv("ROOT_CA_DIR")
	if caDir == "" || !filepath.IsAbs(caDir) {
		return fmt.Errorf("ROOT_CA_DIR must be set to an absolute path (istiod's default, ./etc/cacerts, is relative), got %q", caDir)
	}
	if configDir == "" {
		return fmt.Errorf("--configDir is required (an empty folder will do): without it istiod looks for a Kubernetes config store")
	}

	if err := log.Configure(logOpts); err != nil {
		return fmt.Errorf("configuring logs: %v", err)
	}

	args := bootstrap.NewPilotArgs(func(p *bootstrap.PilotArgs) {
		p.Namespace = namespace
		p.ServerOptions = bootstrap.DiscoveryServerOptions{
			HTTPAddr:       httpAddr,
			GRPCAddr:       grpcAddr,
			SecureGRPCAddr: secureGRPCAddr,
			MonitoringAddr: monitoringAddr,
			// Empty: the webhooks are served on the HTTP port instead of a port of their own.
			HTTPSAddr: "",
			TLSOptions: bootstrap.TLSOptions{
				TLSMinVersion: bootstrap.TLSMinVersion1_2,
			},
		}
		p.RegistryOptions.Registries = nil
		p.RegistryOptions.FileDir = configDir
		p.RegistryOptions.KubeOptions.DomainSuffix = domain
		p.MeshConfigFile = meshConfig
		p.ShutdownDuration = shutdown
	})
	if err := args.Complete(); err != nil {
		return err
	}

	server, err := bootstrap.NewServer(args, withFakeKubeClient)
	if err != nil {
		return fmt.Errorf("creating istiod: %v", err)
	}
	stop := make(chan struct{})
	if err := server.Start(stop); err != nil {
		return fmt.Errorf("starting istiod: %v", err)
	}
	started, _ := json.Marshal(map[string]string{
		"msg": "pilot-discovery started", "http": httpAddr, "grpc": grpcAddr, "secureGrpc": secureGRPCAddr, "monitoring": monitoringAddr,
	})
	fmt.Println(string(started))

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
	close(stop)
	server.WaitUntilCompletion()
	return nil
}

// withFakeKubeClient sets Server.kubeClient (unexported) to an in-memory fake client, as Istio's bootstrap
// tests do with `s.kubeClient = kube.NewFakeClient()` from inside the package. reflect alone refuses to
// set an unexported field, so the field's address is taken with unsafe; the field's type is checked at
// run time, so an Istio version that renames or retypes it fails loudly here rather than corrupting memory.
func withFakeKubeClient(s *bootstrap.Server) {
	field := reflect.ValueOf(s).Elem().FieldByName("kubeClient")
	if !field.IsValid() {
		panic("bootstrap.Server has no field kubeClient: this Istio version needs another way to inject a Kubernetes client")
	}
	client := reflect.ValueOf(kube.NewFakeClient())
	if !client.Type().AssignableTo(field.Type()) {
		panic(fmt.Sprintf("bootstrap.Server.kubeClient is a %s, not assignable from %s", field.Type(), client.Type()))
	}
	reflect.NewAt(field.Type(), unsafe.Pointer(field.UnsafeAddr())).Elem().Set(client)
}

// stringArrayVar adapts a standard FlagSet to the pflag-style StringArrayVar that Istio's log options
// attach their repeatable flags (--log_target) with.
func stringArrayVar(fs *flag.FlagSet) func(p *[]string, name string, value []string, usage string) {
	return func(p *[]string, name string, value []string, usage string) {
		*p = value
		fs.Var(&stringArray{p: p}, name, usage)
	}
}

type stringArray struct {
	p   *[]string
	set bool
}

func (a *stringArray) String() string {
	if a.p == nil {
		return ""
	}
	return strings.Join(*a.p, ",")
}

func (a *stringArray) Set(v string) error {
	if !a.set {
		*a.p = nil
		a.set = true
	}
	*a.p = append(*a.p, v)
	return nil
}
