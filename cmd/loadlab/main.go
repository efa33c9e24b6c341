// Command loadlab serves, balances and load-tests HTTP servers, and runs the
// network-programming lab's whole experiment. This file only wires flags to
// the internal packages.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// usageError is a mistake on the command line: exit status 2, as flag
// parsers do, with a pointer to --help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func main() {
	root := &cobra.Command{
		Use:           "loadlab",
		Short:         "See how web servers behave under load",
		Long:          "loadlab serves, balances and load-tests HTTP servers, and runs the lab's whole experiment.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCommand(), newVersionCommand())
	cmd, err := root.ExecuteC()
	if err == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "loadlab: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || cmd == root {
		fmt.Fprintf(os.Stderr, "run '%s --help' for usage\n", cmd.CommandPath())
		os.Exit(2)
	}
	os.Exit(1)
}

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, but was given %q", cmd.CommandPath(), args[0])
	}
	return nil
}
