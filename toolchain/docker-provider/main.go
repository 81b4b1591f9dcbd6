// Command pulumi-resource-docker is the c2c project's build of a Pulumi docker resource provider.
//
// It bridges the upstream Terraform docker provider (kreuzwerker) with pulumi-terraform-bridge,
// using the tokens and names of the pinned pulumi-docker SDK, and reports the pinned version.
//
// Usage:
//
//	pulumi-resource-docker [engine flags] <engine-address>   serve (started by the Pulumi engine)
//	pulumi-resource-docker -c2c-gen-schema <dir>             write schema.json and bridge-metadata.json
//	                                                        (to inspect what the provider serves)
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	pftfbridge "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfgen"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/x/muxer"
	"github.com/pulumi/pulumi-terraform-bridge/v3/unstable/metadata"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag/colors"
)

// version is stamped at build time (-ldflags "-X main.version=...") with the pulumi-docker version
// whose SDK the project pins, so the engine's version checks match.
var version = "0.0.0-dev"

const genFlag = "-c2c-gen-schema"

func main() {
	ctx := context.Background()
	if len(os.Args) == 3 && os.Args[1] == genFlag {
		if err := writeSchema(ctx, os.Args[2]); err != nil {
			fmt.Fprintf(os.Stderr, "pulumi-resource-docker: %v\n", err)
			os.Exit(1)
		}
		return
	}

	info, schemaJSON, err := prepare(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-docker: %v\n", err)
		os.Exit(1)
	}
	pftfbridge.MainWithMuxer(ctx, pkgName, info, schemaJSON)
}

// prepare returns the provider info, with the mux dispatch table recorded in its metadata, and the
// Pulumi package schema. pulumi-docker ships a schema generated at its own build time; here both
// derive from the compiled-in upstream provider and mapping, so they are generated at start-up
// (about 0.1 s), which keeps the binary, its schema and its dispatch table from ever disagreeing.
func prepare(ctx context.Context) (tfbridge.ProviderInfo, []byte, error) {
	info := providerInfo(ctx, []byte("{}"))
	if err := recordDispatch(&info); err != nil {
		return info, nil, err
	}
	sink := diag.DefaultSink(io.Discard, os.Stderr, diag.FormatOptions{Color: colors.Never})
	spec, err := tfgen.GenerateSchemaWithOptions(tfgen.GenerateSchemaOptions{
		ProviderInfo:    info,
		DiagnosticsSink: sink,
		// Docs come from the Terraform schema only: no source checkout or network needed.
		XInMemoryDocs: true,
	})
	if err != nil {
		return info, nil, fmt.Errorf("generating schema: %w", err)
	}
	out, err := json.MarshalIndent(spec.PackageSpec, "", "  ")
	if err != nil {
		return info, nil, fmt.Errorf("encoding schema: %w", err)
	}
	return info, out, nil
}

// recordDispatch computes which half of the muxed upstream (SDKv2 or plugin framework) serves each
// token. Pulumi's own builds precompute this in tfgen; doing it here keeps one source of truth.
func recordDispatch(info *tfbridge.ProviderInfo) error {
	muxShim, ok := info.P.(interface {
		ResolveDispatch(*tfbridge.ProviderInfo) (muxer.DispatchTable, error)
	})
	if !ok {
		return fmt.Errorf("provider shim %T cannot resolve mux dispatch", info.P)
	}
	dispatch, err := muxShim.ResolveDispatch(info)
	if err != nil {
		return fmt.Errorf("computing mux dispatch: %w", err)
	}
	return metadata.Set(info.GetMetadata(), "mux", dispatch)
}

func writeSchema(ctx context.Context, dir string) error {
	info, schemaJSON, err := prepare(ctx)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "schema.json"), schemaJSON, 0o644); err != nil {
		return err
	}
	meta := (*metadata.Data)(info.GetMetadata()).MarshalIndent()
	return os.WriteFile(filepath.Join(dir, "bridge-metadata.json"), meta, 0o644)
}
