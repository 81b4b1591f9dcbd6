package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// pythonEnv is the interpreter a program runs with and the virtualenv it belongs to, if any.
type pythonEnv struct {
	python     string
	virtualenv string
}

// resolvePython applies Pulumi.yaml's runtime option `virtualenv`: a relative path is taken from
// the project root (the directory holding Pulumi.yaml), as Pulumi's own host does. Without the
// option, python3 from PATH is used (PULUMI_PYTHON_CMD overrides it).
func resolvePython(info *pulumirpc.ProgramInfo) (pythonEnv, error) {
	venv := optionString(info, "virtualenv")
	if venv == "" {
		cmd := os.Getenv("PULUMI_PYTHON_CMD")
		if cmd == "" {
			cmd = "python3"
		}
		path, err := exec.LookPath(cmd)
		if err != nil {
			return pythonEnv{}, fmt.Errorf("no %s on PATH and no virtualenv option in Pulumi.yaml", cmd)
		}
		return pythonEnv{python: path}, nil
	}
	if !filepath.IsAbs(venv) {
		venv = filepath.Join(info.GetRootDirectory(), venv)
	}
	return pythonEnv{python: filepath.Join(venv, "bin", "python"), virtualenv: venv}, nil
}

func (p pythonEnv) exists() bool {
	_, err := os.Stat(p.python)
	return err == nil
}

// environ returns the environment for a child python: the virtualenv is activated the way its
// activate script would (VIRTUAL_ENV, bin first on PATH), and output is unbuffered so program
// logs reach the engine as they happen.
func (p pythonEnv) environ(extra ...string) []string {
	env := os.Environ()
	if p.virtualenv != "" {
		env = append(env,
			"VIRTUAL_ENV="+p.virtualenv,
			"PATH="+filepath.Join(p.virtualenv, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	env = append(env, "PYTHONUNBUFFERED=1")
	return append(env, extra...)
}

func optionString(info *pulumirpc.ProgramInfo, key string) string {
	opts := info.GetOptions()
	if opts == nil {
		return ""
	}
	v, ok := opts.GetFields()[key]
	if !ok {
		return ""
	}
	return v.GetStringValue()
}

// installedPackage is one distribution reported by listPackagesScript.
type installedPackage struct {
	Name    string          `json:"name"`
	Version string          `json:"version"`
	Plugin  *pluginManifest `json:"plugin,omitempty"`
}

// pluginManifest is the pulumi-plugin.json that Pulumi SDK packages ship.
type pluginManifest struct {
	Resource bool   `json:"resource"`
	Name     string `json:"name"`
	Version  string `json:"version"`
	Server   string `json:"server"`
}

// listPackagesScript prints every installed distribution and, when it ships one, its
// pulumi-plugin.json (which tells the engine which resource plugin and version it needs).
const listPackagesScript = `
import importlib.metadata as md, json, sys
out = []
for dist in md.distributions():
    entry = {"name": dist.metadata["Name"] or "", "version": dist.version or ""}
    for f in dist.files or []:
        if f.name == "pulumi-plugin.json":
            try:
                entry["plugin"] = json.loads(f.read_text())
            except (OSError, ValueError):
                pass
            break
    out.append(entry)
json.dump(out, sys.stdout)
`

func listPackages(ctx context.Context, py pythonEnv, dir string) ([]installedPackage, error) {
	cmd := exec.CommandContext(ctx, py.python, "-c", listPackagesScript)
	cmd.Dir = dir
	cmd.Env = py.environ()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing python packages with %s: %w: %s",
			py.python, err, strings.TrimSpace(stderr.String()))
	}
	var pkgs []installedPackage
	if err := json.Unmarshal(out, &pkgs); err != nil {
		return nil, fmt.Errorf("parsing the python package list: %w", err)
	}
	return pkgs, nil
}

// resourcePlugins turns installed Pulumi SDK packages into plugin requirements.
func resourcePlugins(pkgs []installedPackage) []*pulumirpc.PackageDependency {
	seen := map[string]bool{}
	var deps []*pulumirpc.PackageDependency
	for _, p := range pkgs {
		m := p.Plugin
		if m == nil || !m.Resource {
			continue
		}
		name := m.Name
		if name == "" {
			name = strings.TrimPrefix(strings.ToLower(p.Name), "pulumi-")
		}
		ver := m.Version
		if ver == "" {
			ver = p.Version
		}
		if !strings.HasPrefix(ver, "v") {
			ver = "v" + ver
		}
		if seen[name+"@"+ver] {
			continue
		}
		seen[name+"@"+ver] = true
		deps = append(deps, &pulumirpc.PackageDependency{
			Name: name, Kind: "resource", Version: ver, Server: m.Server,
		})
	}
	return deps
}
