/*
 * fuzz_boot.c - the boot description a spawn or forkserver child is built
 * from (process/boot.c, core/args.c, core/resolve.c), as the fork server
 * checks it before forking: it comes over a socket that any process of the
 * same user may connect to. Validation reads every field (identity,
 * authkey, the target's code reference, the argument list and its object
 * kinds) without acting on any; the input's first byte is the number of
 * fds that came with it.
 */
#include "process/process.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t nfds = data[0] % 16;
    int rc = mproc__boot_validate(data + 1, size - 1, nfds);
    if (rc > 0 || (rc < 0 && rc != MPROC_EPROTO && rc != MPROC_ERESOLVE &&
                   rc != -ENOMEM && rc != -EINVAL && rc != MPROC_ETYPE))
        abort();
    return 0;
}
