// Package java stands in for Pulumi's Java code generator, whose module the Go proxy here does
// not serve. pulumi-terraform-bridge links it only for program conversion, which the c2c docker
// provider never does.
package java

import (
	"errors"

	"github.com/hashicorp/hcl/v2"
	"github.com/pulumi/pulumi/pkg/v3/codegen/pcl"
)

// name is the language this stand-in replaces, for the error message.
const name = "Java"

// GenerateProgram is never called by the docker provider (it only serves resources); converting
// programs to this language is not part of this build.
func GenerateProgram(_ *pcl.Program) (map[string][]byte, hcl.Diagnostics, error) {
	return nil, nil, errors.New(name + " program generation is not included in this build")
}
