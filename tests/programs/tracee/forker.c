/* Forks N children that sleep.  forker N [wait|leave]
 * wait (default): waits for them all; leave: exits at once, leaving them running. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1;
    int leave = argc > 2 && strcmp(argv[2], "leave") == 0;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid == 0) { sleep(30); _exit(0); }
    }
    printf("forked %d\n", n);
    fflush(stdout);
    if (leave) return 0;
    while (wait(NULL) > 0) {}
    return 0;
}
