// Command controlplane is Kubernetes' own control plane linked into one binary, so
// that it is compiled and linked once: the first argument names the component and the
// rest are that component's usual flags.
//
//	controlplane etcd --data-dir ... --listen-client-urls ...
//	controlplane kube-apiserver --etcd-servers ... --authorization-mode=Node,RBAC ...
//	controlplane kube-controller-manager --kubeconfig ...
//	controlplane kube-scheduler --kubeconfig ...
//	controlplane version
//
// Nothing here changes a component's behaviour: each is the upstream command as
// released, so what the tests learn holds on a user's cluster.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: controlplane etcd|kube-apiserver|kube-controller-manager|kube-scheduler|version [flags]")
		os.Exit(2)
	}
	component, args := os.Args[1], os.Args[2:]
	var command *cobra.Command
	switch component {
	case "etcd":
		// etcd's main reads os.Args itself, with its own name first.
		etcdmain.Main(append([]string{"etcd"}, args...))
		return
	case "kube-apiserver":
		command = apiserver.NewAPIServerCommand()
	case "kube-controller-manager":
		command = controllermanager.NewControllerManagerCommand()
	case "kube-scheduler":
		command = scheduler.NewSchedulerCommand()
	case "version":
		fmt.Println(version.Get().GitVersion)
		return
	default:
		fmt.Fprintf(os.Stderr, "controlplane: unknown component %q\n", component)
		os.Exit(2)
	}
	command.SetArgs(args)
	os.Exit(cli.Run(command))
}
