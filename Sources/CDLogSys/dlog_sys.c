#define _GNU_SOURCE
#include <malloc.h>
#include "dlog_sys.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

int32_t dlog_o_direct(void) { return O_DIRECT; }
int32_t dlog_o_dsync(void) { return O_DSYNC; }
int32_t dlog_rwf_dsync(void) { return RWF_DSYNC; }

int64_t dlog_pwritev2(int32_t fd, const void *buf, size_t len, int64_t offset, int32_t flags) {
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    ssize_t n;
    do { n = pwritev2(fd, &iov, 1, offset, flags); } while (n < 0 && errno == EINTR);
    return n < 0 ? -(int64_t)errno : (int64_t)n;
}

int32_t dlog_fallocate(int32_t fd, int64_t offset, int64_t len) {
    int rc;
    do { rc = fallocate(fd, 0, offset, len); } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

int32_t dlog_peer_credentials(int32_t fd, uint32_t *uid, uint32_t *gid) {
    struct ucred credentials;
    socklen_t length = sizeof(credentials);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -errno;
    *uid = credentials.uid;
    *gid = credentials.gid;
    return 0;
}

int32_t dlog_malloc_trim(void) { return malloc_trim(0); }

int32_t dlog_malloc_arena_max(int32_t count) { return mallopt(M_ARENA_MAX, count); }
