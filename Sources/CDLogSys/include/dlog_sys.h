// Small C helpers for what Swift's Glibc module cannot see (_GNU_SOURCE constants and calls) and CRC32C.
#ifndef DLOG_SYS_H
#define DLOG_SYS_H
#include <stdint.h>
#include <stddef.h>

/// O_DIRECT and O_DSYNC as this libc defines them.
int32_t dlog_o_direct(void);
int32_t dlog_o_dsync(void);
/// pwritev2 with flags (RWF_DSYNC...). Returns bytes written or -errno.
int64_t dlog_pwritev2(int32_t fd, const void *buf, size_t len, int64_t offset, int32_t flags);
/// RWF_DSYNC for pwritev2.
int32_t dlog_rwf_dsync(void);
/// fallocate(mode 0). Returns 0 or -errno.
int32_t dlog_fallocate(int32_t fd, int64_t offset, int64_t len);
/// The peer's user and group of a connected Unix socket (SO_PEERCRED). Returns 0 or -errno.
int32_t dlog_peer_credentials(int32_t fd, uint32_t *uid, uint32_t *gid);

/// malloc_trim(0): hands the allocator's free pages back to the system. Returns 1 if it released any.
int32_t dlog_malloc_trim(void);

/// The file of the library whose malloc this process uses (dladdr), or NULL.
const char *dlog_malloc_library(void);

/// jemalloc's version string when jemalloc serves this process's malloc, else NULL.
const char *dlog_jemalloc_version(void);

/// Purges every jemalloc arena (hands their unused dirty pages back to the system). Returns 1 on success, 0 when
/// jemalloc does not serve malloc.
int32_t dlog_jemalloc_purge(void);

/// CRC32C (Castagnoli), continuing from `crc` (pass 0 to start). Uses SSE4.2 when the CPU has it.
uint32_t dlog_crc32c(uint32_t crc, const void *data, size_t len);
/// The portable table implementation, exported so tests can check both paths agree.
uint32_t dlog_crc32c_portable(uint32_t crc, const void *data, size_t len);
/// 1 when the hardware path is in use.
int32_t dlog_crc32c_hardware(void);
#endif
