/*
 * queue/objects.c - Python objects through a queue, as Queue.put(obj) and
 * get() carry them between processes: each message is the object's
 * pickle (protocol 5, the codec of src/obj), so a queue carries values
 * of every mproc_obj type between C processes under any start method.
 */
#include "queue/queue_impl.h"

#include <stdlib.h>

int mproc_queue_put_obj(mproc_queue *q, const mproc_obj *o, double timeout)
{
    if (!q || !o)
        return -EINVAL;
    void *buf;
    size_t n;
    int r = mproc_pickle_dumps(o, MPROC_PICKLE_HIGHEST_PROTOCOL, &buf, &n);
    if (r < 0)
        return r;
    r = mproc_queue_put(q, buf, n, timeout);
    free(buf);
    return r;
}

int mproc_queue_get_obj(mproc_queue *q, mproc_obj **out, double timeout,
                        char *err, size_t errcap)
{
    if (err && errcap)
        err[0] = 0;
    if (!q || !out)
        return -EINVAL;
    *out = NULL;
    void *buf;
    size_t n;
    int r = mproc_queue_get_alloc(q, &buf, &n, timeout);
    if (r < 0)
        return r;
    r = mproc_pickle_loads(buf, n, NULL, out, err, errcap);
    free(buf);
    return r;
}
