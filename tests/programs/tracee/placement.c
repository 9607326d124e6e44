/* One hinted mapping, judged by where it landed: a small target for the real-program hunt's tests.
 *
 *   placement alternate FILE  exit 0 if the mapping is at its hint; else append a byte to FILE and fail (exit 3)
 *                        when FILE is then of odd length: every other such run fails, whatever runs at once (flaky)
 *   placement unchecked  writes to the mapping without checking for MAP_FAILED: a refused call is a SIGSEGV
 *   placement oom        a refused call: prints "placement: out of memory" and exits 1; else exit 0
 *
 * The mapping is 16 MiB, read-write, hinted at 0x300000000 (64-bit) or 0x30000000 (32-bit).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "alternate") && strcmp(argv[1], "unchecked") && strcmp(argv[1], "oom"))) {
        fprintf(stderr, "usage: placement alternate FILE|unchecked|oom\n");
        return 2;
    }
    unsigned long hint = sizeof(void *) == 8 ? 0x300000000UL : 0x30000000UL, size = 16UL << 20;
    char *p = mmap((void *)hint, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (strcmp(argv[1], "unchecked") == 0) {
        p[0] = 1;
        return 0;
    }
    if (p == MAP_FAILED) {
        if (strcmp(argv[1], "oom") == 0) {
            fprintf(stderr, "placement: out of memory\n");
            return 1;
        }
        return 2;
    }
    if (strcmp(argv[1], "alternate") == 0 && argc == 3 && (unsigned long)p != hint) {
        /* An O_APPEND write is atomic and leaves this descriptor's offset just past its own byte: concurrent
         * runs each see their own length (fstat could see another run's byte too). */
        int fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0600);
        off_t length;
        if (fd < 0 || write(fd, "x", 1) != 1 || (length = lseek(fd, 0, SEEK_CUR)) < 0) return 2;
        if (length % 2) {
            fprintf(stderr, "placement: unlucky\n");
            return 3;
        }
    }
    return 0;
}
