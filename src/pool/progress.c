/*
 * pool/progress.c - what a job reports while it runs: completion and
 * progress callbacks, queued as deferred entries under the lock and run by
 * the pool's thread outside it, and the progress bar drawn on stderr.
 */
#include "pool/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The job whose callback runs on this thread: it reads as ready. */
_Thread_local pool__job *pool__cb_job;

bool pool__push_deferred(mproc_pool *p, pool__job *j, int what, size_t done,
                         size_t total)
{
    if (MPROC__GROW(p->dq, p->capdq, p->ndq + 1) < 0)
        return false;
    p->dq[p->ndq++] = (pool__deferred){j, what, done, total};
    return true;
}

void pool__mark_dirty(mproc_pool *p, pool__job *j)
{
    if (j->dirty || (!j->progress && !j->bar))
        return;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    if (MPROC__GROW(p->dirty, p->capdirty, p->ndirty + 1) < 0)
        return;
    j->dirty = true;
    j->refs++;
    p->dirty[p->ndirty++] = j;
}

static void fmt_secs(char *b, size_t n, double s)
{
    if (s < 0 || s > 1e7)
        snprintf(b, n, "?");
    else if (s < 60)
        snprintf(b, n, "%.1fs", s);
    else
        snprintf(b, n, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60,
                 (int)s % 60);
}

static void bar_draw(pool__job *j, bool final)
{
    double now = mproc_monotonic();
    if (j->bar_start == 0)
        j->bar_start = now;
    if (!final && now - j->bar_last < 0.1)
        return;
    j->bar_last = now;
    double el = now - j->bar_start;
    double rate = el > 0 ? (double)j->done / el : 0;
    char rs[32], eta[32], line[200];
    if (rate >= 1e6)
        snprintf(rs, sizeof rs, "%.2fM/s", rate / 1e6);
    else if (rate >= 1e3)
        snprintf(rs, sizeof rs, "%.1fk/s", rate / 1e3);
    else
        snprintf(rs, sizeof rs, "%.1f/s", rate);
    int n;
    size_t total =
        j->type == J_IMAP ? (j->imap.input_end ? j->imap.submitted : 0) : j->n;
    if (total > 0) {
        double frac = (double)j->done / (double)total;
        char bar[31];
        int fill = (int)(frac * 30);
        for (int k = 0; k < 30; k++)
            bar[k] = k < fill ? '#' : '.';
        bar[30] = 0;
        fmt_secs(eta, sizeof eta,
                 rate > 0 ? (double)(total - j->done) / rate : -1);
        n = snprintf(line, sizeof line, "\r%3d%% [%s] %zu/%zu %s ETA %s%s",
                     (int)(frac * 100), bar, j->done, total, rs,
                     final ? "0.0s" : eta, final ? "\n" : "");
    } else {
        fmt_secs(eta, sizeof eta, el);
        n = snprintf(line, sizeof line, "\r%zu done %s elapsed %s%s", j->done,
                     rs, eta, final ? "\n" : "");
    }
    if (n > 0) {
        ssize_t r = write(
            2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)r;
    }
}

void pool__flush_dirty(mproc_pool *p)
{
    for (size_t k = 0; k < p->ndirty; k++) {
        pool__job *j = p->dirty[k];
        j->dirty = false;
        if (!j->cancelled && j->bar)
            bar_draw(j, j->finished);
        size_t total = j->type == J_IMAP
                           ? (j->imap.input_end ? j->imap.submitted : 0)
                           : j->n;
        if (!j->cancelled && j->progress &&
            pool__push_deferred(p, j, D_PROGRESS, j->done, total))
            continue; /* the deferred entry keeps the reference */
        pool__job_unref_locked(j);
    }
    p->ndirty = 0;
}

/* Runs callbacks outside the lock. */
/* The deferred entries are all completions without callbacks (the
 * common apply_async): they become ready here, under the lock. */
static bool no_callbacks(const mproc_pool *p)
{
    for (size_t k = 0; k < p->ndq; k++) {
        const pool__job *j = p->dq[k].j;
        if (p->dq[k].what != D_DONE || (!j->cancelled && (j->cb || j->ecb)))
            return false;
    }
    return true;
}

void pool__run_deferred(mproc_pool *p)
{
    if (p->ndq > 0 && no_callbacks(p)) {
        for (size_t k = 0; k < p->ndq; k++) {
            p->dq[k].j->ready = true;
            pool__job_unref_locked(p->dq[k].j);
        }
        p->ndq = 0;
        pool__broadcast(p->core);
        return;
    }
    while (p->ndq > 0) {
        size_t n = p->ndq;
        pool__deferred *v = malloc(n * sizeof *v);
        if (!v)
            return;
        memcpy(v, p->dq, n * sizeof *v);
        p->ndq = 0;
        pool__unlock(p->core);
        for (size_t k = 0; k < n; k++) {
            pool__job *j = v[k].j;
            if (v[k].what == D_PROGRESS) {
                if (j->progress)
                    j->progress(v[k].done, v[k].total, j->parg);
            } else if (!j->cancelled) {
                pool__cb_job = j;
                if (j->status == 0 && j->cb)
                    j->cb(j, j->cbarg);
                else if (j->status != 0 && j->ecb)
                    j->ecb(j, j->cbarg);
                pool__cb_job = NULL;
            }
        }
        pool__lock(p->core);
        for (size_t k = 0; k < n; k++) {
            pool__job *j = v[k].j;
            if (v[k].what == D_DONE) {
                j->ready = true;
                pool__broadcast(p->core);
            }
            pool__job_unref_locked(j);
        }
        free(v);
    }
}
