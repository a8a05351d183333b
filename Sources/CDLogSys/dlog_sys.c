#define _GNU_SOURCE
#include <malloc.h>
#include <dlfcn.h>
#include <string.h>
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

typedef int (*dlog_mallctl_fn)(const char *, void *, size_t *, void *, size_t);

const char *dlog_malloc_library(void) {
    Dl_info serving;
    // &malloc is the malloc every caller in the process resolves to, wherever it was defined.
    if (dladdr((void *)&malloc, &serving) == 0) return NULL;
    return serving.dli_fname;
}

// jemalloc's control call, only when jemalloc is the malloc every caller gets: one merely loaded beside another
// malloc serves nobody.
static dlog_mallctl_fn dlog_mallctl(void) {
    const char *library = dlog_malloc_library();
    if (library == NULL || strstr(library, "jemalloc") == NULL) return NULL;
    return (dlog_mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
}

const char *dlog_jemalloc_version(void) {
    dlog_mallctl_fn mallctl = dlog_mallctl();
    if (mallctl == NULL) return NULL;
    const char *version = NULL;
    size_t length = sizeof(version);
    return mallctl("version", &version, &length, NULL, 0) == 0 ? version : NULL;
}

int32_t dlog_jemalloc_purge(void) {
    dlog_mallctl_fn mallctl = dlog_mallctl();
    // "arena.4096.purge": 4096 is MALLCTL_ARENAS_ALL, every arena at once.
    return mallctl != NULL && mallctl("arena.4096.purge", NULL, NULL, NULL, 0) == 0 ? 1 : 0;
}
