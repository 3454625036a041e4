// Command kwok is KWOK's controller as released, started with the stages that kwokctl
// gives it by default (heartbeats through node leases): fake nodes become Ready, and pods scheduled on them go Running
// and Ready (and away when deleted) without a container runtime.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodeheartbeatwithlease "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	"sigs.k8s.io/kwok/pkg/config"
	"sigs.k8s.io/kwok/pkg/kwok/cmd"
	"sigs.k8s.io/kwok/pkg/log"
	"sigs.k8s.io/kwok/pkg/utils/signals"
)

func main() {
	stages, err := writeDefaultStages()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kwok: writing the default stages:", err)
		os.Exit(1)
	}
	defer os.Remove(stages)
	// config.InitFlags reads --config from the command line itself.
	os.Args = append(os.Args, "--config="+stages)

	flagset := pflag.NewFlagSet("global", pflag.ContinueOnError)
	flagset.ParseErrorsAllowlist.UnknownFlags = true
	flagset.Usage = func() {}

	ctx := signals.SetupSignalContext()
	ctx, logger := log.InitFlags(ctx, flagset)
	ctx, err = config.InitFlags(ctx, flagset)
	if err != nil {
		logger.Error("Init config flags", "err", err)
		os.Exit(1)
	}
	command := cmd.NewCommand(ctx)
	command.PersistentFlags().AddFlagSet(flagset)
	if err := command.ExecuteContext(ctx); err != nil {
		logger.Error("Execute exit", "err", err)
		os.Exit(1)
	}
}

func writeDefaultStages() (string, error) {
	docs := []string{
		nodefast.DefaultNodeInit, nodeheartbeatwithlease.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady, podfast.DefaultPodComplete, podfast.DefaultPodDelete,
	}
	file, err := os.CreateTemp("", "kwok-stages-*.yaml")
	if err != nil {
		return "", err
	}
	defer file.Close()
	if _, err := file.WriteString(strings.Join(docs, "\n---\n")); err != nil {
		return "", err
	}
	return filepath.Clean(file.Name()), nil
}
