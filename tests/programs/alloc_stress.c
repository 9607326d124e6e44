/* alloc_stress - a multi-threaded allocator stress test that checks every byte.
 *
 *   alloc_stress [THREADS [OPS [SEED]]]     (defaults 4, 20000, 1)
 *
 * Each thread owns a table of slots and does OPS operations on them, drawn
 * from its own generator (seeded from SEED and the thread's number, so a run
 * is the same every time): malloc, calloc, posix_memalign and aligned_alloc
 * with alignments up to 4 MiB, realloc and free, sizes from 1 byte to 40 MiB
 * (large ones reach the allocator's own mmap calls). Every allocation is
 * filled with a pattern derived from its tag and offset and checked in full
 * before it is grown, shrunk or freed, and once more at the end.
 * ALLOC_STRESS_CORRUPT=1 changes one byte before a check (tests the check).
 *
 * Prints one line. Exit status 0: every byte checked out; 1: corruption or a
 * misaligned answer (the line says which thread, allocation and byte);
 * 2: bad usage or an allocation that failed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 256
#define MiB ((size_t)1 << 20)
/* Live bytes one thread may hold: bounds the memory of a run. */
#define THREAD_BUDGET (96 * MiB)
#define MAX_THREADS 64

struct slot {
    unsigned char *p;
    size_t size;
    uint64_t tag;  /* unique per allocation: selects its pattern */
};

struct thread {
    int index;
    uint64_t rng;
    unsigned long ops, allocs, aligned, reallocs, frees;
    uint64_t bytes_checked;
    size_t live, largest;
    pthread_t id;
};

static unsigned long nops;
static int corrupt_one;

static uint64_t next(uint64_t *s) {  /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* Word k (bytes 8k to 8k+7) of the allocation with this tag. No byte is
 * zero, so a page that turns to zeros (unmapped, then mapped again) fails. */
static uint64_t word(uint64_t tag, size_t k) {
    return ((tag + 1) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)k * 0xbf58476d1ce4e5b9ULL) | 0x0101010101010101ULL;
}

/* Byte i of the allocation (x86 is little-endian: byte i & 7 of its word). */
static unsigned char pattern(uint64_t tag, size_t i) {
    return (unsigned char)(word(tag, i >> 3) >> (8 * (i & 7)));
}

/* Whole words where possible: checking every byte costs one compare per eight. */
static void fill(unsigned char *p, size_t from, size_t to, uint64_t tag) {
    size_t i = from;
    for (; i < to && (i & 7); i++) p[i] = pattern(tag, i);
    for (; i + 8 <= to; i += 8) {
        uint64_t w = word(tag, i >> 3);
        memcpy(p + i, &w, 8);
    }
    for (; i < to; i++) p[i] = pattern(tag, i);
}

/* The first byte below `to` not holding its pattern, or `to`. */
static size_t first_bad(const unsigned char *p, size_t to, uint64_t tag) {
    size_t i = 0;
    for (; i + 8 <= to; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w != word(tag, i >> 3)) break;
    }
    for (; i < to; i++)
        if (p[i] != pattern(tag, i)) return i;
    return to;
}

static void die(int status, const char *what, const struct thread *t, const char *detail) {
    printf("alloc_stress: %s: thread %d, operation %lu: %s\n", what, t->index, t->ops, detail);
    fflush(stdout);
    exit(status);
}

static void check(struct thread *t, const struct slot *s, size_t upto, const char *when) {
    size_t i = first_bad(s->p, upto, s->tag);
    if (i < upto) {
        char detail[256];
        snprintf(detail, sizeof detail, "%s: allocation %p (%zu bytes, tag %" PRIu64 ") byte %zu is %#x, want %#x",
                 when, (void *)s->p, s->size, s->tag, i, s->p[i], pattern(s->tag, i));
        die(1, "CORRUPT", t, detail);
    }
    t->bytes_checked += upto;
}

/* Sizes from 1 byte to 40 MiB, most of them small, as programs ask. */
static size_t pick_size(uint64_t *rng) {
    uint64_t r = next(rng), kind = r % 2000;
    r >>= 11;
    if (kind < 1000) return 1 + r % 64;
    if (kind < 1600) return 65 + r % 4032;
    if (kind < 1968) return 4097 + r % (128 * 1024);
    if (kind < 1999) return 128 * 1024 + r % (4 * MiB);  /* glibc: mmap at first */
    return 33 * MiB + r % (7 * MiB);                    /* above glibc's largest mmap threshold */
}

static void allocate(struct thread *t, struct slot *s) {
    uint64_t r = next(&t->rng), kind = r % 8;
    size_t size = pick_size(&t->rng), align = 0;
    void *p = NULL;
    if (t->live + size > THREAD_BUDGET) size = 1 + size % 4096;
    if (kind == 0)
        align = (size_t)1 << (4 + (r >> 3) % 19);  /* posix_memalign: 16 B .. 4 MiB */
    if (kind == 1) {
        align = (size_t)1 << (4 + (r >> 3) % 17);  /* aligned_alloc: 16 B .. 1 MiB */
        size = (size + align - 1) & ~(align - 1);    /* C11: a multiple of the alignment */
    }
#ifdef AVOID_MIMALLOC_ISSUE_700
    /* mimalloc 2.0.9 answers an aligned request for a power of two up to
     * 1 KiB from that size class, aligned or not (github.com/microsoft/
     * mimalloc issue 700); 2 KiB, a multiple of every alignment this
     * applies to, keeps out of those classes. */
    if (align >= 256 && size <= 1024) size = 2048;
#endif
    if (kind == 0) {
        int err = posix_memalign(&p, align, size);
        if (err) p = NULL, errno = err;
    } else if (kind == 1) {
        p = aligned_alloc(align, size);
    } else if (kind == 2) {
        p = calloc(1, size);
    } else {
        p = malloc(size);
    }
    if (p == NULL) {
        char detail[96];
        snprintf(detail, sizeof detail, "%zu bytes (alignment %zu) failed: %s", size, align, strerror(errno));
        die(2, "FAILED", t, detail);
    }
    if (align && (uintptr_t)p % align) {
        char detail[96];
        snprintf(detail, sizeof detail, "%p is not aligned to %zu", p, align);
        die(1, "MISALIGNED", t, detail);
    }
    s->p = p, s->size = size;
    s->tag = (uint64_t)t->index << 40 | t->allocs;
    if (kind == 2) {
        for (size_t i = 0; i < size; i++)
            if (s->p[i]) die(1, "CORRUPT", t, "calloc returned memory that is not zero");
    }
    fill(s->p, 0, size, s->tag);
    t->allocs++, t->aligned += align != 0, t->live += size;
    if (size > t->largest) t->largest = size;
}

static void resize(struct thread *t, struct slot *s) {
    size_t size = pick_size(&t->rng);
    if (t->live - s->size + size > THREAD_BUDGET) size = 1 + size % 4096;
    check(t, s, s->size, "before realloc");
    unsigned char *p = realloc(s->p, size);
    if (p == NULL) die(2, "FAILED", t, "realloc failed");
    size_t kept = size < s->size ? size : s->size;
    t->live = t->live - s->size + size;
    s->p = p, s->size = size;
    check(t, s, kept, "after realloc");
    fill(p, kept, size, s->tag);
    t->reallocs++;
    if (size > t->largest) t->largest = size;
}

static void release(struct thread *t, struct slot *s) {
    if (corrupt_one && t->index == 0 && t->frees == 10)
        s->p[s->size / 2] ^= 0x80;  /* ALLOC_STRESS_CORRUPT: proves the check can fail */
    check(t, s, s->size, "before free");
    free(s->p);
    t->live -= s->size;
    s->p = NULL;
    t->frees++;
}

static void *run(void *arg) {
    struct thread *t = arg;
    struct slot *slots = calloc(SLOTS, sizeof *slots);
    if (slots == NULL) die(2, "FAILED", t, "no memory for the slot table");
    for (t->ops = 0; t->ops < nops; t->ops++) {
        uint64_t r = next(&t->rng);
        struct slot *s = &slots[r % SLOTS];
        if (s->p == NULL)
            allocate(t, s);
        else if ((r >> 8) % 4 == 0)
            resize(t, s);
        else
            release(t, s);
    }
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p) release(t, &slots[i]);
    free(slots);
    return NULL;
}

/* Which library answers malloc in this process (and mimalloc's version when
 * it is that): shows a -ljemalloc or -lmimalloc build really uses it. */
static void malloc_library(char *out, size_t len) {
    Dl_info info;
    void *f = dlsym(RTLD_DEFAULT, "malloc");
    const char *name = "unknown";
    if (f && dladdr(f, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        name = slash ? slash + 1 : info.dli_fname;
    }
    int (*mi_version)(void);
    *(void **)&mi_version = dlsym(RTLD_DEFAULT, "mi_version");
    if (mi_version)
        snprintf(out, len, "%s (mimalloc %d)", name, mi_version());
    else
        snprintf(out, len, "%s", name);
}

/* Argument i as a whole number from 1 to max (64-bit on every platform, so
 * one seed means one run on i386 too), else usage and exit status 2. */
static unsigned long long arg(int argc, char **argv, int i, unsigned long long dflt, unsigned long long max) {
    if (argc <= i) return dflt;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(argv[i], &end, 10);
    if (errno || *end || end == argv[i] || argv[i][0] == '-' || v < 1 || v > max) {
        fprintf(stderr, "alloc_stress: argument %d must be a whole number from 1 to %llu, not \"%s\"\n"
                        "usage: alloc_stress [THREADS [OPS [SEED]]]\n", i, max, argv[i]);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    if (argc > 4) {
        fprintf(stderr, "usage: alloc_stress [THREADS [OPS [SEED]]]\n");
        return 2;
    }
    corrupt_one = getenv("ALLOC_STRESS_CORRUPT") != NULL;
    unsigned long nthreads = (unsigned long)arg(argc, argv, 1, 4, MAX_THREADS);
    nops = (unsigned long)arg(argc, argv, 2, 20000, 100000000);
    uint64_t seed = arg(argc, argv, 3, 1, UINT64_MAX);
    struct thread threads[MAX_THREADS] = {0};
    for (unsigned long i = 0; i < nthreads; i++) {
        threads[i].index = (int)i;
        threads[i].rng = (seed * 0x9e3779b97f4a7c15ULL) ^ ((i + 1) * 0xd1b54a32d192ed03ULL);
        if (threads[i].rng == 0) threads[i].rng = 1;
        int err = pthread_create(&threads[i].id, NULL, run, &threads[i]);
        if (err) {
            fprintf(stderr, "alloc_stress: cannot start thread %lu: %s\n", i, strerror(err));
            return 2;
        }
    }
    unsigned long allocs = 0, aligned = 0, reallocs = 0;
    uint64_t checked = 0;
    size_t largest = 0;
    for (unsigned long i = 0; i < nthreads; i++) {
        pthread_join(threads[i].id, NULL);
        allocs += threads[i].allocs, aligned += threads[i].aligned;
        reallocs += threads[i].reallocs, checked += threads[i].bytes_checked;
        if (threads[i].largest > largest) largest = threads[i].largest;
    }
    char library[256];
    malloc_library(library, sizeof library);
    printf("alloc_stress: ok: %lu threads x %lu operations, %lu allocations (%lu aligned), "
           "%lu reallocs, %" PRIu64 " MiB checked, largest %zu KiB; malloc from %s\n",
           nthreads, nops, allocs, aligned, reallocs, checked >> 20, largest >> 10, library);
    return 0;
}
