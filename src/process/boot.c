/*
 * process/boot.c - what a new child runs first. A fork child becomes its
 * process object's process and runs the target (mproc__fork_child). A
 * spawn or forkserver child is a fresh program: the parent writes a boot
 * description (mproc__boot_build: identity, authkey, log settings, the
 * target as a code reference, the arguments) and the child rebuilds itself
 * from it (mproc__child_run), reporting success or the failing step on a
 * status pipe before the target runs. Every child ends here too
 * (mproc__exit_child).
 */
#include "process/process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static int g_report_fd = -1; /* fork server child: its report pipe */

static void atfork_child(void)
{
    if (g_report_fd >= 0) { /* the connection is our parent's business */
        close(g_report_fd);
        g_report_fd = -1;
    }
}

/* Registered when the library loads: glibc skips a handler registered
 * while another thread forks, and that child would keep the fd. */
__attribute__((constructor)) static void boot_atfork(void)
{
    pthread_atfork(NULL, NULL, atfork_child);
}

/* The end of every child: the library's own exit work, then flush. */
static void child_finish(void)
{
    mproc_shutdown();
    fflush(NULL);
}

void mproc__fork_child(const mproc_process *p, pid_t parent,
                       const char *parent_name, int parent_fd)
{
    if (p->daemon) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            mproc__exit(1);
    }
    /* Both are NUL-terminated within the same sizes: plain copies keep
     * the child's first instructions cheap. */
    memcpy(mproc__me.name, p->name, sizeof mproc__me.name);
    memcpy(mproc__me.identity, p->identity, sizeof mproc__me.identity);
    mproc__me.counter = 0;
    mproc__me.daemon = p->daemon;
    mproc__me.is_child = 1;
    mproc__forget_finalizers();
    mproc__set_parent(parent, parent_name, parent_fd);
    mproc_debug("child process calling target");
    int code = p->target(p->args);
    mproc_debug("process exiting with exitcode %d", code);
    child_finish();
    mproc__exit_child(code);
}

void mproc__set_report_fd(int fd)
{
    g_report_fd = fd;
}

void mproc__exit_child(int code)
{
    if (g_report_fd >= 0) {
        /* A requester gone (its read end closed) is no reason to die of
         * SIGPIPE with a code of -13 instead of ours. */
        int32_t msg[2] = {'C', code & 0xff};
        signal(SIGPIPE, SIG_IGN);
        (void)write(g_report_fd, msg, sizeof msg);
    }
    /* Not exit(): the atexit handlers a forked child inherited are its
     * parent's business. */
    mproc__exit(code & 0xff);
}

/* Flags in the boot description. */
enum { BOOT_STATUS = 1, BOOT_LOG = 2, BOOT_SENTINEL = 4 };

/*
 * The description a spawn or forkserver child boots from. Fixed fd slots
 * first: the parent's sentinel (a pidfd on it, or a pipe's read end whose
 * write end the parent holds), then a
 * pipe's write end when there is one: the status pipe (spawn only: the
 * fork server validates before forking instead), and without pidfds the
 * child's sentinel (BOOT_SENTINEL: it keeps it open for life); then the
 * log fd when logging is on; the objects' fds follow.
 */
int mproc__boot_build(const mproc_process *p, mproc__boot *b, int pipe_w,
                      unsigned pipe_use, int self_fd)
{
    mproc__buf *o = &b->blob;
    int logfd = mproc__log_fd();
    bool log_on = logfd >= 0 && mproc_log_get_level() < MPROC_LOG_OFF;
    if (pipe_w < 0)
        pipe_use = 0;
    uint32_t flags = (pipe_use & MPROC__PIPE_STATUS ? BOOT_STATUS : 0) |
                     (pipe_use & MPROC__PIPE_SENTINEL ? BOOT_SENTINEL : 0) |
                     (log_on ? BOOT_LOG : 0);
    b->nfds = 0;
    b->fds[b->nfds++] = self_fd;
    if (pipe_use)
        b->fds[b->nfds++] = pipe_w;
    if (log_on)
        b->fds[b->nfds++] = logfd;
    mproc__buf_u32(o, 0x6d70726f); /* "mpro" */
    mproc__buf_u32(o, flags);
    mproc__buf_str(o, p->name);
    mproc__buf_str(o, p->identity);
    mproc__buf_u32(o, (uint32_t)p->daemon);
    mproc__buf_u64(o, mproc__me.authkey_len);
    mproc__buf_put(o, mproc__me.authkey, mproc__me.authkey_len);
    mproc__buf_u32(o, (uint32_t)getpid());
    mproc__buf_str(o, mproc__me.name);
    /* The level travels even without a log fd: a child that later logs
     * somewhere inherits it, as a fork child does. */
    mproc__buf_u32(o, (uint32_t)mproc_log_get_level());
    mproc__buf_u32(o, (uint32_t)mproc_get_start_method());
    int r = mproc__ref_write(o, (const void *)p->target);
    if (r < 0)
        return r;
    return mproc__args_export(p->args, o, b->fds, &b->nfds,
                              MPROC__ARRAY_LEN(b->fds));
}

/* The fixed part of a boot description. */
typedef struct boot_head {
    uint32_t flags;
    char name[MPROC__NAME_MAX], identity[MPROC__NAME_MAX];
    char pname[MPROC__NAME_MAX];
    unsigned char key[MPROC__AUTHKEY_MAX];
    size_t klen;
    int daemon, level;
    pid_t ppid;
    uint32_t method;
    size_t nfixed; /* fd slots before the objects' */
} boot_head;

static int read_head(mproc__reader *r, boot_head *h, size_t nfds)
{
    if (mproc__rd_u32(r) != 0x6d70726f)
        return MPROC_EPROTO;
    h->flags = mproc__rd_u32(r);
    mproc__rd_str(r, h->name, sizeof h->name);
    mproc__rd_str(r, h->identity, sizeof h->identity);
    h->daemon = (int)mproc__rd_u32(r);
    uint64_t klen = mproc__rd_u64(r);
    if (klen > MPROC__AUTHKEY_MAX)
        return MPROC_EPROTO;
    mproc__rd_get(r, h->key, (size_t)klen);
    h->klen = (size_t)klen;
    h->ppid = (pid_t)mproc__rd_u32(r);
    mproc__rd_str(r, h->pname, sizeof h->pname);
    h->level = (int)mproc__rd_u32(r);
    h->method = mproc__rd_u32(r);
    h->nfixed = 1 + !!(h->flags & (BOOT_STATUS | BOOT_SENTINEL)) +
                !!(h->flags & BOOT_LOG);
    return r->bad || nfds < h->nfixed ? MPROC_EPROTO : 0;
}

int mproc__boot_validate(const unsigned char *blob, size_t len, size_t nfds)
{
    mproc__reader r = {.p = blob, .len = len};
    boot_head h;
    void *target;
    int rc = read_head(&r, &h, nfds);
    if (rc == 0)
        rc = mproc__ref_read(&r, &target);
    if (rc == 0)
        rc = mproc__args_validate(&r, nfds - h.nfixed);
    return rc;
}

int mproc__child_run(const unsigned char *blob, size_t len, int *fds,
                     size_t nfds, pid_t expected_ppid)
{
    mproc__reader r = {.p = blob, .len = len};
    int pipe_w = -1, status_w = -1;
    bool keep_pipe = false;
    mproc_args *args = NULL;
    boot_head h;
    mproc__self_init();
    int rc = read_head(&r, &h, nfds);
    if (rc < 0)
        goto out_report;
    if (h.flags & (BOOT_STATUS | BOOT_SENTINEL)) {
        pipe_w = fds[1];
        fds[1] = -1;
    }
    if (h.flags & BOOT_STATUS)
        status_w = pipe_w;
    if (h.flags & BOOT_SENTINEL) {
        /* Our sentinel's write end, open until we end: not to be
         * inherited by our own fork children. */
        rc = mproc__guard_fd(pipe_w);
        if (rc < 0)
            goto out_report;
        keep_pipe = true;
    }
    memcpy(mproc__me.name, h.name, sizeof h.name);
    memcpy(mproc__me.identity, h.identity, sizeof h.identity);
    memcpy(mproc__me.authkey, h.key, h.klen);
    mproc__me.authkey_len = h.klen;
    mproc__me.daemon = h.daemon;
    mproc__me.counter = 0;
    mproc__me.is_child = 1;
    mproc__me.pid = getpid();
    mproc__set_parent(h.ppid, h.pname, fds[0]);
    fds[0] = -1;
    if (!(h.flags & BOOT_LOG))
        (void)mproc_log_set_level(h.level);
    if (h.flags & BOOT_LOG) {
        mproc__log_restore(fds[h.nfixed - 1], h.level);
        fds[h.nfixed - 1] = -1;
    }
    (void)mproc_set_start_method((mproc_start_method)h.method);
    if (h.daemon) {
        /* Parent here is whoever forked or spawned us: the requesting
         * process under spawn, the fork server (which exits when the
         * requesting process dies) under forkserver. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != (expected_ppid ? expected_ppid : h.ppid)) {
            rc = MPROC_EBOOTSTRAP;
            goto out_report;
        }
    }
    void *target = NULL;
    rc = mproc__ref_read(&r, &target);
    if (rc < 0)
        goto out_report;
    rc = mproc__args_import(&r, fds + h.nfixed, nfds - h.nfixed, &args);
    if (rc < 0)
        goto out_report;
    if (status_w >= 0) {
        int32_t ok = 0;
        (void)mproc__write_all(status_w, &ok, sizeof ok);
        if (!keep_pipe)
            close(status_w);
    }
    mproc_debug("child process calling target");
    int code = ((mproc_target)target)(args);
    mproc_debug("process exiting with exitcode %d", code);
    mproc__args_free_imported(args);
    child_finish();
    return code & 0xff;

out_report:
    mproc_error("child failed to start: %s", mproc_strerror(rc));
    if (status_w >= 0) {
        int32_t err = rc;
        (void)mproc__write_all(status_w, &err, sizeof err);
    }
    if (keep_pipe)
        mproc__unguard_close(pipe_w);
    else
        mproc__close(pipe_w);
    for (size_t i = 0; i < nfds; i++)
        mproc__close(fds[i]);
    return 255;
}
