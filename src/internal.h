/*
 * internal.h - what mproc's modules share and users never see: deadlines,
 * fd hygiene, the Linux syscalls glibc does not wrap, the state of the
 * current process, and the hand-off of arguments to a new process.
 * Everything here is mproc__-prefixed and hidden from the ABI.
 */
#ifndef MPROC_INTERNAL_H
#define MPROC_INTERNAL_H

#include "mproc.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#define MPROC__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MPROC__NAME_MAX     128
#define MPROC__AUTHKEY_MAX  256

/* ---- deadlines (os.c) ------------------------------------------------- */

/* An absolute CLOCK_MONOTONIC deadline; infinite when timeout < 0. */
typedef struct mproc__deadline {
    struct timespec at;
    bool infinite;
} mproc__deadline;

mproc__deadline mproc__deadline_from(double timeout);
/* Milliseconds left for poll(2): -1 infinite, 0 expired, rounded up. */
int mproc__deadline_poll_ms(const mproc__deadline *d);
/* True when a finite deadline has passed. */
bool mproc__deadline_expired(const mproc__deadline *d);
/* Time left as a relative timespec for futex waits (NULL when infinite);
 * returns false when expired. */
bool mproc__deadline_left(const mproc__deadline *d, struct timespec *ts);
struct timespec mproc__now(void);

/*
 * poll(2) one fd for events until the deadline, retrying EINTR. Returns 1
 * when ready (revents stored when not NULL), 0 on timeout, -errno.
 */
int mproc__poll_fd(int fd, short events, const mproc__deadline *d,
                   short *revents);

/* ---- fds and syscalls (os.c) ------------------------------------------ */

int mproc__pidfd_open(pid_t pid);
int mproc__pidfd_send_signal(int pidfd, int sig);
/* Writes/reads exactly n bytes, retrying EINTR and short counts. Returns 0,
 * -errno, or MPROC_EEOF when read hits end of file first. */
int mproc__write_all(int fd, const void *p, size_t n);
int mproc__read_all(int fd, void *p, size_t n);
/* Closes fd if >= 0, preserving errno. */
void mproc__close(int fd);
/* Number of open fds of the calling process (-errno on failure). */
int mproc__count_fds(void);
/* Fill buf with n cryptographically random bytes. Returns 0 or -errno. */
int mproc__random(void *buf, size_t n);
/* memfd with the given name holding n bytes of data; returns fd or -errno. */
int mproc__memfd_with(const char *name, const void *data, size_t n);

/* SCM_RIGHTS over a Unix socket: send bytes plus fds / receive them.
 * recv returns bytes read (0 = EOF) and stores up to *nfds fds. */
int mproc__send_fds(int sock, const void *p, size_t n, const int *fds,
                    size_t nfds);
int mproc__recv_fds(int sock, void *p, size_t n, int *fds, size_t *nfds);
/* As send_fds with the bytes gathered from iov[0..niov) (niov <= 8) and
 * extra send flags (MSG_DONTWAIT: -EAGAIN when it would block). */
struct iovec;
int mproc__sendv_fds(int sock, struct iovec *iov, size_t niov, const int *fds,
                     size_t nfds, int flags);
/* As recv_fds with extra recv flags; a truncated datagram or more fds
 * than *nfds is MPROC_EPROTO (nothing kept). */
ssize_t mproc__recv_fds_flags(int sock, void *p, size_t n, int *fds,
                              size_t *nfds, int flags);

/* ---- growable byte buffer (args.c) ------------------------------------ */

typedef struct mproc__buf {
    unsigned char *p;
    size_t len, cap;
    bool oom;
} mproc__buf;

void mproc__buf_put(mproc__buf *b, const void *p, size_t n);
void mproc__buf_u32(mproc__buf *b, uint32_t v);
void mproc__buf_u64(mproc__buf *b, uint64_t v);
void mproc__buf_str(mproc__buf *b, const char *s);
void mproc__buf_free(mproc__buf *b);

typedef struct mproc__reader {
    const unsigned char *p;
    size_t len, pos;
    bool bad;
} mproc__reader;

bool mproc__rd_get(mproc__reader *r, void *p, size_t n);
uint32_t mproc__rd_u32(mproc__reader *r);
uint64_t mproc__rd_u64(mproc__reader *r);
/* Copies a string of at most cap-1 bytes into out (NUL-terminated). */
bool mproc__rd_str(mproc__reader *r, char *out, size_t cap);
/* Returns a freshly allocated copy, or NULL (and r->bad) */
char *mproc__rd_strdup(mproc__reader *r);

/* ---- code references that survive exec (resolve.c) -------------------- */

/* Writes where addr lives (object file, identity, offset) into b. Returns
 * 0 or MPROC_ERESOLVE when addr is in no loaded object file. */
int mproc__ref_write(mproc__buf *b, const void *addr);
/* Reads a reference and finds the address in this process (loading the
 * object file if needed). Returns 0 or MPROC_ERESOLVE / MPROC_EPROTO. */
int mproc__ref_read(mproc__reader *r, void **addr);
/* Caches the identity of every loaded object file now (fork server). */
void mproc__ref_warm(void);

/* The same as a fixed-size value, for references kept in shared memory
 * (a Barrier's action): the object file's device and inode and the offset
 * from its load base. Found only among objects already loaded. */
typedef struct mproc__coderef {
    uint64_t dev, ino, off;
} mproc__coderef;

int mproc__coderef_make(const void *addr, mproc__coderef *ref);
int mproc__coderef_find(const mproc__coderef *ref, void **addr);

/* ---- argument lists (args.c) ------------------------------------------ */

/* Serializes args: values inline, objects through their kind's export_fn.
 * fds collected in fds[*nfds] (borrowed from the objects). */
int mproc__args_export(const mproc_args *a, mproc__buf *b, int *fds,
                       size_t *nfds, size_t maxfds);
/* Rebuilds args in a child; fds[] are owned by the child (consumed: each
 * is either taken by an object or closed). On failure all are closed. */
int mproc__args_import(mproc__reader *r, int *fds, size_t nfds,
                       mproc_args **out);
/* Walks a serialized list as import would, resolving object kinds but
 * importing nothing: 0 when import can be expected to work. */
int mproc__args_validate(mproc__reader *r, size_t nfds);
/* Deep copy (objects stay borrowed). */
mproc_args *mproc__args_copy(const mproc_args *a);
/* Releases imported objects and the list. */
void mproc__args_free_imported(mproc_args *a);

/* ---- the current process (process.c) --------------------------------- */

typedef struct mproc__self {
    char name[MPROC__NAME_MAX];
    char identity[MPROC__NAME_MAX]; /* "" in main, "1", "1:2"... */
    unsigned counter;               /* children created so far */
    unsigned char authkey[MPROC__AUTHKEY_MAX];
    size_t authkey_len;
    int daemon;
    int is_child;
    pid_t pid;
} mproc__self;

extern mproc__self mproc__me;
/* Library lock around process bookkeeping; taken around fork. */
void mproc__lock(void);
void mproc__unlock(void);
/* Makes sure the authkey and names are initialized. */
void mproc__self_init(void);

/* ---- logging internals (log.c) ---------------------------------------- */
int mproc__log_fd(void);
/* Re-installs inherited log settings in a spawn/forkserver child. */
void mproc__log_restore(int fd, int level);

/* ---- fork server (forkserver.c) --------------------------------------- */

/* Asks the fork server (starting it if needed) to run the child described
 * by blob + fds. On success stores the child's pid, a pidfd, the
 * connection on which its exit status will arrive, and in *early the exit
 * code if it already arrived (INT32_MIN otherwise). */
int mproc__forkserver_start(const void *blob, size_t len, const int *fds,
                            size_t nfds, pid_t *pid, int *pidfd, int *conn,
                            int *early);
/* A pidfd on this process, owned by the fork server state (borrowed):
 * handed to forkserver children as their parent. Starts the server if
 * needed. Returns the fd or a negative code. */
int mproc__forkserver_parent_pidfd(void);
/* Stops the fork server if this process started one; returns 0. */
int mproc__forkserver_stop(void);
/* In a fork child: the parent's server is not ours to stop. */
void mproc__forkserver_forget(void);

/* ---- shared memory tracker (tracker.c; weak defaults in spawn.c) ------ */
void mproc__tracker_main(int fd) __attribute__((noreturn));
int mproc__tracker_stop(void);
/* The server's main loop, entered in the spawned server process. Never
 * returns. */
void mproc__forkserver_main(int ctl, int listener) __attribute__((noreturn));

/* ---- spawn (spawn.c) -------------------------------------------------- */

/* Spawns /proc/self/exe with MPROC_SPAWN set, giving it fds[0..nfds) as
 * 3..3+nfds-1. Returns the pid or -errno. */
pid_t mproc__spawn_exe(const int *fds, size_t nfds, const char *mode);

/* Builds the bootstrap description of a child (identity, authkey, log
 * settings, target, args). fds collects the fds to hand over after the
 * fixed ones. */
typedef struct mproc__boot {
    mproc__buf blob;
    int fds[MPROC_ARGS_MAX_FDS + 8];
    size_t nfds;
} mproc__boot;

/* The child side, shared by spawn and forkserver children: parses blob,
 * resolves target and args, reports to status_fd, runs the target.
 * Returns the exit code to exit with. */
int mproc__child_run(const unsigned char *blob, size_t len, int *fds,
                     size_t nfds, pid_t expected_ppid);
/* Checks a boot description (target and kinds resolvable) without acting
 * on it: the fork server's test before it forks. */
int mproc__boot_validate(const unsigned char *blob, size_t len, size_t nfds);
/* Fork server children: the socket on which to report the exit code. */
void mproc__set_report_fd(int fd);
/* Ends a forked child: reports the code (fork server children), dumps
 * coverage, then _exit(code & 0xff). */
void mproc__exit_child(int code) __attribute__((noreturn));
/* Sets the parent process object (pidfd may be -1: opened lazily). */
void mproc__set_parent(pid_t pid, const char *name, int pidfd);

#endif
