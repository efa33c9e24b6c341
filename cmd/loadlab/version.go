package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"loadlab"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print loadlab's version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), versionLine())
			return nil
		},
	}
}

// versionLine is what `loadlab version` and `loadlab --version` print.
func versionLine() string {
	return fmt.Sprintf("loadlab %s (%s, %s/%s)", loadlab.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
