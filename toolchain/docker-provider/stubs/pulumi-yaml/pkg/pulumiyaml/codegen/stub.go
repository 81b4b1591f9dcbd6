// Package codegen stands in for Pulumi YAML's code generator (module not served by the Go proxy
// here); pulumi-terraform-bridge links it only for program conversion, unused by this provider.
package codegen

import (
	"errors"

	"github.com/hashicorp/hcl/v2"
	"github.com/pulumi/pulumi/pkg/v3/codegen/pcl"
)

// name is the language this stand-in replaces, for the error message.
const name = "YAML"

// GenerateProgram is never called by the docker provider (it only serves resources); converting
// programs to this language is not part of this build.
func GenerateProgram(_ *pcl.Program) (map[string][]byte, hcl.Diagnostics, error) {
	return nil, nil, errors.New(name + " program generation is not included in this build")
}
