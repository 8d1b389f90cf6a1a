// Reference encoder for the cfs-encoders tests: real Go compress/gzip.
//
// usage: go run gogzip.go [-time] LEVEL IN OUT [LEVEL IN OUT ...]
//
// Each IN is compressed with gzip.NewWriterLevel(w, LEVEL) and a zero
// Header into OUT, fed in full 32 KiB writes as io.Copy from a file does.
// IN "-" streams standard input (for inputs too big to hold in memory);
// other inputs are read whole first. With -time, the compression time of
// each triple is printed to stderr.
// Stdlib only; kept as source so every test run compiles it with the Go
// that is installed.
package main

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"io/ioutil"
	"os"
	"runtime"
	"strconv"
	"time"
)

func compress(level int, in, out string, timed bool) error {
	var src io.Reader
	size := 0
	if in == "-" {
		src = os.Stdin
	} else {
		// ioutil rather than os.ReadFile keeps this running on Go < 1.16.
		data, err := ioutil.ReadFile(in)
		if err != nil {
			return err
		}
		src = &sliceReader{data}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	start := time.Now()
	zw, err := gzip.NewWriterLevel(bw, level)
	if err != nil {
		return err
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := io.ReadFull(src, buf)
		if n > 0 {
			size += n
			if _, err := zw.Write(buf[:n]); err != nil {
				return err
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if timed {
		secs := time.Since(start).Seconds()
		fmt.Fprintf(os.Stderr, "%s level %d %s: %d bytes, %.3f s, %.1f MB/s\n",
			runtime.Version(), level, in, size, secs, float64(size)/secs/1e6)
	}
	return f.Close()
}

// sliceReader hands out an in-memory input without copying it first.
type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func main() {
	args := os.Args[1:]
	timed := len(args) > 0 && args[0] == "-time"
	if timed {
		args = args[1:]
	}
	if len(args) == 0 || len(args)%3 != 0 {
		fmt.Fprintln(os.Stderr, "usage: gogzip [-time] LEVEL IN OUT [LEVEL IN OUT ...]")
		os.Exit(2)
	}
	for i := 0; i < len(args); i += 3 {
		level, err := strconv.Atoi(args[i])
		if err == nil {
			err = compress(level, args[i+1], args[i+2], timed)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "gogzip:", err)
			os.Exit(1)
		}
	}
}
