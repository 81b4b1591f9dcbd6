// Command pulumi-language-python is the c2c project's own Pulumi language host for Python.
//
// Pulumi's host lives in a Go module that the Go proxy reachable here does not serve, so this is a
// small, independent implementation of the LanguageRuntime gRPC service against the public
// sdk/v3 protocol. It runs programs through pulumi-language-python-exec, a Python script installed
// next to this binary, using the interpreter of the project's virtualenv.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
)

// version is stamped at build time with the Pulumi version this toolchain pins.
var version = "0.0.0-dev"

const execName = "pulumi-language-python-exec"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
		os.Exit(1)
	}
}

func run(argv []string) error {
	// The engine passes its logging/tracing flags before the engine address; accept and ignore
	// the logging ones (they configure Pulumi's glog, which this host does not use).
	flags := flag.NewFlagSet("pulumi-language-python", flag.ContinueOnError)
	tracing := flags.String("tracing", "", "tracing endpoint (passed to the program runner)")
	flags.Bool("logtostderr", false, "ignored")
	flags.Bool("logflow", false, "ignored")
	flags.Int("v", 0, "ignored")
	flags.String("root", "", "ignored: the root directory arrives with each request")
	if err := flags.Parse(argv); err != nil {
		return err
	}
	engineAddress := ""
	if flags.NArg() > 0 {
		engineAddress = flags.Arg(0)
	}

	execPath, err := findExecutor()
	if err != nil {
		return err
	}

	host := &pythonHost{
		engineAddress: engineAddress,
		execPath:      execPath,
		tracing:       *tracing,
	}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("starting the gRPC server: %w", err)
	}
	// The engine reads the port from the first line of stdout.
	fmt.Printf("%d\n", handle.Port)
	return <-handle.Done
}

// findExecutor locates pulumi-language-python-exec beside this binary (symlinks resolved), the
// place Pulumi's own host looks too.
func findExecutor() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locating this executable: %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	candidate := filepath.Join(filepath.Dir(self), execName)
	if _, err := os.Stat(candidate); err != nil {
		return "", fmt.Errorf("missing %s next to %s: %w", execName, self, err)
	}
	return candidate, nil
}
