/* i386 only: the old mmap (call 90), whose six arguments are in memory; prints its answer. */
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    unsigned long args[6] = {0x30000000UL, 8192, 3, 0x22, (unsigned long)-1, 0};
    long r = syscall(90, args);
    printf("old_mmap %#lx\n", (unsigned long)r);
    return r == 0x30000000L ? 0 : 1;
}
