// Allocates MIB mebibytes (default 300) in 1 MiB slices kept live, writes every page of each (as a program
// using its memory does), checks them, prints "ok MIB MiB".
package main

import (
	"fmt"
	"os"
	"strconv"
)

func main() {
	mib := 300
	if len(os.Args) > 1 {
		mib, _ = strconv.Atoi(os.Args[1])
	}
	live := make([][]byte, 0, mib)
	for i := 0; i < mib; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(i)
		}
		b[len(b)-1] = byte(i)
		live = append(live, b)
	}
	for i, b := range live {
		if b[0] != byte(i) || b[len(b)-1] != byte(i) {
			fmt.Println("corrupt", i)
			os.Exit(1)
		}
	}
	fmt.Println("ok", mib, "MiB")
}
