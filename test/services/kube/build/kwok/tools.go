//go:build tools

// Package tools names the main package ../../lib.sh builds, so that `go mod tidy`
// records every module it needs in go.sum.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
