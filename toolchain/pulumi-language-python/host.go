package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Exit codes of pulumi-language-python-exec (its docstring is the contract).
const (
	// bailExitCode: the program's error was already reported to the engine (or the engine ended
	// the run and reports the cause itself); the engine then shows no second, redundant error.
	bailExitCode = 32
	// interruptedExitCode: a KeyboardInterrupt reached the runner (128 + SIGINT, as python).
	interruptedExitCode = 130
)

// pythonHost implements the LanguageRuntime service. Methods it does not override (code
// generation, packing, plugin running) answer Unimplemented, which the engine tolerates.
type pythonHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	engineAddress string
	execPath      string
	tracing       string
}

func (h *pythonHost) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *pythonHost) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (h *pythonHost) GetRequiredPackages(
	ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	pkgs, err := h.installed(ctx, req.GetInfo())
	if err != nil {
		return nil, err
	}
	return &pulumirpc.GetRequiredPackagesResponse{Packages: resourcePlugins(pkgs)}, nil
}

// GetRequiredPlugins serves engines older than GetRequiredPackages.
func (h *pythonHost) GetRequiredPlugins(
	ctx context.Context, req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	pkgs, err := h.installed(ctx, req.GetInfo())
	if err != nil {
		return nil, err
	}
	var plugins []*pulumirpc.PluginDependency
	for _, d := range resourcePlugins(pkgs) {
		plugins = append(plugins, &pulumirpc.PluginDependency{
			Name: d.Name, Kind: d.Kind, Version: d.Version, Server: d.Server,
		})
	}
	return &pulumirpc.GetRequiredPluginsResponse{Plugins: plugins}, nil
}

func (h *pythonHost) installed(
	ctx context.Context, info *pulumirpc.ProgramInfo,
) ([]installedPackage, error) {
	py, err := resolvePython(info)
	if err != nil {
		return nil, err
	}
	if !py.exists() {
		return nil, fmt.Errorf("virtualenv %s does not exist: create it and install the "+
			"program's requirements first (or run `pulumi install`)", py.virtualenv)
	}
	return listPackages(ctx, py, info.GetProgramDirectory())
}

func (h *pythonHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	py, err := resolvePython(info)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	if !py.exists() {
		return &pulumirpc.RunResponse{Error: fmt.Sprintf(
			"virtualenv %s does not exist: create it and install the program's requirements",
			py.virtualenv)}, nil
	}

	config := req.GetConfig()
	if config == nil {
		config = map[string]string{} // "{}" rather than "null" for an empty stack config
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, fmt.Errorf("encoding secret config keys: %w", err)
	}

	args := append([]string{h.execPath}, h.execArgs(req)...)
	cmd := exec.CommandContext(ctx, py.python, args...)
	cmd.Dir = req.GetPwd()
	// Program output goes to this host's stdout/stderr, which the engine streams to the user.
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.Env = py.environ(
		"PULUMI_CONFIG="+string(configJSON),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secretJSON),
	)

	err = cmd.Run()
	if ctxErr := ctx.Err(); ctxErr != nil && err != nil {
		// The engine gave up on this Run (CommandContext has killed the program): it is no
		// longer waiting for an answer, and a "killed" message would only mislead.
		return nil, status.FromContextError(ctxErr).Err()
	}
	return runResponse(err, py.python), nil
}

// runResponse turns how pulumi-language-python-exec ended into the engine's answer.
func runResponse(err error, python string) *pulumirpc.RunResponse {
	var exitErr *exec.ExitError
	if err == nil {
		return &pulumirpc.RunResponse{}
	}
	if !errors.As(err, &exitErr) {
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("could not run %s with %s: %v", execName, python, err),
		}
	}
	ws, hasStatus := exitErr.Sys().(syscall.WaitStatus)
	switch {
	case exitErr.ExitCode() == bailExitCode:
		return &pulumirpc.RunResponse{Bail: true}
	case exitErr.ExitCode() == interruptedExitCode:
		return &pulumirpc.RunResponse{Error: "Program was interrupted"}
	case hasStatus && ws.Signaled():
		// The program runner leaves SIGINT/SIGTERM at their defaults: it ends without a word,
		// and this is the one line that says why.
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program was stopped by signal: %v", ws.Signal())}
	default:
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode()),
		}
	}
}

// execArgs is the command line contract with pulumi-language-python-exec: named settings, then
// the program path, then the program's own arguments.
func (h *pythonHost) execArgs(req *pulumirpc.RunRequest) []string {
	var args []string
	add := func(name, value string) {
		if value != "" {
			args = append(args, "--"+name, value)
		}
	}
	engine := h.engineAddress
	add("monitor", req.GetMonitorAddress())
	add("engine", engine)
	add("project", req.GetProject())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	add("dry_run", strconv.FormatBool(req.GetDryRun()))
	add("parallel", strconv.Itoa(int(req.GetParallel())))
	add("organization", req.GetOrganization())
	add("root_directory", req.GetInfo().GetRootDirectory())
	add("tracing", h.tracing)

	info := req.GetInfo()
	program := filepath.Join(info.GetProgramDirectory(), info.GetEntryPoint())
	if info.GetProgramDirectory() == "" {
		program = req.GetProgram() //nolint:staticcheck // engines older than ProgramInfo
	}
	if program == "" {
		program = "."
	}
	args = append(args, program)
	return append(args, req.GetArgs()...)
}

func (h *pythonHost) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest,
	server pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	info := req.GetInfo()
	py, err := resolvePython(info)
	if err != nil {
		return err
	}
	out := &streamWriter{send: func(b []byte) error {
		return server.Send(&pulumirpc.InstallDependenciesResponse{Stdout: b})
	}}
	errOut := &streamWriter{send: func(b []byte) error {
		return server.Send(&pulumirpc.InstallDependenciesResponse{Stderr: b})
	}}
	ctx := server.Context()
	if py.virtualenv != "" && !py.exists() {
		base, err := exec.LookPath("python3")
		if err != nil {
			return errors.New("python3 is needed to create the virtualenv")
		}
		if err := runTo(ctx, out, errOut, "", nil, base, "-m", "venv", py.virtualenv); err != nil {
			return err
		}
	}
	reqs := filepath.Join(info.GetRootDirectory(), "requirements.txt")
	if _, err := os.Stat(reqs); err != nil {
		reqs = filepath.Join(info.GetProgramDirectory(), "requirements.txt")
		if _, err := os.Stat(reqs); err != nil {
			return nil // nothing to install
		}
	}
	return runTo(ctx, out, errOut, info.GetRootDirectory(), py.environ(),
		py.python, "-m", "pip", "install", "-r", reqs)
}

func (h *pythonHost) RuntimeOptionsPrompts(
	context.Context, *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

func (h *pythonHost) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	py, err := resolvePython(req.GetInfo())
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, py.python, "--version").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("running %s --version: %w", py.python, err)
	}
	ver := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "Python"))
	return &pulumirpc.AboutResponse{Executable: py.python, Version: ver}, nil
}

func (h *pythonHost) GetProgramDependencies(
	ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	pkgs, err := h.installed(ctx, req.GetInfo())
	if err != nil {
		return nil, err
	}
	deps := make([]*pulumirpc.DependencyInfo, 0, len(pkgs))
	for _, p := range pkgs {
		deps = append(deps, &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version})
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: deps}, nil
}

// Cancel acknowledges the engine's shutdown; running programs end with their Run context.
func (h *pythonHost) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}
