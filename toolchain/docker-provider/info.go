package main

import (
	"context"

	pftfbridge "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	tks "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"

	"github.com/terraform-providers/terraform-provider-docker/shim"
)

const (
	pkgName = "docker"
	mainMod = "index"
)

// providerInfo maps the upstream Terraform resources onto the tokens and property names that the
// published pulumi-docker SDKs (pinned in the project) send. Only names that differ from the
// bridge's defaults are listed; everything else is derived by the bridge.
func providerInfo(ctx context.Context, metadataJSON []byte) tfbridge.ProviderInfo {
	sdkProv := shimv2.NewProvider(shim.NewSDKProvider(version))
	muxed := pftfbridge.MuxShimWithPF(ctx, sdkProv, shim.NewFrameworkProvider(version))

	prov := tfbridge.ProviderInfo{
		P:            muxed,
		Name:         pkgName,
		Version:      version,
		Description:  "Docker provider for the c2c project, bridged from the Terraform docker provider",
		License:      "Apache-2.0",
		MetadataInfo: tfbridge.NewProviderMetadata(metadataJSON),
		Config: map[string]*tfbridge.SchemaInfo{
			"host": {
				Default: &tfbridge.DefaultInfo{
					Value:   "unix:///var/run/docker.sock",
					EnvVars: []string{"DOCKER_HOST"},
				},
			},
			// The SDKs call this config key "registryAuth" (singular) although it is a list.
			"registry_auth": {Name: "registryAuth"},
		},
		Resources: map[string]*tfbridge.ResourceInfo{
			"docker_config": {Tok: tfbridge.MakeResource(pkgName, mainMod, "ServiceConfig")},
			"docker_container": {
				Tok: tfbridge.MakeResource(pkgName, mainMod, "Container"),
				// A container name is unique per engine: the old one must go before the new one.
				DeleteBeforeReplace: true,
				Fields: map[string]*tfbridge.SchemaInfo{
					// One command (argv list), and a block that the SDKs keep singular.
					"command":           {Name: "command"},
					"networks_advanced": {Name: "networksAdvanced"},
				},
			},
			"docker_image": {
				Tok:    tfbridge.MakeResource(pkgName, mainMod, "RemoteImage"),
				Fields: map[string]*tfbridge.SchemaInfo{"name": {Name: "name"}},
			},
		},
		DataSources: map[string]*tfbridge.DataSourceInfo{
			"docker_image": {Tok: tfbridge.MakeDataSource(pkgName, mainMod, "getRemoteImage")},
		},
	}

	prov.MustComputeTokens(tks.SingleModule("docker_", mainMod, tks.MakeStandard(pkgName)))
	prov.SetAutonaming(255, "-")
	return prov
}
