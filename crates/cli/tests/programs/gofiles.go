// A Go program under `rktio run` (crates/cli/tests/run_go.rs): the Go runtime
// makes its system calls itself, on goroutine stacks, from threads it starts
// with raw clone, and preempts goroutines with signals (SIGURG). Its files on
// the sealed mount (argv[1]) from several goroutines at once, while a busy
// goroutine is preempted; a socket without [net] is refused; a child process
// (fork and exec, as os/exec does) runs. Prints one line per check.
package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		fmt.Println("child ran")
		return
	}
	dir, secret := os.Args[1], os.Args[2]
	runtime.GOMAXPROCS(4)

	// A goroutine that never calls a function: only an asynchronous
	// preemption (a signal) lets the garbage collector stop it.
	var stop atomic.Bool
	var spins atomic.Uint64
	go func() {
		n := uint64(0)
		for !stop.Load() {
			n++
		}
		spins.Store(n)
	}()

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p := filepath.Join(dir, fmt.Sprintf("g%d.txt", i))
			data := bytes.Repeat([]byte(secret), 500+i)
			for round := 0; round < 20; round++ {
				if err := os.WriteFile(p, data, 0o644); err != nil {
					errs <- err
					return
				}
				got, err := os.ReadFile(p)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("%s read back differs", p)
					return
				}
				runtime.GC()
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	time.Sleep(50 * time.Millisecond)
	runtime.GC()
	stop.Store(true)
	fmt.Println("goroutines: 8")

	if err := os.Rename(filepath.Join(dir, "g0.txt"), filepath.Join(dir, "renamed.txt")); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	f, err := os.OpenFile(filepath.Join(dir, "renamed.txt"), os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if _, err := f.WriteString("\n" + secret + "\n"); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if err := f.Sync(); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	f.Close()
	entries, err := os.ReadDir(dir)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	fmt.Println("entries:", names)
	st, err := os.Stat(filepath.Join(dir, "g7.txt"))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("size:", st.Size())

	// No [net]: a socket is refused, as for a C program.
	if _, err := net.Listen("tcp", "127.0.0.1:0"); err != nil {
		fmt.Println("listen refused:", err)
	} else {
		fmt.Println("listen: allowed")
	}

	out, err := exec.Command(os.Args[0], "child").Output()
	if err != nil {
		fmt.Println("error: child:", err)
		os.Exit(1)
	}
	fmt.Print("child: ", string(out))
	fmt.Println("done")
}
