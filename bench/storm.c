/* Syscall storms for the overhead benchmark. Prints nanoseconds per iteration.
 *   storm open N PATH      openat(PATH) + close, N times
 *   storm exec N PROGRAM   fork + execve(PROGRAM) + waitpid, N times
 *   storm connect N PORT   socket + connect(127.0.0.1:PORT) + close, N times
 * If the environment has STORM_WAIT, waits for a line on stdin before starting (so the
 * caller can get ready, e.g. put the process in a cgroup). STORM_RATE=R paces the storm at
 * R iterations per second (checked every 64 iterations) instead of as fast as it can. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double rate;        /* iterations per second; 0: flat out */
static long long start_ns;

static void pace(long i)
{
    if (rate <= 0 || (i & 63))
        return;
    long long due = start_ns + (long long)(i / rate * 1e9);
    long long now = now_ns();
    if (due > now) {
        struct timespec ts = {.tv_sec = (due - now) / 1000000000LL,
                              .tv_nsec = (due - now) % 1000000000LL};
        nanosleep(&ts, NULL);
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: storm open|exec|connect N ARG\n");
        return 2;
    }
    long n = atol(argv[2]);
    const char *arg = argv[3];
    if (getenv("STORM_WAIT")) {
        char line[16];
        if (!fgets(line, sizeof(line), stdin))
            return 1;
    }
    if (getenv("STORM_RATE"))
        rate = atof(getenv("STORM_RATE"));
    long long t0 = start_ns = now_ns();
    if (!strcmp(argv[1], "open")) {
        for (long i = 0; i < n; i++) {
            pace(i);
            int fd = openat(AT_FDCWD, arg, O_RDONLY);
            if (fd >= 0)
                close(fd);
        }
    } else if (!strcmp(argv[1], "exec")) {
        for (long i = 0; i < n; i++) {
            pace(i);
            pid_t pid = fork();
            if (pid == 0) {
                execl(arg, arg, (char *)NULL);
                _exit(127);
            }
            waitpid(pid, NULL, 0);
        }
    } else if (!strcmp(argv[1], "connect")) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(arg))};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        for (long i = 0; i < n; i++) {
            pace(i);
            int s = socket(AF_INET, SOCK_STREAM, 0);
            connect(s, (struct sockaddr *)&sa, sizeof(sa));
            close(s);
        }
    } else {
        fprintf(stderr, "unknown storm %s\n", argv[1]);
        return 2;
    }
    long long t1 = now_ns();
    printf("%.1f\n", (double)(t1 - t0) / n);
    return 0;
}
