/* Linux's own mmap flags. Python.h, which cffi's generated module includes
 * first, has defined it already (as 1): a second definition is a warning. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shim.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define RESERVE_FLAGS (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)

static size_t page_mask;

/* Set before any call can check an argument against it. */
__attribute__((constructor)) static void init_page_mask(void) {
    page_mask = (size_t)sysconf(_SC_PAGESIZE) - 1;
}

size_t shim_page_size(void) { return page_mask + 1; }

/* The checks cost a few instructions; the Python side decodes which
 * argument was wrong only when one of them fires. */
static int check(uintptr_t addr, size_t size) {
    if (size == 0 || (size & page_mask))
        return SHIM_ESIZE;
    if (addr & page_mask)
        return SHIM_EALIGN;
    /* A range may end exactly at the top; only one that passes it wraps. */
    if (size - 1 > UINTPTR_MAX - addr)
        return SHIM_EWRAP;
    return 0;
}

uintptr_t shim_reserve(uintptr_t hint, size_t size) {
    int code = check(hint, size);
    if (code)
        return -(uintptr_t)code;
    /* A hint only: never MAP_FIXED, the kernel may answer anywhere. */
    void *p = mmap((void *)hint, size, PROT_NONE, RESERVE_FLAGS, -1, 0);
    return p == MAP_FAILED ? -(uintptr_t)errno : (uintptr_t)p;
}

uintptr_t shim_reserve_exact(uintptr_t addr, size_t size) {
    int code = check(addr, size);
    if (code)
        return -(uintptr_t)code;
    void *p = mmap((void *)addr, size, PROT_NONE,
                   RESERVE_FLAGS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED)
        return -(uintptr_t)errno;
    /* Before Linux 4.17 the flag is ignored and the address is a hint:
     * a different answer means the range was occupied. */
    if ((uintptr_t)p != addr) {
        munmap(p, size);
        return -(uintptr_t)EEXIST;
    }
    return addr;
}

/* Commit is mprotect, never mmap(MAP_FIXED): it cannot replace a mapping,
 * only change one that exists. The arena commits only inside a reservation
 * it made and still holds (see Arena._commit); reserve_exact uses
 * MAP_FIXED_NOREPLACE, which fails rather than replace. Nothing here ever
 * passes MAP_FIXED, so memory the arena does not own is never touched. */
int shim_commit(uintptr_t addr, size_t size) {
    int code = check(addr, size);
    if (code)
        return code;
    return mprotect((void *)addr, size, PROT_READ | PROT_WRITE) ? errno : 0;
}

int shim_decommit(uintptr_t addr, size_t size) {
    int code = check(addr, size);
    if (code)
        return code;
    if (madvise((void *)addr, size, MADV_DONTNEED))
        return errno;
    return mprotect((void *)addr, size, PROT_NONE) ? errno : 0;
}

int shim_release(uintptr_t addr, size_t size) {
    int code = check(addr, size);
    if (code)
        return code;
    return munmap((void *)addr, size) ? errno : 0;
}
