// Command kube-apiserver is Kubernetes' API server at the version pinned in go.mod, for tests that need a
// real API server (TokenReview, TokenRequest, RBAC, server-side apply) without a cluster. It calls the
// same command as Kubernetes' own cmd/kube-apiserver/apiserver.go.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
