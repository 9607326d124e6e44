/* Makes N hinted mmap + munmap pairs of one page (default 10000): the tracer's cost per call, measured.
 *   churn [N] */
#include <stdlib.h>
#include <sys/mman.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10000;
    unsigned long hint = sizeof(void *) == 8 ? 0x300000000UL : 0x30000000UL;
    for (long i = 0; i < n; i++) {
        void *p = mmap((void *)hint, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return 1;
        munmap(p, 4096);
    }
    return 0;
}
