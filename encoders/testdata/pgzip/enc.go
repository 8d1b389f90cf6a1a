// Command enc compresses stdin to stdout with klauspost/pgzip NewWriter
// (DefaultCompression) and the block size given as the first argument
// (bytes; 0 keeps pgzip's default of 1 MiB), as containers/image (1 MiB) and
// umoci 0.4.x (SetConcurrency(256<<10, 2*NumCPU)) call it. Ground truth for
// the tests in encoders/src/klauspost; built against whichever pgzip and
// klauspost/compress the build finds (Debian's packages in GOPATH mode, or a
// go.mod whose replace directives name a fetched tag).
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"

	"github.com/klauspost/pgzip"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "enc:", err)
		os.Exit(1)
	}
}

func run() error {
	block := 0
	if len(os.Args) > 1 {
		n, err := strconv.Atoi(os.Args[1])
		if err != nil {
			return err
		}
		block = n
	}
	out := bufio.NewWriter(os.Stdout)
	w := pgzip.NewWriter(out)
	if block != 0 {
		if err := w.SetConcurrency(block, 2*runtime.NumCPU()); err != nil {
			return err
		}
	}
	if _, err := io.Copy(w, bufio.NewReader(os.Stdin)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return out.Flush()
}
