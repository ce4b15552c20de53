/*
 * process/process.h - the process layer, inside. Its files stack in this
 * order, each looking only down (and at core/ and os/ below them all):
 *
 *   process.c     process objects: registry, reaping, join, signals, the
 *                 current and parent process, mproc_shutdown
 *   boot.c        what a new child runs first: the boot description a
 *                 spawn or forkserver child is built from, the fork
 *                 child's path, the end of every child
 *   spawn.c       posix_spawn of this very program, and where the spawned
 *                 program takes over from main()
 *   forkserver.c  the fork server: a spawned helper that forks children
 *   start.c       mproc_process_start: the three start methods
 *
 * Everything is mproc__-prefixed and hidden.
 */
#ifndef MPROC__PROCESS_IMPL_H
#define MPROC__PROCESS_IMPL_H

#include "core/core.h"

#include <sys/un.h>

/* ---- process objects (process.c) -------------------------------------- */

enum { MPROC__ST_NEW, MPROC__ST_RUNNING, MPROC__ST_DONE };
enum { MPROC__P_CHILD, MPROC__P_CURRENT, MPROC__P_PARENT };

struct mproc_process {
    pthread_mutex_t mu; /* state, sentinel, conn, exitcode */
    _Atomic int refs;
    int role;
    mproc_target target;
    mproc_args *args;
    char name[MPROC__NAME_MAX];
    char identity[MPROC__NAME_MAX];
    int daemon;
    mproc_start_method method;
    int state;
    bool closed;
    pid_t pid;
    pid_t owner; /* pid of the process that started it */
    /* Readable once the process has ended: a pidfd, or where there are
     * none (mproc__have_pidfd) the read end of a pipe whose write end
     * only that process holds. For the parent object: -1 until known. */
    int sentinel;
    bool pidfd;   /* sentinel is a pidfd */
    bool lingers; /* a sentinel pipe read end of file, the child lived on */
    /* Without pidfds: the write end of the pipe the child watches us by
     * (its parent's sentinel), guarded; closed once the child is reaped. */
    int life_w;
    int conn;  /* forkserver: the report pipe, where exit codes arrive */
    int early; /* forkserver, no pidfds: the first code read, or MIN */
    /* forkserver: the address of the server that forked it */
    struct sockaddr_un server;
    socklen_t server_len;
    int exitcode;
    struct mproc_process *next; /* registry link, under the library lock */
};

/* Adds a started child to the registry (active_children, shutdown). */
void mproc__registry_add(mproc_process *p);
/* Sets the parent process object: sentinel is an fd readable once the
 * parent has ended (a pidfd on it, or without pidfds the read end of a
 * pipe whose write end the parent holds, mproc_process.life_w), or -1 for
 * a pidfd opened when first needed. Takes ownership of sentinel. */
void mproc__set_parent(pid_t pid, const char *name, int sentinel);

/*
 * Sentinel pipes, for where there are no pidfds. A process's sentinel is
 * then the read end of a pipe whose write end that process alone holds,
 * so that it reads end of file once the process has ended. "Alone" needs
 * care, as every fork copies every fd: the write ends a process holds for
 * others are "guarded", closed in every fork child (atfork), except the
 * one that a start by fork hands to its child (mproc__fork_mark).
 */

/* pipe2(O_CLOEXEC) with the write end guarded, atomically with respect to
 * fork. Returns 0 or -errno. */
int mproc__guarded_pipe(int fds[2]);
/* Guards an fd this process holds (its own sentinel's write end, in a
 * spawn or forkserver child). Returns 0 or -ENOMEM. */
int mproc__guard_fd(int fd);
/* Unguards and closes fd (if >= 0), atomically with respect to fork. */
void mproc__unguard_close(int fd);
/* In the thread about to fork a child: the guarded fd the child keeps
 * (-1 for none). Reset with -1 after the fork, in parent and child. */
void mproc__fork_mark(int keep);

/* ---- booting a child (boot.c) ----------------------------------------- */

/* The bootstrap description of a spawn or forkserver child (identity,
 * authkey, log settings, target, args); fds collects the fds to hand over
 * after the fixed ones. */
typedef struct mproc__boot {
    mproc__buf blob;
    int fds[MPROC_ARGS_MAX_FDS + 8];
    size_t nfds;
} mproc__boot;

/* What the child does with the pipe handed to it (mproc__boot_build). */
enum {
    MPROC__PIPE_STATUS = 1,  /* reports on it that it booted (spawn) */
    MPROC__PIPE_SENTINEL = 2 /* keeps it open for life: its sentinel */
};

/* Builds p's boot description into b. The fixed fd slots come first: the
 * parent's sentinel for the child (self_fd: a pidfd on this process, or
 * the read end of p->life_w's pipe), a pipe's write end (pipe_w, used as
 * pipe_use says; -1 for none), the log fd when logging is on. Returns 0
 * or a negative code; b->blob.oom is for the caller to check. fds are
 * borrowed. */
int mproc__boot_build(const mproc_process *p, mproc__boot *b, int pipe_w,
                      unsigned pipe_use, int self_fd);
/* The child side, shared by spawn and forkserver children: parses blob,
 * resolves target and args, reports to the status pipe, runs the target.
 * Returns the exit code to exit with. Takes ownership of fds. */
int mproc__child_run(const unsigned char *blob, size_t len, int *fds,
                     size_t nfds, pid_t expected_ppid);
/* Checks a boot description (target and kinds resolvable) without acting
 * on it: the fork server's test before it forks. */
int mproc__boot_validate(const unsigned char *blob, size_t len, size_t nfds);
/* A fork child's whole life: becomes p's process, runs the target, exits.
 * parent / parent_name: the process that forked it; parent_fd: its
 * sentinel (owned), or -1 for a pidfd opened when first needed. */
void mproc__fork_child(const mproc_process *p, pid_t parent,
                       const char *parent_name, int parent_fd)
    __attribute__((noreturn));
/* Fork server children: the socket on which to report the exit code. */
void mproc__set_report_fd(int fd);
/* Ends a forked child: reports the code (fork server children), then
 * mproc__exit(code & 0xff). */
void mproc__exit_child(int code) __attribute__((noreturn));

/* ---- spawn (spawn.c) -------------------------------------------------- */

/* Spawns this program (/proc/self/exe) as a child process booting from
 * fds[0] (a memfd holding a boot description) with fds[1..nfds) as its
 * fixed and object fds, renumbered to 3, 4, ... Returns the pid or a
 * negative code. */
pid_t mproc__spawn_child(const int *fds, size_t nfds);

/* Spawns this program as one of mproc's helper processes (the fork
 * server, the shared memory tracker): it runs entry() instead of main(),
 * with fds[0..nfds) as 3, 4, ... Returns the pid or a negative code. */
pid_t mproc__spawn_helper(void (*entry)(void), const int *fds, size_t nfds);

/* True when this process is a spawned child that has not booted yet and
 * whose program does not call mproc_main(): entry.c then boots it. */
bool mproc__spawn_pending(void);
/* The main() a spawned child runs instead of the program's. */
int mproc__spawn_main(int argc, char **argv, char **envp);

/* ---- fork server (forkserver.c) --------------------------------------- */

/* A request to the fork server opens with this header (fds attached).
 * A connection carries any number of requests, one after the other.
 * MPROC__FS_START: len bytes of boot description follow, nfds fds came
 * with the header, the last the write end of the child's report pipe;
 * answered on the same connection (forkserver.c).
 * MPROC__FS_KILL: {int32 pid, int32 sig} follow, no fds: the server sends
 * sig to its child pid unless it has reaped it, and answers {'K', 0 or
 * -errno} (-ESRCH once reaped). */
struct mproc__fs_req {
    uint32_t magic;
    uint32_t nfds;
    uint64_t len;
};
#define MPROC__FS_START 0x6d706673 /* "mpfs" */
#define MPROC__FS_KILL  0x6d70666b /* "mpfk" */

/* Asks the fork server (starting it if needed) to run the child described
 * by blob + fds. On success stores the child's pid, a pidfd (-1 where
 * there are no pidfds), in *conn the read end (non-blocking) of the pipe
 * on which its exit code will arrive, and the server's address in
 * p->server. */
int mproc__forkserver_start(mproc_process *p, const void *blob, size_t len,
                            const int *fds, size_t nfds, int *pidfd, int *conn);
/* A pidfd on this process, owned by the fork server state (borrowed):
 * handed to forkserver children as their parent. Starts the server if
 * needed. Returns the fd or a negative code (-ENOSYS without pidfds). */
int mproc__forkserver_parent_pidfd(void);

#endif
