// Package shim re-exports the constructors of the upstream Terraform docker provider, with one
// change of ours (network.go).
//
// The upstream keeps them in an internal package. Go allows importing an internal package only
// from below its parent path, so this tiny module lives at
// github.com/terraform-providers/terraform-provider-docker/shim (the upstream module's own path).
package shim

import (
	fwprovider "github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-sdk/v2/helper/schema"

	upstream "github.com/terraform-providers/terraform-provider-docker/internal/provider"
)

// NewSDKProvider returns the upstream SDKv2 half of the provider (most resources), with
// docker_network's delete replaced by one that does not sleep first (network.go).
func NewSDKProvider(version string) *schema.Provider {
	return withPromptNetworkRemoval(upstream.New(version)())
}

// NewFrameworkProvider returns the upstream plugin-framework half of the provider.
func NewFrameworkProvider(version string) fwprovider.Provider {
	return upstream.NewFrameworkProvider(version)()
}
