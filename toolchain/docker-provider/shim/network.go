package shim

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/client"
	"github.com/hashicorp/terraform-plugin-sdk/v2/diag"
	"github.com/hashicorp/terraform-plugin-sdk/v2/helper/schema"

	upstream "github.com/terraform-providers/terraform-provider-docker/internal/provider"
)

// How long a network deletion waits for its last endpoints to go, and how often it asks again.
const (
	networkRemoveTimeout = 30 * time.Second
	networkRemovePoll    = 100 * time.Millisecond
)

// removeNetworkPromptly replaces the upstream's delete of docker_network, which sleeps a fixed
// 2 s before it first asks the engine to remove the network (a retry.StateChangeConf with a
// Delay): on a small stack that sleep was half of `pulumi destroy`. This asks at once and, while
// the engine still reports active endpoints (containers removed a moment ago), asks again every
// 100 ms, up to the same 30 s as upstream. A network that is already gone counts as removed.
func removeNetworkPromptly(ctx context.Context, d *schema.ResourceData, meta any) diag.Diagnostics {
	config, ok := meta.(*upstream.ProviderConfig)
	if !ok {
		return diag.Errorf("docker_network delete: unexpected provider configuration %T", meta)
	}
	docker, err := config.MakeClient(ctx, d)
	if err != nil {
		return diag.FromErr(fmt.Errorf("failed to create Docker client: %w", err))
	}
	deadline := time.Now().Add(networkRemoveTimeout)
	for {
		err := docker.NetworkRemove(ctx, d.Id())
		if err == nil || client.IsErrNotFound(err) {
			d.SetId("")
			return nil
		}
		busy := strings.Contains(strings.ToLower(err.Error()), "has active endpoints")
		if !busy || time.Now().After(deadline) {
			return diag.Errorf("removing network %s: %s", d.Id(), err)
		}
		select {
		case <-ctx.Done():
			return diag.FromErr(ctx.Err())
		case <-time.After(networkRemovePoll):
		}
	}
}

// withPromptNetworkRemoval sets removeNetworkPromptly as docker_network's delete.
func withPromptNetworkRemoval(p *schema.Provider) *schema.Provider {
	if network, ok := p.ResourcesMap["docker_network"]; ok {
		network.DeleteContext = removeNetworkPromptly
	}
	return p
}
