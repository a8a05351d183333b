// Opaque shim over liburing. The public header includes only <stdint.h> so that Swift never parses
// liburing.h (its _GNU_SOURCE/_XOPEN_SOURCE defines clash with the Glibc module).
#ifndef DLOG_URING_H
#define DLOG_URING_H
#include <stdint.h>

typedef struct dlog_uring dlog_uring;

/// Creates a ring with `entries` submission slots. Returns NULL and sets *err to a positive errno on failure.
dlog_uring *dlog_uring_create(uint32_t entries, int32_t *err);
void dlog_uring_destroy(dlog_uring *ring);

/// Queues a write of `len` bytes at `offset`. `rw_flags` is passed to the kernel (e.g. RWF_DSYNC).
/// When `link` is non-zero the next queued request starts only after this one succeeds.
/// Returns 0, or -EBUSY when the submission queue is full.
int32_t dlog_uring_queue_write(dlog_uring *ring, int32_t fd, const void *buf, uint32_t len, uint64_t offset,
                               int32_t rw_flags, int32_t link, uint64_t user_data);
/// Queues an fdatasync (or fsync when `datasync` is 0).
int32_t dlog_uring_queue_fsync(dlog_uring *ring, int32_t fd, int32_t datasync, int32_t link, uint64_t user_data);

/// Submits queued requests. Returns the number submitted or a negative errno.
int32_t dlog_uring_submit(dlog_uring *ring);

/// Waits for one completion (blocking when `wait` is non-zero). Returns 0 with *user_data/*res filled,
/// -EAGAIN when `wait` is 0 and none is ready, or another negative errno.
int32_t dlog_uring_next_completion(dlog_uring *ring, int32_t wait, uint64_t *user_data, int32_t *res);

/// RWF_DSYNC, exported because Swift cannot see the kernel header.
int32_t dlog_uring_rwf_dsync(void);
#endif
