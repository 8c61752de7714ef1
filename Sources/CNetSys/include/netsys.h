// The glibc calls Swift's Glibc module does not show (they need _GNU_SOURCE, which is defined only in netsys.c so
// that Foundation-importing Swift files never see it). Each returns -1 and sets errno on failure, like the syscall.
#ifndef NETLAB_NETSYS_H
#define NETLAB_NETSYS_H
#include <sys/types.h>
#include <sys/socket.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>

/// setns(2) into the network namespace behind `fd`.
int netsys_setns_net(int fd);
/// unshare(CLONE_NEWNET) for the calling thread only.
int netsys_unshare_net(void);
/// gettid(2).
int netsys_gettid(void);
/// mount --bind SRC DST (how iproute2 pins a namespace under /run/netns).
int netsys_bind_mount(const char *source, const char *target);
/// mount --make-rshared PATH; with EINVAL (not a mount point) bind-mount PATH on itself first, as iproute2 does.
int netsys_make_rshared(const char *path);
/// Create DIR/NAME holding TEXT, exclusively and atomically: the file appears with its content or not at all
/// (an O_TMPFILE in DIR, written, then linked under NAME; EEXIST when NAME exists). Where the file system has no
/// O_TMPFILE, falls back to open(O_EXCL) and write. Returns 0, or -1 with errno.
int netsys_create_with_text(const char *dir, const char *name, const char *text);
/// umount2(PATH, MNT_DETACH).
int netsys_umount_detach(const char *path);
/// Enter the namespace pinned at `nspath`, give the child a private /sys for it (as `ip netns exec` does, best
/// effort), then execvp(argv[0], argv). Returns only on failure.
int netsys_exec_in_netns(const char *nspath, char *const argv[]);


/// pipe2(2) and accept4(2) (glibc declares them only under _GNU_SOURCE).
int netsys_pipe2(int fds[2], int flags);
int netsys_accept4(int fd, int flags);

/// Set to the signal number when SIGINT or SIGTERM arrives after netsys_trap_interrupts(); 0 otherwise.
int netsys_interrupted(void);
/// How many SIGINT/SIGTERM arrived since netsys_trap_interrupts().
int netsys_interrupt_count(void);
/// Catch SIGINT and SIGTERM by recording them (so long work can roll back and exit cleanly).
void netsys_trap_interrupts(void);
#endif
