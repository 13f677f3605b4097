// Command istioctl is Istio's istioctl at the pseudo-version pinned in go.mod, for tests that render
// install manifests (`istioctl manifest generate -f overlay.yaml` needs no cluster). It only calls
// istioctl's own root command, as Istio's istioctl/cmd/istioctl/main.go does.
package main

import (
	"fmt"
	"os"

	"istio.io/istio/istioctl/cmd"
	"istio.io/istio/pkg/log"
)

func main() {
	if err := cmd.ConfigAndEnvProcessing(); err != nil {
		fmt.Fprintf(os.Stderr, "Could not initialize: %v\n", err)
		os.Exit(cmd.GetExitCode(err))
	}
	rootCmd := cmd.GetRootCmd(os.Args[1:])
	log.EnableKlogWithCobra()
	if err := rootCmd.Execute(); err != nil {
		os.Exit(cmd.GetExitCode(err))
	}
}
