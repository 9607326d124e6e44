/* Ignores SIGTERM, says so, then sleeps (in a loop, so no signal ends it but SIGKILL). */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    signal(SIGTERM, SIG_IGN);
    printf("ignoring SIGTERM\n");
    fflush(stdout);
    for (;;) pause();
}
