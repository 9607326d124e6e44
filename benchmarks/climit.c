/* The C limit: the syscalls the Python layers make, in a tight C loop.
 *
 * Built by benchmarks/Makefile twice from this one file:
 *   libclimit.so  loaded by cases.py with ctypes. Each function runs `loops`
 *                 operations, times them itself with CLOCK_MONOTONIC and returns
 *                 the elapsed nanoseconds (negative: -errno). cases.py hands that
 *                 time to pyperf's bench_time_func, so the C reference is run by
 *                 the same harness as the Python variants: same worker processes,
 *                 calibrated loops and statistics, scheduled in the same session
 *                 right next to them and again in every round (run.py --rounds),
 *                 which is what lets a ratio hold on a noisy machine. Timing inside
 *                 C keeps the one ctypes call per batch out of the C figure.
 *   climit        the same loops from the command line, printing ns/op:
 *                 climit pair|growth|commit|scale LOOPS [SIZE] [HINT] [EXACT]
 *
 * Untimed work (the first reservation of a growth batch, the release of a
 * batch, re-reserving an exhausted span) is done with the clock stopped, the
 * same way the Python cases keep arena creation and close() out of the time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
/* The flags of arena/sysmem: a reservation is PROT_NONE, private, no swap. */
#define RESERVE_FLAGS (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* exact: MAP_FIXED_NOREPLACE, what the confined (32-bit layout in a 64-bit
 * process) memory layer uses to take a hint; otherwise a plain hint. */
static void *reserve(uintptr_t hint, size_t size, int exact) {
    return mmap((void *)hint, size, PROT_NONE, RESERVE_FLAGS | (exact ? MAP_FIXED_NOREPLACE : 0), -1, 0);
}

/* OS layer: `loops` reserve + release pairs of `size` bytes at `hint`. */
int64_t climit_pair(uintptr_t hint, size_t size, int exact, uint64_t loops) {
    int64_t t0 = now_ns();
    for (uint64_t i = 0; i < loops; i++) {
        void *p = reserve(hint, size, exact);
        if (p == MAP_FAILED)
            return -errno;
        if (munmap(p, size))
            return -errno;
    }
    return now_ns() - t0;
}

/* Arena growth: batches of `batch` contiguous reservations of `step` bytes,
 * each at hint = the end of the previous one and each followed by the commit
 * sys_alloc makes (`commit` bytes from the cursor, which sits `step - commit`
 * bytes before the new block, as after the arena's previous sys_alloc). The
 * batch's first reservation (the arena's) and its release are not timed.
 * With commit == step it is Go 1.11's heap arena growth: each reservation at
 * the hint, then all of it made read-write (sysMap). */
int64_t climit_growth(uintptr_t base, size_t step, size_t commit, int exact, uint64_t batch, uint64_t loops) {
    int64_t total = 0;
    uint64_t done = 0;
    while (done < loops) {
        uint64_t n = loops - done < batch ? loops - done : batch;
        char *first = reserve(base, step, exact);
        if (first == MAP_FAILED)
            return -errno;
        if ((uintptr_t)first != base) {
            munmap(first, step);
            return -EADDRINUSE;
        }
        char *end = first + step, *cursor = end - (step - commit);
        int64_t t0 = now_ns();
        for (uint64_t i = 0; i < n; i++) {
            char *p = reserve((uintptr_t)end, step, exact);
            if (p != end) {
                int e = p == MAP_FAILED ? errno : EADDRINUSE;
                if (p != MAP_FAILED)
                    munmap(p, step);
                munmap(first, end - first);
                return -e;
            }
            end += step;
            if (mprotect(cursor, commit, PROT_READ | PROT_WRITE))
                return -errno;
            cursor += commit;
        }
        total += now_ns() - t0;
        munmap(first, end - first);
        done += n;
    }
    return total;
}

/* Arena allocation: commits of `size` bytes walking through a reservation of
 * `span` bytes at `hint`; an exhausted span is replaced with the clock stopped. */
int64_t climit_commit(uintptr_t hint, size_t span, size_t size, int exact, uint64_t loops) {
    int64_t total = 0;
    uint64_t done = 0;
    while (done < loops) {
        char *base = reserve(hint, span, exact);
        if (base == MAP_FAILED)
            return -errno;
        uint64_t n = span / size;
        if (n > loops - done)
            n = loops - done;
        int64_t t0 = now_ns();
        for (uint64_t i = 0; i < n; i++)
            if (mprotect(base + i * size, size, PROT_READ | PROT_WRITE))
                return -errno;
        total += now_ns() - t0;
        munmap(base, span);
        done += n;
    }
    return total;
}

#ifdef CLIMIT_MAIN
int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s pair|growth|commit LOOPS [SIZE] [HINT] [EXACT]\n", argv[0]);
        return 2;
    }
    uint64_t loops = strtoull(argv[2], NULL, 0);
    size_t size = argc > 3 ? strtoull(argv[3], NULL, 0) : 65536;
    uintptr_t hint = argc > 4 ? strtoull(argv[4], NULL, 0) : (sizeof(void *) == 8 ? 0xc000000000ULL : 0x40000000UL);
    int exact = argc > 5 ? atoi(argv[5]) : 0;
    size_t step = 256UL << 20;
    int64_t ns;
    if (!strcmp(argv[1], "pair"))
        ns = climit_pair(hint, size, exact, loops);
    else if (!strcmp(argv[1], "growth"))
        ns = climit_growth(hint, step, step - 8192, exact, 8, loops);
    else if (!strcmp(argv[1], "commit"))
        ns = climit_commit(hint, step, size, exact, loops);
    else {
        fprintf(stderr, "unknown scenario %s\n", argv[1]);
        return 2;
    }
    if (ns < 0) {
        fprintf(stderr, "%s failed: %s\n", argv[1], strerror((int)-ns));
        return 1;
    }
    printf("%s %.1f ns/op\n", argv[1], (double)ns / (double)loops);
    return 0;
}
#endif
