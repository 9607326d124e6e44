/* Syscalls only, no policy: every function takes and returns plain
 * integers so the Python side never builds pointers.
 *
 * Addresses come back as uintptr_t; a failure comes back as -code (the
 * kernel's own convention: the top page is never a valid mapping), where
 * code is an errno or one of the SHIM_E* argument codes below. The int
 * functions return 0 or such a code. */
#include <stddef.h>
#include <stdint.h>

#define SHIM_ESIZE 4001   /* size is zero or not a multiple of the page size */
#define SHIM_EALIGN 4002  /* address is not page-aligned */
#define SHIM_EWRAP 4003   /* address + size passes the top of the address space */

size_t shim_page_size(void);
uintptr_t shim_reserve(uintptr_t hint, size_t size);
uintptr_t shim_reserve_exact(uintptr_t addr, size_t size);
int shim_commit(uintptr_t addr, size_t size);
int shim_decommit(uintptr_t addr, size_t size);
int shim_release(uintptr_t addr, size_t size);
