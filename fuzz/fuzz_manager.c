/*
 * fuzz_manager.c - the manager server's request decoder and dispatch
 * (manager/server.c, manager/objects.c) on a client's bytes: a run of
 * requests, top-level or on a method channel, against objects that live
 * across them (named 1, 2, 3, ... while fuzzing so that requests reach
 * them). Any reply is fine; a crash, a leak or a hang is not.
 */
#include "fuzz_util.h"
#include "manager/manager_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX)
        size = FUZZ_MAX;
    mproc__mgr_fuzz(data, size);
    return 0;
}
