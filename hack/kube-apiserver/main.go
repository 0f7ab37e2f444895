// Command kube-apiserver is the real Kubernetes API server, built from
// k8s.io/kubernetes, for netsonde's tests: there is no cluster on the
// machines that run them, but a real API server with a real etcd is enough
// to test the agent's informers, RBAC and the deployment manifests.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
