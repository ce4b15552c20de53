/*
 * subprocess/subprocess_impl.h - the subprocess module, inside. Starting
 * a program: the parent's preparations, the vfork-like child and its
 * report of a failed step (exec.c); the Popen object, reaping and signals
 * (popen.c); the pipes: communicate, streaming, read and readline
 * (pipes.c); run, call, check_call, check_output (run.c).
 *
 * It looks down at core/ and os/ only. Everything is mproc__-prefixed and
 * hidden.
 */
#ifndef MPROC__SUBPROCESS_IMPL_H
#define MPROC__SUBPROCESS_IMPL_H

#include "core/core.h"

struct mproc_popen {
    pthread_mutex_t mu; /* returncode, reaping against signalling */
    pid_t pid;
    pid_t owner;    /* getpid() of the process that started it */
    int pidfd;      /* -1 without pidfds */
    int sentinel;   /* pidfd, or a pipe's read end (the child holds the
                       write end) */
    int returncode; /* MPROC_RETURNCODE_NONE until reaped */
    bool group_leader;
    int fd[3];          /* parent ends: stdin (write), stdout, stderr (read) */
    bool piped[3];      /* that stream was a pipe (its fd may be closed) */
    size_t in_off;      /* input bytes written by communicate so far */
    bool pumped;        /* communicate started: stdin non-blocking */
    mproc__buf cap[2];  /* communicate: stdout/stderr read so far */
    mproc__buf line[2]; /* stream: a line in progress */
    mproc__buf rbuf;    /* read/readline: stdout read ahead */
    size_t rpos;        /* first unread byte of rbuf */
    mproc__buf lineout; /* readline's line, NUL-terminated */
};

/* What the pump does with one output stream. */
enum { MPROC__SP_DROP, MPROC__SP_CAPTURE, MPROC__SP_SINK };

typedef struct mproc__sp_dest {
    int mode;
    const mproc_sink *sink; /* MPROC__SP_SINK */
} mproc__sp_dest;

/* ---- starting (exec.c) -------------------------------------------------- */

/* Starts argv with opts (validated here) into p (fields pid, pidfd,
 * sentinel, fd[], group_leader). Returns 0 or a negative code with *step
 * naming the failing step. Leaves nothing behind on failure. */
int mproc__sp_start(mproc_popen *p, const char *const *argv,
                    const mproc_popen_opts *opts, const char **step);

/* ---- the object (popen.c) ----------------------------------------------- */

/* Reaps p's child if it has ended (1), or not yet (0), or a negative
 * code. With wait, blocks until the deadline d. */
int mproc__sp_reap(mproc_popen *p, const mproc__deadline *d);
/* -ECHILD when p belongs to another process (a fork child's copy). */
int mproc__sp_owned(const mproc_popen *p);

/* ---- pipes (pipes.c) ---------------------------------------------------- */

/* Feeds input to stdin (from p->in_off on; closes it when done) and
 * drains stdout and stderr into dest[0], dest[1] until end of file on
 * both, or the deadline (-ETIMEDOUT, resumable), or a sink's negative
 * code. No SIGPIPE is raised. */
int mproc__sp_pump(mproc_popen *p, const void *in, size_t len,
                   const mproc__sp_dest dest[2], const mproc__deadline *d);
/* The pump, then a wait for the child, both until d: 0 once both output
 * streams reached end of file and the child was reaped, or the pump's
 * code, or -ETIMEDOUT. */
int mproc__sp_finish(mproc_popen *p, const void *in, size_t len,
                     const mproc__sp_dest dest[2], const mproc__deadline *d);
/* Moves a captured stream out of p as a NUL-terminated malloc'd string
 * (NULL, 0 when that stream is not a pipe). Returns 0 or -ENOMEM. */
int mproc__sp_take(mproc_popen *p, int which, bool piped, char **out,
                   size_t *len);

#endif
