/*
 * core/finalize.c - finalizers (multiprocessing.util.Finalize): callbacks
 * that run once when the process exits, in order of priority. The process
 * layer runs them from mproc_shutdown(), priorities >= 0 before the
 * children are joined and the rest after.
 */
#include "core/core.h"

#include <stdlib.h>

typedef struct fin {
    mproc_finalizer fn;
    void *arg;
    int priority;
    int handle;
} fin;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static fin *g_v;
static size_t g_n, g_cap;
static int g_next = 1;

int mproc_finalize(mproc_finalizer fn, void *arg, int priority)
{
    if (!fn)
        return -EINVAL;
    pthread_mutex_lock(&g_mu);
    int r = MPROC__GROW(g_v, g_cap, g_n + 1);
    if (r == 0) {
        r = g_next++;
        if (g_next <= 0)
            g_next = 1;
        g_v[g_n++] = (fin){fn, arg, priority, r};
    }
    pthread_mutex_unlock(&g_mu);
    return r;
}

/* Takes entry i out (g_mu held). */
static fin take(size_t i)
{
    fin f = g_v[i];
    for (size_t k = i + 1; k < g_n; k++)
        g_v[k - 1] = g_v[k];
    g_n--;
    return f;
}

/* Takes the finalizer with the handle out; returns false if none. */
static bool take_handle(int handle, fin *out)
{
    bool found = false;
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < g_n && !found; i++)
        if (g_v[i].handle == handle) {
            *out = take(i);
            found = true;
        }
    pthread_mutex_unlock(&g_mu);
    return found;
}

int mproc_finalize_cancel(int handle)
{
    fin f;
    return take_handle(handle, &f) ? 0 : -ENOENT;
}

int mproc_finalize_now(int handle)
{
    fin f;
    if (!take_handle(handle, &f))
        return -ENOENT;
    f.fn(f.arg);
    return 0;
}

void mproc__run_finalizers(int min_priority)
{
    for (;;) {
        /* The highest priority first; among equals the newest. One at a
         * time, unlocked while it runs: a finalizer may register or cancel
         * others. */
        fin f;
        bool any = false;
        pthread_mutex_lock(&g_mu);
        size_t best = 0;
        for (size_t i = 0; i < g_n; i++)
            if (g_v[i].priority >= min_priority &&
                (!any || g_v[i].priority >= g_v[best].priority)) {
                best = i;
                any = true;
            }
        if (any)
            f = take(best);
        pthread_mutex_unlock(&g_mu);
        if (!any)
            return;
        f.fn(f.arg);
    }
}

void mproc__forget_finalizers(void)
{
    pthread_mutex_init(&g_mu, NULL);
    free(g_v);
    g_v = NULL;
    g_n = g_cap = 0;
}
