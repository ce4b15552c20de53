/*
 * subprocess/pipes.c - talking to a child through its pipes: the pump
 * that feeds stdin and drains stdout and stderr at once (communicate,
 * stream, run), keeping its state in the object so that a call that timed
 * out can be resumed; and reading stdout as it comes (read, readline).
 *
 * The pump writes without blocking and polls all three pipes, so no size
 * of input or output can deadlock it. SIGPIPE is blocked in the calling
 * thread while it writes and a SIGPIPE it caused is consumed before it
 * returns: a child that exits without reading is EPIPE, not a crash.
 */
#include "subprocess/subprocess_impl.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

/* Past this, a buffer jumps to BIG_BUF: above malloc's largest mmap
 * threshold, so that it is mapped apart and every later growth is an
 * mremap that copies nothing (only the pages touched cost memory). */
#define BIG_FROM ((size_t)1 << 20)
#define BIG_BUF  ((size_t)64 << 20)

/* Room for need more bytes in b (grown by doubling). */
static int room(mproc__buf *b, size_t need)
{
    if (b->cap - b->len >= need)
        return 0;
    size_t nc = b->cap ? b->cap * 2 : CHUNK;
    while (nc - b->len < need)
        nc *= 2;
    if (nc > BIG_FROM && nc < BIG_BUF)
        nc = BIG_BUF;
    unsigned char *q = realloc(b->p, nc);
    if (!q)
        return -ENOMEM;
    b->p = q;
    b->cap = nc;
    return 0;
}

/* Writes all n bytes to fd, waiting for it when it is non-blocking. */
static int write_fd(int fd, const void *data, size_t n)
{
    const char *c = data;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                mproc__deadline never = mproc__deadline_from(-1);
                int r = mproc__poll_fd(fd, POLLOUT, &never, NULL);
                if (r < 0)
                    return r;
                continue;
            }
            return -errno;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int emit(const mproc_sink *s, const void *data, size_t n)
{
    if (s->fn) {
        int r = s->fn(s->ctx, data, n);
        return r < 0 ? r : 0;
    }
    return s->fd >= 0 ? write_fd(s->fd, data, n) : 0;
}

/* Hands n bytes of stream which (0 stdout, 1 stderr) to its sink. */
static int deliver(mproc_popen *p, int which, const mproc__sp_dest *d,
                   const char *data, size_t n)
{
    if (d->mode == MPROC__SP_CAPTURE) {
        int r = room(&p->cap[which], n);
        if (r < 0)
            return r;
        memcpy(p->cap[which].p + p->cap[which].len, data, n);
        p->cap[which].len += n;
        return 0;
    }
    if (d->mode != MPROC__SP_SINK || !d->sink)
        return 0;
    const mproc_sink *s = d->sink;
    if (!s->lines)
        return emit(s, data, n);
    mproc__buf *lb = &p->line[which];
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        if (!nl) {
            int r = room(lb, n);
            if (r < 0)
                return r;
            memcpy(lb->p + lb->len, data, n);
            lb->len += n;
            return 0;
        }
        size_t k = (size_t)(nl - data) + 1;
        int r;
        if (lb->len > 0) {
            r = room(lb, k);
            if (r < 0)
                return r;
            memcpy(lb->p + lb->len, data, k);
            r = emit(s, lb->p, lb->len + k);
            lb->len = 0;
        } else {
            r = emit(s, data, k);
        }
        if (r < 0)
            return r;
        data += k;
        n -= k;
    }
    return 0;
}

/* End of file on stream which: a last line without '\n' goes out. */
static int finish(mproc_popen *p, int which, const mproc__sp_dest *d)
{
    mproc__buf *lb = &p->line[which];
    if (d->mode != MPROC__SP_SINK || !d->sink || lb->len == 0)
        return 0;
    int r = emit(d->sink, lb->p, lb->len);
    lb->len = 0;
    return r;
}

/* Reads once from output pipe i (1 or 2) into its destination. 1 while
 * open, 0 at end of file (the fd is closed), or a negative code. */
static int pull(mproc_popen *p, int i, const mproc__sp_dest *d, char **tmp)
{
    mproc__buf *b = &p->cap[i - 1];
    char *into;
    size_t cap = CHUNK;
    if (d->mode == MPROC__SP_CAPTURE) {
        int r = room(b, CHUNK);
        if (r < 0)
            return r;
        into = (char *)b->p + b->len;
        cap = b->cap - b->len;
    } else {
        if (!*tmp && !(*tmp = malloc(CHUNK)))
            return -ENOMEM;
        into = *tmp;
    }
    ssize_t n = read(p->fd[i], into, cap);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : -errno;
    if (n == 0) {
        mproc__close(p->fd[i]);
        p->fd[i] = -1;
        return finish(p, i - 1, d);
    }
    if (d->mode == MPROC__SP_CAPTURE) {
        b->len += (size_t)n;
        return 1;
    }
    int r = deliver(p, i - 1, d, into, (size_t)n);
    return r < 0 ? r : 1;
}

/* Writes what stdin takes now; closes it once all is written or the
 * child stopped reading. 0 or a negative code. */
static int push(mproc_popen *p, const char *in, size_t len)
{
    size_t left = len - p->in_off;
    size_t most = 1 << 20; /* what the pipe holds (exec.c) */
    ssize_t w = write(p->fd[0], in + p->in_off, left < most ? left : most);
    if (w < 0) {
        if (errno == EINTR || errno == EAGAIN)
            return 0;
        if (errno != EPIPE)
            return -errno;
        w = (ssize_t)left; /* the child is gone: the rest is dropped */
    }
    p->in_off += (size_t)w;
    return 0;
}

int mproc__sp_pump(mproc_popen *p, const void *in, size_t len,
                   const mproc__sp_dest dest[2], const mproc__deadline *d)
{
    int r = mproc__sp_owned(p);
    if (r < 0)
        return r;
    if (!in)
        len = 0;
    if (len > 0 && !p->piped[0])
        return -EINVAL;
    if (p->in_off > len)
        p->in_off = len; /* not the same input: nothing more to write */
    if (!p->pumped) {
        p->pumped = true;
        if (p->fd[0] >= 0)
            fcntl(p->fd[0], F_SETFL, fcntl(p->fd[0], F_GETFL) | O_NONBLOCK);
    }
    /* What readline read ahead comes first. */
    if (p->rbuf.len > p->rpos) {
        r = deliver(p, 0, &dest[0], (char *)p->rbuf.p + p->rpos,
                    p->rbuf.len - p->rpos);
        if (r < 0)
            return r;
        p->rbuf.len = p->rpos = 0;
    }
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    bool writing = p->fd[0] >= 0, was_pending = false;
    if (writing) {
        sigset_t pend;
        sigpending(&pend);
        was_pending = sigismember(&pend, SIGPIPE) == 1;
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    }
    char *tmp = NULL;
    r = 0;
    for (;;) {
        if (p->fd[0] >= 0 && p->in_off >= len) {
            mproc__close(p->fd[0]);
            p->fd[0] = -1;
        }
        struct pollfd pf[3];
        int idx[3], n = 0;
        for (int i = 0; i < 3; i++) {
            if (p->fd[i] < 0)
                continue;
            pf[n] = (struct pollfd){p->fd[i], i == 0 ? POLLOUT : POLLIN, 0};
            idx[n++] = i;
        }
        if (n == 0)
            break;
        if (n == 1 && idx[0] != 0 && d->infinite) {
            pf[0].revents = POLLIN; /* one pipe to drain: just read */
        } else {
            int ms = mproc__deadline_poll_ms(d);
            int k = poll(pf, (nfds_t)n, ms);
            if (k < 0) {
                if (errno == EINTR)
                    continue;
                r = -errno;
                break;
            }
            if (k == 0) {
                if (ms == 0 || mproc__deadline_expired(d)) {
                    r = -ETIMEDOUT;
                    break;
                }
                continue;
            }
        }
        for (int j = 0; j < n && r >= 0; j++) {
            if (!pf[j].revents)
                continue;
            int i = idx[j];
            if (i == 0)
                r = push(p, in, len);
            else
                r = pull(p, i, &dest[i - 1], &tmp);
        }
        if (r < 0)
            break;
        r = 0;
    }
    free(tmp);
    if (writing) {
        sigset_t pend;
        sigpending(&pend);
        if (!was_pending && sigismember(&pend, SIGPIPE) == 1) {
            struct timespec zero = {0, 0};
            while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
                ;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    return r;
}

int mproc__sp_finish(mproc_popen *p, const void *in, size_t len,
                     const mproc__sp_dest dest[2], const mproc__deadline *d)
{
    int r = mproc__sp_pump(p, in, len, dest, d);
    if (r == 0)
        r = mproc__sp_reap(p, d);
    return r < 0 ? r : 0;
}

int mproc__sp_take(mproc_popen *p, int which, bool piped, char **out,
                   size_t *len)
{
    mproc__buf *b = &p->cap[which];
    if (!piped) {
        *out = NULL;
        *len = 0;
        return 0;
    }
    int r = room(b, 1);
    if (r < 0)
        return r;
    b->p[b->len] = 0;
    if (b->cap >= BIG_BUF && b->cap - b->len > BIG_FROM) {
        unsigned char *q = realloc(b->p, b->len + 1); /* gives back the tail */
        if (q)
            b->p = q;
    }
    *out = (char *)b->p;
    *len = b->len;
    memset(b, 0, sizeof *b);
    return 0;
}

int mproc_popen_communicate(mproc_popen *p, const void *input, size_t len,
                            char **out, size_t *out_len, char **err,
                            size_t *err_len, double timeout)
{
    if (out)
        *out = NULL;
    if (err)
        *err = NULL;
    if (out_len)
        *out_len = 0;
    if (err_len)
        *err_len = 0;
    if (!p)
        return -EINVAL;
    mproc__deadline d = mproc__deadline_from(timeout);
    mproc__sp_dest dest[2] = {
        {out ? MPROC__SP_CAPTURE : MPROC__SP_DROP, NULL},
        {err ? MPROC__SP_CAPTURE : MPROC__SP_DROP, NULL},
    };
    int r = mproc__sp_finish(p, input, len, dest, &d);
    if (r < 0)
        return r;
    size_t n;
    if (out && (r = mproc__sp_take(p, 0, p->piped[1], out,
                                   out_len ? out_len : &n)) < 0)
        return r;
    if (err && (r = mproc__sp_take(p, 1, p->piped[2], err,
                                   err_len ? err_len : &n)) < 0) {
        if (out) {
            free(*out);
            *out = NULL;
        }
        return r;
    }
    return 0;
}

int mproc_popen_stream(mproc_popen *p, const void *input, size_t len,
                       const mproc_sink *out, const mproc_sink *err,
                       double timeout)
{
    if (!p)
        return -EINVAL;
    mproc__deadline d = mproc__deadline_from(timeout);
    mproc__sp_dest dest[2] = {
        {out ? MPROC__SP_SINK : MPROC__SP_DROP, out},
        {err ? MPROC__SP_SINK : MPROC__SP_DROP, err},
    };
    return mproc__sp_finish(p, input, len, dest, &d);
}

/* ---- reading stdout as it comes ----------------------------------------- */

/* Reads more of stdout into rbuf: 1, 0 at end of file, or a code. */
static int fill(mproc_popen *p, const mproc__deadline *d)
{
    if (p->fd[1] < 0)
        return p->piped[1] ? 0 : -EBADF;
    if (p->rpos > 0) {
        memmove(p->rbuf.p, p->rbuf.p + p->rpos, p->rbuf.len - p->rpos);
        p->rbuf.len -= p->rpos;
        p->rpos = 0;
    }
    int r = room(&p->rbuf, CHUNK);
    if (r < 0)
        return r;
    for (;;) {
        r = mproc__poll_fd(p->fd[1], POLLIN, d, NULL);
        if (r <= 0)
            return r == 0 ? -ETIMEDOUT : r;
        ssize_t n =
            read(p->fd[1], p->rbuf.p + p->rbuf.len, p->rbuf.cap - p->rbuf.len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -errno;
        }
        if (n == 0) {
            mproc__close(p->fd[1]);
            p->fd[1] = -1;
            return 0;
        }
        p->rbuf.len += (size_t)n;
        return 1;
    }
}

ssize_t mproc_popen_read(mproc_popen *p, void *buf, size_t cap, double timeout)
{
    if (!p || (!buf && cap > 0))
        return -EINVAL;
    int r = mproc__sp_owned(p);
    if (r < 0)
        return r;
    if (cap == 0)
        return 0;
    mproc__deadline d = mproc__deadline_from(timeout);
    if (p->rbuf.len == p->rpos && (r = fill(p, &d)) <= 0)
        return r;
    size_t n = p->rbuf.len - p->rpos;
    if (n > cap)
        n = cap;
    memcpy(buf, p->rbuf.p + p->rpos, n);
    p->rpos += n;
    return (ssize_t)n;
}

int mproc_popen_readline(mproc_popen *p, char **line, size_t *len,
                         double timeout)
{
    if (!p || !line || !len)
        return -EINVAL;
    int r = mproc__sp_owned(p);
    if (r < 0)
        return r;
    mproc__deadline d = mproc__deadline_from(timeout);
    size_t scanned = 0;
    for (;;) {
        const unsigned char *s = p->rbuf.p + p->rpos;
        size_t have = p->rbuf.len - p->rpos;
        const unsigned char *nl =
            have > scanned ? memchr(s + scanned, '\n', have - scanned) : NULL;
        size_t k = nl ? (size_t)(nl - s) + 1 : 0;
        if (!nl) {
            scanned = have;
            r = fill(p, &d);
            if (r < 0)
                return r;
            if (r > 0)
                continue;
            if (have == 0)
                return 0; /* end of file */
            k = have;     /* the last line, without '\n' */
            s = p->rbuf.p + p->rpos;
        }
        mproc__buf *o = &p->lineout;
        o->len = 0;
        if ((r = room(o, k + 1)) < 0)
            return r;
        memcpy(o->p, s, k);
        o->p[k] = 0;
        o->len = k;
        p->rpos += k;
        *line = (char *)o->p;
        *len = k;
        return 1;
    }
}
