/*
 * mproc.h - the umbrella header: processes, pools, queues, pipes,
 * synchronization and shared memory for C, after Python's multiprocessing.
 * Include this one header; each module also has its own under mproc/.
 */
#ifndef MPROC_H
#define MPROC_H

#include "mproc/common.h"
#include "mproc/error.h"
#include "mproc/log.h"
#include "mproc/args.h"
#include "mproc/obj.h"
#include "mproc/process.h"
#include "mproc/pool.h"
#include "mproc/util.h"
#include "mproc/sync.h"
#include "mproc/shm.h"
#include "mproc/conn.h"
#include "mproc/queue.h"
#include "mproc/subprocess.h"
#include "mproc/manager.h"

#endif
