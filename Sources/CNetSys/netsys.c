#define _GNU_SOURCE
#include "netsys.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int netsys_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }
int netsys_unshare_net(void) { return unshare(CLONE_NEWNET); }
int netsys_gettid(void) { return (int)syscall(SYS_gettid); }

int netsys_bind_mount(const char *source, const char *target) {
    return mount(source, target, "none", MS_BIND, NULL);
}

int netsys_make_rshared(const char *path) {
    if (mount("", path, "none", MS_SHARED | MS_REC, NULL) == 0) return 0;
    if (errno != EINVAL) return -1;
    if (mount(path, path, "none", MS_BIND | MS_REC, NULL) != 0) return -1;
    return mount("", path, "none", MS_SHARED | MS_REC, NULL);
}

int netsys_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }
int netsys_accept4(int fd, int flags) { return accept4(fd, NULL, NULL, flags); }

#include <stdio.h>
#include <string.h>
static int write_all(int fd, const char *text) {
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0) { if (errno == EINTR) continue; return -1; }
        off += (size_t)n;
    }
    return 0;
}

int netsys_create_with_text(const char *dir, const char *name, const char *text) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return -1;
    int fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        int rc = write_all(fd, text);
        if (rc == 0) rc = linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW);
        int e = errno;
        close(fd);
        close(dfd);
        errno = e;
        return rc;
    }
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) { int e = errno; close(dfd); errno = e; return -1; }
    fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) { int e = errno; close(dfd); errno = e; return -1; }
    int rc = write_all(fd, text);
    int e = errno;
    close(fd);
    if (rc != 0) unlinkat(dfd, name, 0);
    close(dfd);
    errno = e;
    return rc;
}

int netsys_umount_detach(const char *path) { return umount2(path, MNT_DETACH); }

int netsys_exec_in_netns(const char *nspath, char *const argv[]) {
    int fd = open(nspath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -1;
    if (setns(fd, CLONE_NEWNET) != 0) { int e = errno; close(fd); errno = e; return -1; }
    close(fd);
    // Like `ip netns exec`: a private mount namespace with /sys showing this namespace's devices. Best effort:
    // a failure here leaves /sys as it was, which only affects /sys/class/net.
    if (unshare(CLONE_NEWNS) == 0 && mount("", "/", "none", MS_SLAVE | MS_REC, NULL) == 0) {
        if (umount2("/sys", MNT_DETACH) == 0) mount("netlab-sysfs", "/sys", "sysfs", 0, NULL);
    }
    execvp(argv[0], argv);
    return -1;
}

#include <pthread.h>
#include <signal.h>
static volatile sig_atomic_t interrupted_by = 0;
static volatile sig_atomic_t interrupt_count = 0;
static void record_signal(int sig) { interrupted_by = sig; interrupt_count++; }
int netsys_interrupted(void) { return interrupted_by; }
int netsys_interrupt_count(void) { return interrupt_count; }
void netsys_trap_interrupts(void) {
    struct sigaction sa;
    sa.sa_handler = record_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    // A parent may have spawned us with these blocked (posix_spawn inherits the mask); threads made later
    // inherit this thread's mask, so unblocking here makes every netlab thread able to take them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}
