// Opaque shim over libaio (Linux native AIO: io_setup/io_submit/io_getevents). The public header includes only
// <stdint.h>, so Swift never parses libaio.h or the kernel's aio_abi.h.
#ifndef DLOG_AIO_H
#define DLOG_AIO_H
#include <stdint.h>

typedef struct dlog_aio dlog_aio;

/// Creates an AIO context for `depth` requests at once. Returns NULL and sets *err to a positive errno on
/// failure (ENOSYS: no AIO in this kernel or a seccomp filter; EAGAIN: fs.aio-max-nr reached).
dlog_aio *dlog_aio_create(uint32_t depth, int32_t *err);
void dlog_aio_destroy(dlog_aio *aio);

/// Submits a write of `len` bytes at `offset` with `rw_flags` (e.g. RWF_DSYNC). Returns 0 or a negative errno.
int32_t dlog_aio_submit_write(dlog_aio *aio, int32_t fd, const void *buf, uint32_t len, uint64_t offset,
                              int32_t rw_flags, uint64_t user_data);
/// Submits an fdatasync of `fd`. Returns 0 or a negative errno.
int32_t dlog_aio_submit_fdsync(dlog_aio *aio, int32_t fd, uint64_t user_data);

/// Blocks (in io_getevents, no spinning) until one request completes. Returns 0 with *user_data and *res (bytes
/// written or a negative errno) filled, or a negative errno of io_getevents itself.
int32_t dlog_aio_next_completion(dlog_aio *aio, uint64_t *user_data, int64_t *res);

/// RWF_DSYNC, exported because Swift cannot see the kernel header.
int32_t dlog_aio_rwf_dsync(void);
#endif
