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
			fmt.Fprintf(cmd.OutOrStdout(), "loadlab %s (%s, %s/%s)\n", loadlab.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
