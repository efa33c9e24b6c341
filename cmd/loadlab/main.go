// Command loadlab serves, balances and load-tests HTTP servers, and runs the
// network-programming lab's whole experiment. This file only wires flags to
// the internal packages.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/pprof"

	"loadlab"

	"github.com/spf13/cobra"
)

// usageError is a mistake on the command line: exit status 2, as flag
// parsers do (bench uses ab's 22), with a pointer to --help.
type usageError struct {
	err  error
	code int
}

func (e usageError) Error() string { return e.err.Error() }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...), 2} }

// exitCode ends the program with a status and nothing more to say: the
// command has printed what it had.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func main() {
	root := &cobra.Command{
		Use:           "loadlab",
		Short:         "See how web servers behave under load",
		Long:          "loadlab serves, balances and load-tests HTTP servers, and runs the lab's whole experiment.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       loadlab.Version,
	}
	root.SetVersionTemplate(versionLine() + "\n")
	var cpuProfile string
	root.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile of the command to this file")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if cpuProfile == "" {
			return nil
		}
		out, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		return pprof.StartCPUProfile(out)
	}
	root.PersistentPostRun = func(*cobra.Command, []string) { pprof.StopCPUProfile() }
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err, 2} })
	root.AddCommand(newServeCommand(), newBenchCommand(), newBalanceCommand(), newLabCommand(), newVersionCommand())
	cmd, err := root.ExecuteC()
	if err == nil {
		return
	}
	var code exitCode
	if errors.As(err, &code) {
		os.Exit(int(code))
	}
	fmt.Fprintf(os.Stderr, "loadlab: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || cmd == root {
		fmt.Fprintf(os.Stderr, "run '%s --help' for usage\n", cmd.CommandPath())
		if ue.code != 0 {
			os.Exit(ue.code)
		}
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
