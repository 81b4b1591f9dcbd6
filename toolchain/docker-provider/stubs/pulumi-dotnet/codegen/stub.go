// Package codegen stands in for Pulumi's .NET code generator (module not served by the Go proxy
// here). pulumi-terraform-bridge uses its program generator (never called by this provider) and
// three plain structs that it serialises into the schema's "csharp" language section.
package codegen

import (
	"errors"

	"github.com/hashicorp/hcl/v2"
	"github.com/pulumi/pulumi/pkg/v3/codegen/pcl"
)

// name is the language this stand-in replaces, for the error message.
const name = "C#"

// GenerateProgram is never called by the docker provider (it only serves resources); converting
// programs to this language is not part of this build.
func GenerateProgram(_ *pcl.Program) (map[string][]byte, hcl.Diagnostics, error) {
	return nil, nil, errors.New(name + " program generation is not included in this build")
}

// CSharpPackageInfo mirrors the fields the bridge sets for the package-level csharp section.
type CSharpPackageInfo struct {
	PackageReferences            map[string]string `json:"packageReferences,omitempty"`
	Namespaces                   map[string]string `json:"namespaces,omitempty"`
	RootNamespace                string            `json:"rootNamespace,omitempty"`
	Compatibility                string            `json:"compatibility,omitempty"`
	DictionaryConstructors       bool              `json:"dictionaryConstructors,omitempty"`
	ProjectReferences            []string          `json:"projectReferences,omitempty"`
	LiftSingleValueMethodReturns bool              `json:"liftSingleValueMethodReturns,omitempty"`
	RespectSchemaVersion         bool              `json:"respectSchemaVersion,omitempty"`
}

// CSharpPropertyInfo carries a property's C# name override.
type CSharpPropertyInfo struct {
	Name string `json:"name,omitempty"`
}

// CSharpResourceInfo carries a resource's C# name override.
type CSharpResourceInfo struct {
	Name string `json:"name,omitempty"`
}
