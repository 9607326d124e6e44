// Command grow keeps live data across many heap growths, collects garbage
// all along, and checks every byte of its live data before it exits.
//
// It is the test program of arena's real-program runs: on 386 with Go 1.8 the
// heap starts in one reservation holding a 512 MiB arena and grows in 256 MiB
// reservations hinted at the previous end, so the default live size (640 MiB)
// makes the heap grow past the first arena at least twice. If a growth ever
// turns live heap into something the collector does not know, the data
// checks below (or the runtime's own checks) fail.
//
// Usage: grow [MiB]   (or GROW_MIB=...; default 640) - the live data to hold.
// GROW_CORRUPT=1 changes one live byte before the last check (tests the check).
//
// Prints one line. Exit status 0: every byte checked out; 1: corruption (the
// line says where); 2: bad usage.
//
// It builds with Go 1.8 and with current Go: no modules, no generics.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

const (
	defaultMiB = 640
	// Live data arrives in chunks of these sizes in turn: large objects
	// straight from the heap, each a fresh span when the heap grows.
	minChunk = 64 << 10
	maxChunk = 4 << 20
	// Small live objects per chunk: they fill spans from the central lists,
	// the path that meets a growth the runtime does not account for.
	nodesPerChunk = 64
	// A full check of everything live each time this much more is live.
	checkEvery = 128 << 20
)

// A node is a small live object with pointers, so the collector must trace it.
type node struct {
	next *node
	id   uint32
	data [13]uint32
}

// pattern is what word i of live object id holds, four bytes none of them
// zero: a zeroed, moved or reused page shows up as a mismatch. Live data is
// made of words so that checking every byte costs one compare per four.
func pattern(id, i uint32) uint32 {
	return (id+1)*0x9e3779b1 ^ i*0x85ebca6b | 0x01010101
}

func fill(w []uint32, id uint32) {
	for i := range w {
		w[i] = pattern(id, uint32(i))
	}
}

// check returns the first index of w not holding its pattern, or -1.
func check(w []uint32, id uint32) int {
	for i := range w {
		if w[i] != pattern(id, uint32(i)) {
			return i
		}
	}
	return -1
}

type live struct {
	chunks [][]uint32
	nodes  *node
	nnodes int
	bytes  int
	checks int
}

func (l *live) add(size int) {
	id := uint32(len(l.chunks))
	c := make([]uint32, size/4)
	fill(c, id)
	l.chunks = append(l.chunks, c)
	l.bytes += size
	for k := 0; k < nodesPerChunk; k++ {
		n := &node{next: l.nodes, id: uint32(l.nnodes)}
		fill(n.data[:], n.id|1<<31)
		l.nodes = n
		l.nnodes++
	}
}

// verify checks every live byte and exits with status 1 at the first mismatch.
func (l *live) verify(when string) {
	l.checks++
	for id, c := range l.chunks {
		if i := check(c, uint32(id)); i >= 0 {
			fail("%s: chunk %d (%d bytes at %p) word %d (byte %d) is %#08x, want %#08x",
				when, id, 4*len(c), &c[0], i, 4*i, c[i], pattern(uint32(id), uint32(i)))
		}
	}
	want := l.nnodes
	for n := l.nodes; n != nil; n = n.next {
		want--
		if n.id != uint32(want) {
			fail("%s: node list broken at %p: id %d, want %d", when, n, n.id, want)
		}
		if i := check(n.data[:], n.id|1<<31); i >= 0 {
			fail("%s: node %d at %p word %d is %#08x", when, n.id, n, i, n.data[i])
		}
	}
	if want != 0 {
		fail("%s: node list ends %d nodes early", when, want)
	}
}

func fail(format string, args ...interface{}) {
	fmt.Printf("grow: CORRUPT: "+format+"\n", args...)
	os.Exit(1)
}

// churn makes short-lived garbage of many sizes, some of it holding pointers.
var sink interface{}

func churn(round int) {
	for k := 0; k < 64; k++ {
		size := 16 << uint((round+k)%15) // 16 B .. 256 KiB
		b := make([]byte, size)
		b[0], b[size-1] = byte(k), byte(round)
		sink = b
		sink = &node{next: &node{id: uint32(k)}}
	}
	sink = nil
}

func size() int {
	arg := os.Getenv("GROW_MIB")
	if len(os.Args) > 2 {
		usage("too many arguments")
	}
	if len(os.Args) == 2 {
		arg = os.Args[1]
	}
	if arg == "" {
		return defaultMiB << 20
	}
	// At most 1 GiB: a 386 heap holding it grows to about 1.4 GiB, and byte
	// counts stay within a 32-bit int.
	mib, err := strconv.Atoi(arg)
	if err != nil || mib < 1 || mib > 1024 {
		usage(fmt.Sprintf("the live size must be a whole number of MiB from 1 to 1024, not %q", arg))
	}
	return mib << 20
}

func usage(why string) {
	fmt.Fprintf(os.Stderr, "grow: %s\nusage: grow [MiB]  (or GROW_MIB=MiB; default %d)\n", why, defaultMiB)
	os.Exit(2)
}

func main() {
	target := size()
	start := time.Now()
	l := &live{}
	next := checkEvery
	chunk := minChunk
	for round := 0; l.bytes < target; round++ {
		size := chunk
		if size > target-l.bytes {
			size = target - l.bytes
		}
		l.add(size)
		if chunk *= 2; chunk > maxChunk {
			chunk = minChunk
		}
		churn(round)
		if l.bytes >= next {
			runtime.GC()
			l.verify(fmt.Sprintf("after %d MiB", l.bytes>>20))
			next += checkEvery
		}
	}
	runtime.GC()
	if os.Getenv("GROW_CORRUPT") != "" {
		// Proves the check can fail: one byte of live data changes.
		c := l.chunks[len(l.chunks)/2]
		c[len(c)/2] ^= 0x100
	}
	l.verify("at the end")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("grow: ok: %d MiB live in %d chunks and %d nodes, %d full checks, %d collections, heap %d MiB from the system; %s %s/%s; %.2f s\n",
		l.bytes>>20, len(l.chunks), l.nnodes, l.checks, ms.NumGC, ms.HeapSys>>20,
		runtime.Version(), runtime.GOOS, runtime.GOARCH, time.Since(start).Seconds())
}
