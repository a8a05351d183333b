#include "dlog_uring.h"
#include <errno.h>
#include <stdlib.h>
#include <liburing.h>

struct dlog_uring {
    struct io_uring ring;
};

dlog_uring *dlog_uring_create(uint32_t entries, int32_t *err) {
    dlog_uring *r = calloc(1, sizeof(*r));
    if (r == NULL) { *err = ENOMEM; return NULL; }
    int rc = io_uring_queue_init(entries, &r->ring, 0);
    if (rc < 0) { *err = -rc; free(r); return NULL; }
    *err = 0;
    return r;
}

void dlog_uring_destroy(dlog_uring *r) {
    if (r == NULL) return;
    io_uring_queue_exit(&r->ring);
    free(r);
}

int32_t dlog_uring_queue_write(dlog_uring *r, int32_t fd, const void *buf, uint32_t len, uint64_t offset,
                               int32_t rw_flags, int32_t link, uint64_t user_data) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (sqe == NULL) return -EBUSY;
    io_uring_prep_write(sqe, fd, buf, len, offset);
    sqe->rw_flags = rw_flags;
    if (link) sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int32_t dlog_uring_queue_fsync(dlog_uring *r, int32_t fd, int32_t datasync, int32_t link, uint64_t user_data) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (sqe == NULL) return -EBUSY;
    io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
    if (link) sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int32_t dlog_uring_submit(dlog_uring *r) {
    return io_uring_submit(&r->ring);
}

int32_t dlog_uring_next_completion(dlog_uring *r, int32_t wait, uint64_t *user_data, int32_t *res) {
    struct io_uring_cqe *cqe = NULL;
    int rc;
    do {
        rc = wait ? io_uring_wait_cqe(&r->ring, &cqe) : io_uring_peek_cqe(&r->ring, &cqe);
    } while (rc == -EINTR);
    if (rc < 0) return rc;
    *user_data = io_uring_cqe_get_data64(cqe);
    *res = cqe->res;
    io_uring_cqe_seen(&r->ring, cqe);
    return 0;
}

int32_t dlog_uring_rwf_dsync(void) { return RWF_DSYNC; }
