#define _GNU_SOURCE
#include "dlog_aio.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <libaio.h>

struct dlog_aio {
    io_context_t ctx;
};

dlog_aio *dlog_aio_create(uint32_t depth, int32_t *err) {
    dlog_aio *a = calloc(1, sizeof(*a));
    if (a == NULL) { *err = ENOMEM; return NULL; }
    int rc = io_setup((int)depth, &a->ctx);
    if (rc < 0) { *err = -rc; free(a); return NULL; }
    *err = 0;
    return a;
}

void dlog_aio_destroy(dlog_aio *a) {
    if (a == NULL) return;
    io_destroy(a->ctx);
    free(a);
}

// The kernel copies the iocb during io_submit and hands `data` back in the event: a stack iocb is enough.
static int32_t submit_one(dlog_aio *a, struct iocb *cb) {
    struct iocb *list[1] = { cb };
    int rc;
    do {
        rc = io_submit(a->ctx, 1, list);
    } while (rc == -EINTR || rc == -EAGAIN);
    if (rc < 0) return rc;
    return rc == 1 ? 0 : -EIO;
}

int32_t dlog_aio_submit_write(dlog_aio *a, int32_t fd, const void *buf, uint32_t len, uint64_t offset,
                              int32_t rw_flags, uint64_t user_data) {
    struct iocb cb;
    memset(&cb, 0, sizeof(cb));
    io_prep_pwrite(&cb, fd, (void *)buf, len, (long long)offset);
    cb.aio_rw_flags = rw_flags;
    cb.data = (void *)(uintptr_t)user_data;
    return submit_one(a, &cb);
}

int32_t dlog_aio_submit_fdsync(dlog_aio *a, int32_t fd, uint64_t user_data) {
    struct iocb cb;
    memset(&cb, 0, sizeof(cb));
    io_prep_fdsync(&cb, fd);
    cb.data = (void *)(uintptr_t)user_data;
    return submit_one(a, &cb);
}

int32_t dlog_aio_next_completion(dlog_aio *a, uint64_t *user_data, int64_t *res) {
    struct io_event event;
    int rc;
    do {
        rc = io_getevents(a->ctx, 1, 1, &event, NULL);
    } while (rc == -EINTR);
    if (rc < 0) return rc;
    if (rc == 0) return -EAGAIN;
    *user_data = (uint64_t)(uintptr_t)event.data;
    // res is the byte count or a negative errno; res2 is unused for these commands.
    *res = (int64_t)(long)event.res;
    return 0;
}

int32_t dlog_aio_rwf_dsync(void) { return RWF_DSYNC; }
