/* A linear heap arena that grows the way Go 1.8's did on 32-bit, with its bug, or with the fix.
 *
 *   linear_arena go1.8|fixed GROWTHS [SIZE] [HINT]
 *
 * It reserves SIZE bytes (PROT_NONE, hinted at HINT), then GROWTHS times: uses the whole reservation
 * (read-write, one byte written per page run), then reserves SIZE more hinted at the arena's end, as
 * Go 1.8's sysAlloc did. Answered elsewhere, go1.8 takes the region wherever it is and sets its
 * "used" bound to it: a region below lowers the bound under live memory, and the next check of the
 * live spans fails as Go 1.8 failed (Go issue 20259). "fixed" refuses a region below what is used
 * (releases it), as Go's commit e5a5c03 does. Prints one line per growth; exit 0, or 2 with
 * "fatal error: heapBitsForSpan: base out of range" on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MAX_SPANS 4096

static unsigned long spans[MAX_SPANS];
static int nspans;
static unsigned long arena_start, arena_used, arena_end;

static void check_spans(void) {
    for (int i = 0; i < nspans; i++) {
        if (spans[i] < arena_start || spans[i] >= arena_used) {
            fprintf(stderr, "fatal error: heapBitsForSpan: base out of range\n");
            fprintf(stderr, "span base %#lx, arena [%#lx, %#lx)\n", spans[i], arena_start, arena_used);
            exit(2);
        }
    }
}

static void use_all(void) {
    /* Allocate spans up to the reservation's end: commit it and write to it. */
    if (arena_end > arena_used) {
        if (mprotect((void *)arena_used, arena_end - arena_used, PROT_READ | PROT_WRITE)) {
            perror("mprotect");
            exit(1);
        }
        for (unsigned long p = arena_used; p < arena_end; p += 1 << 20) {
            *(volatile char *)p = 1;
            if (nspans < MAX_SPANS) spans[nspans++] = p;
        }
        arena_used = arena_end;
    }
    check_spans();
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int fixed = strcmp(argv[1], "fixed") == 0;
    int growths = atoi(argv[2]);
    unsigned long size = argc > 3 ? strtoul(argv[3], NULL, 0) : 16UL << 20;
    unsigned long hint = argc > 4 ? strtoul(argv[4], NULL, 0) : (sizeof(void *) == 8 ? 0x200000000UL : 0x10000000UL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    void *p = mmap((void *)hint, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    arena_start = arena_used = (unsigned long)p;
    arena_end = arena_start + size;
    printf("reserved %#lx\n", arena_start);
    for (int g = 1; g <= growths; g++) {
        use_all();
        unsigned long q = (unsigned long)mmap((void *)arena_end, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (q == (unsigned long)MAP_FAILED) { printf("growth %d: no room\n", g); continue; }
        if (q == arena_end) {
            arena_end += size;
            printf("growth %d: %#lx contiguous\n", g, q);
        } else if (fixed && q < arena_used) {
            munmap((void *)q, size);
            printf("growth %d: %#lx below the arena, refused\n", g, q);
        } else {
            printf("growth %d: %#lx accepted, used was %#lx\n", g, q, arena_used);
            arena_end = q + size;
            arena_used = q;
        }
    }
    use_all();
    printf("ok\n");
    return 0;
}
