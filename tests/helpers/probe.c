/* A small static helper copied into the test image, for behaviour busybox cannot show.
 *   probe spawn PROG ARGS...   run PROG as a child and wait (the parent keeps this exe:
 *                              copy it to /tmp/node to look like a web runtime)
 *   probe ptrace               fork a child, PTRACE_ATTACH to it, detach, kill it
 *   probe traceme              PTRACE_TRACEME (a benign ptrace request)
 *   probe memfd NAME           memfd_create(NAME) and exit
 *   probe memfd-exec ARGS...   copy /bin/busybox into a memfd and execute it from there
 *   probe touch PATH           create PATH (the first thing a program would do)
 *   probe map-exec PATH        mmap PATH executable (what a loader does with a library)
 *   probe memfd-map            mmap a fresh memfd executable (code loaded from memory)
 *   probe uring ENTRIES        io_uring_setup(ENTRIES) (0: refused by the kernel)
 *   probe root PROG ARGS...    setresuid(0, 0, 0) and setresgid(0, 0, 0), then run PROG:
 *                              installed setuid-root, what an escalation does with it
 *   probe as UID PROG ARGS...  become UID (group too) for good, then run PROG
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: probe spawn|ptrace|traceme|memfd|memfd-exec|touch ...\n");
        return 2;
    }
    if (!strcmp(argv[1], "spawn") && argc > 2) {
        pid_t pid = fork();
        if (pid == 0) {
            execv(argv[2], argv + 2);
            _exit(127);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    }
    if (!strcmp(argv[1], "ptrace")) {
        pid_t pid = fork();
        if (pid == 0) {
            pause();
            _exit(0);
        }
        usleep(20000);
        long r = ptrace(PTRACE_ATTACH, pid, 0, 0);
        if (r == 0) {
            waitpid(pid, NULL, 0);
            ptrace(PTRACE_DETACH, pid, 0, 0);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        printf("attach %ld\n", r);
        return 0;
    }
    if (!strcmp(argv[1], "traceme")) {
        printf("traceme %ld\n", ptrace(PTRACE_TRACEME, 0, 0, 0));
        return 0;
    }
    if (!strcmp(argv[1], "memfd") && argc > 2) {
        int fd = memfd_create(argv[2], MFD_CLOEXEC);
        printf("memfd %d\n", fd);
        return fd < 0;
    }
    if (!strcmp(argv[1], "memfd-exec")) {
        int fd = memfd_create("payload", 0);
        int src = open("/bin/busybox", O_RDONLY);
        struct stat st;
        if (fd < 0 || src < 0 || fstat(src, &st) < 0)
            return 1;
        if (sendfile(fd, src, NULL, st.st_size) != st.st_size)
            return 1;
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        execve(path, argv + 2, environ);
        return 127;
    }
    if (!strcmp(argv[1], "map-exec") && argc > 2) {
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0)
            return 1;
        void *p = mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
        return p == MAP_FAILED;
    }
    if (!strcmp(argv[1], "memfd-map")) {
        int fd = memfd_create("payload", 0);
        if (fd < 0 || ftruncate(fd, 4096) < 0)
            return 1;
        void *p = mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
        return p == MAP_FAILED;
    }
    if (!strcmp(argv[1], "uring") && argc > 2) {
        char params[120];                          /* struct io_uring_params, zeroed */
        memset(params, 0, sizeof params);
        return syscall(__NR_io_uring_setup, atoi(argv[2]), params) < 0;
    }
    if (!strcmp(argv[1], "root") && argc > 2) {
        int r = setresuid(0, 0, 0);
        printf("setresuid %d uid %d euid %d\n", r, (int)getuid(), (int)geteuid());
        fflush(stdout);
        if (r != 0)
            return 1;
        execv(argv[2], argv + 2);
        return 127;
    }
    if (!strcmp(argv[1], "as") && argc > 3) {
        int id = atoi(argv[2]);
        if (setresgid(id, id, id) != 0 || setresuid(id, id, id) != 0)
            return 1;
        execv(argv[3], argv + 3);
        return 127;
    }
    if (!strcmp(argv[1], "touch") && argc > 2) {
        int fd = open(argv[2], O_WRONLY | O_CREAT, 0644);
        return fd < 0;
    }
    fprintf(stderr, "probe: unknown command %s\n", argv[1]);
    return 2;
}
