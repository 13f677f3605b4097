// Command etcd is etcd's server (go.etcd.io/etcd/server/v3 at the version pinned in go.mod, the one
// k8s.io/kubernetes itself requires), the storage kube-apiserver needs in tests. It calls etcd's own main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
