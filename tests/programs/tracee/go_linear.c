/* Go 1.8's 32-bit heap calls, made for real, under one of three acceptance rules.
 *
 *   go_linear legacy|fixed|go1.9 [MIB [HINT]]
 *
 * The mmap calls Go 1.8 to 1.10 make for their linear heap arena on 386 (docs/real-programs.md), so that
 * arena's reading of a process trace can be tested without Go 1.8's toolchain: one PROT_NONE reservation
 * of the metadata (258 MiB) + a 512 MiB arena + one 8 KiB page, hinted at HINT (default 0x4000000: low,
 * so that two growths and the hole between them fit below a 32-bit PIE program at 0x56...); then MIB MiB
 * (default 900) in 1 MiB sysAlloc requests, each committed with mmap(MAP_FIXED, read-write) at the
 * allocation cursor and written; a request that does not fit reserves 256 MiB PROT_NONE hinted at the
 * arena's end. Answered elsewhere, the rule decides: legacy (Go 1.8) takes any region and moves
 * arena_used to it (below: lowered under live memory); fixed (Go commit e5a5c03) takes only a region
 * above arena_end, else munmaps it and falls back to an unhinted read-write mapping of n + 8 KiB
 * (which, before Go 1.9, moves arena_used and arena_end to it); go1.9 takes it but moves only its
 * allocation cursor. The growths are 32-bit arithmetic as Go's: build it with -m32. Every "span" handed out must stay inside
 * [0, arena_used), or it stops as Go 1.8 did: "fatal error: heapBitsForSpan: base out of range",
 * exit 2. Prints one line, exit 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MIB (1UL << 20)
#define PAGE (8UL << 10)
#define META (258 * MIB)
#define STEP (256 * MIB)
#define MAX_SPANS 8192

enum { LEGACY, FIXED, GO19 };
static int rule;
static unsigned long used, cursor, end, spans[MAX_SPANS];
static int nspans;

static unsigned long round_up(unsigned long x, unsigned long a) { return (x + a - 1) / a * a; }

static void check(void) {
    for (int i = 0; i < nspans; i++)
        if (spans[i] >= used) {
            fprintf(stderr, "fatal error: heapBitsForSpan: base out of range\n");
            exit(2);
        }
}

static unsigned long fallback(unsigned long n) {
    void *p = mmap(NULL, n + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { fprintf(stderr, "go_linear: out of memory\n"); exit(1); }
    unsigned long q = round_up((unsigned long)p, PAGE), p_end = (unsigned long)p + n + PAGE;
    if (q + n > used) {
        used = q + n;
        /* Before Go 1.9 the cursor is arena_used itself, and arena_end follows it: arena_used <= arena_end. */
        if (rule != GO19) {
            cursor = used;
            if (p_end > end) end = p_end;
        }
    }
    return q;
}

static unsigned long sys_alloc(unsigned long n) {
    if (n > end - cursor) {
        unsigned long size = round_up(n + PAGE, STEP);
        /* Go's overflow check (uintptr arithmetic): a growth past the top is not tried. */
        if (end + size <= end) return fallback(n);
        void *r = mmap((void *)end, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        unsigned long p = (unsigned long)r;
        if (r == MAP_FAILED) return fallback(n);
        if (p == end) {
            end += size;
        } else if (rule == FIXED && p <= end) {
            munmap(r, size);
            return fallback(n);
        } else {
            end = p + size;
            cursor = round_up(p, PAGE);
            if (rule != GO19) used = cursor;
        }
    }
    /* Go's sysMap: MAP_FIXED read-write at the cursor, which the code above keeps inside this program's own
     * reservation (or its own fallback mapping) as Go 1.8's bookkeeping does; where that bookkeeping goes
     * wrong, so does this imitation's, which is what the tests observe. Only this test program makes the call,
     * in its own process: arena's tracer passes it to the kernel unchanged and never adds MAP_FIXED. */
    if (mmap((void *)cursor, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) {
        perror("go_linear: mmap MAP_FIXED");
        exit(1);
    }
    unsigned long q = cursor;
    cursor += n;
    if (cursor > used) used = cursor;
    return q;
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "legacy") && strcmp(argv[1], "fixed") && strcmp(argv[1], "go1.9"))) {
        fprintf(stderr, "usage: go_linear legacy|fixed|go1.9 [MIB [HINT]]\n");
        return 2;
    }
    rule = !strcmp(argv[1], "legacy") ? LEGACY : !strcmp(argv[1], "fixed") ? FIXED : GO19;
    unsigned long mib = argc > 2 ? strtoul(argv[2], NULL, 0) : 900;
    unsigned long hint = argc > 3 ? strtoul(argv[3], NULL, 0) : 0x4000000UL;
    unsigned long total = META + 512 * MIB + PAGE;
    void *p = mmap((void *)hint, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("go_linear: mmap"); return 1; }
    used = cursor = round_up((unsigned long)p, PAGE) + META;
    end = (unsigned long)p + total;
    for (unsigned long i = 0; i < mib; i++) {
        unsigned long q = sys_alloc(MIB);
        *(volatile char *)q = 1;
        if (nspans < MAX_SPANS) spans[nspans++] = q;
        check();
    }
    printf("go_linear %s: %lu MiB allocated\n", argv[1], mib);
    return 0;
}
