/* Hinted mmaps from several threads, a forked child and an exec'd child; prints where each landed
 * and checks it can write there.
 *
 *   mapper [-t THREADS] [-n MAPS] [-s SIZE] [-H HINT] [-f] [-e]
 *
 * Each thread (the main one too) makes MAPS read-write anonymous mappings of SIZE bytes, the k-th
 * hinted at HINT + k * 2 * SIZE (k distinct across threads and processes), writes its first and
 * last byte, and prints one line:  map PID TID HINT SIZE ADDRESS  (or  map PID TID HINT SIZE failed ERRNO).
 * -f: a forked child does the same; -e: a forked child execs this program to do it.
 * Exit 0 when every mapping was made and written, 3 when one failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned long hint = sizeof(void *) == 8 ? 0x200000000UL : 0x20000000UL;
static unsigned long size = 1 << 20;
static int maps = 2;
static int failed;

static void *work(void *arg) {
    long slot = (long)arg;
    for (int i = 0; i < maps; i++) {
        unsigned long h = hint + (unsigned long)(slot * maps + i) * 2 * size;
        char *p = mmap((void *)h, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            printf("map %d %ld %#lx %#lx failed %d\n", getpid(), (long)syscall(SYS_gettid), h, size, errno);
            failed = 1;
            continue;
        }
        p[0] = 1;
        p[size - 1] = 1;
        printf("map %d %ld %#lx %#lx %#lx\n", getpid(), (long)syscall(SYS_gettid), h, size, (unsigned long)p);
    }
    fflush(stdout);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = 0, do_fork = 0, do_exec = 0, opt;
    long slot = 0;
    while ((opt = getopt(argc, argv, "t:n:s:H:S:fe")) != -1) {
        switch (opt) {
        case 't': threads = atoi(optarg); break;
        case 'n': maps = atoi(optarg); break;
        case 's': size = strtoul(optarg, NULL, 0); break;
        case 'H': hint = strtoul(optarg, NULL, 0); break;
        case 'S': slot = atol(optarg); break;
        case 'f': do_fork = 1; break;
        case 'e': do_exec = 1; break;
        default: return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_t tids[64];
    if (threads > 64) threads = 64;
    for (int t = 0; t < threads; t++)
        pthread_create(&tids[t], NULL, work, (void *)(slot + 1 + t));
    work((void *)slot);
    for (int t = 0; t < threads; t++)
        pthread_join(tids[t], NULL);
    int status = 0;
    if (do_fork) {
        pid_t pid = fork();
        if (pid == 0) {
            work((void *)(slot + 100));
            _exit(failed ? 3 : 0);
        }
        waitpid(pid, &status, 0);
        if (status) failed = 1;
    }
    if (do_exec) {
        char h[32], s[32], n[32];
        snprintf(h, sizeof h, "%#lx", hint);
        snprintf(s, sizeof s, "%#lx", size);
        snprintf(n, sizeof n, "%d", maps);
        pid_t pid = fork();
        if (pid == 0) {
            execl("/proc/self/exe", argv[0], "-H", h, "-s", s, "-n", n, "-S", "200", (char *)NULL);
            _exit(127);
        }
        waitpid(pid, &status, 0);
        if (status) failed = 1;
    }
    return failed ? 3 : 0;
}
