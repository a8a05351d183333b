// CRC32C (Castagnoli, reflected polynomial 0x82F63B78). The hardware path uses the SSE4.2 crc32
// instruction eight bytes at a time, on three lanes at once where the buffer is long enough; the portable path
// uses a slicing-by-8 table.
#include "dlog_sys.h"
#include <string.h>

static uint32_t table[8][256];
static int table_ready = 0;

static void build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int s = 1; s < 8; s++) table[s][i] = (table[s - 1][i] >> 8) ^ table[0][table[s - 1][i] & 0xff];
    }
    __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

uint32_t dlog_crc32c_portable(uint32_t crc, const void *data, size_t len) {
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE)) build_table();  // idempotent: same table each time
    const uint8_t *p = data;
    crc = ~crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
              table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
              table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

// One crc32 instruction takes three cycles, but the CPU can start one every cycle: a single chain of them runs at
// a third of the speed the CPU allows. So a long enough buffer is cut into three lanes of `lane` bytes, whose chains
// run side by side, the second and third starting from 0. The CRC register is linear in what it held before and in
// the bytes fed to it, so the register after lanes a and b is shift(a) ^ b, where shift(c) is the register c becomes
// after `lane` zero bytes: a linear map on 32 bits, applied by four table lookups, one per byte of c.
#define LANE_SIZES 4
static const size_t lane_sizes[LANE_SIZES] = {4096, 1024, 256, 64};  // descending; each a multiple of 8
static uint32_t shift_tables[LANE_SIZES][4][256];
static int shift_ready = 0;

__attribute__((target("sse4.2")))
static uint64_t chain(uint64_t c, const uint8_t *p, size_t len) {
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
    }
    return c;
}

__attribute__((target("sse4.2")))
static void build_shift_tables(void) {
    for (int l = 0; l < LANE_SIZES; l++) {
        // The map's value on each of the 32 one-bit registers, then on every byte value at each byte position.
        uint32_t basis[32];
        for (int bit = 0; bit < 32; bit++) {
            uint64_t c = (uint64_t)1 << bit;
            for (size_t n = 0; n < lane_sizes[l]; n += 8) c = _mm_crc32_u64(c, 0);
            basis[bit] = (uint32_t)c;
        }
        for (int byte = 0; byte < 4; byte++) {
            for (uint32_t v = 0; v < 256; v++) {
                uint32_t out = 0;
                for (int bit = 0; bit < 8; bit++) {
                    if (v & (1u << bit)) out ^= basis[byte * 8 + bit];
                }
                shift_tables[l][byte][v] = out;
            }
        }
    }
    __atomic_store_n(&shift_ready, 1, __ATOMIC_RELEASE);
}

static inline uint32_t shift(int l, uint32_t c) {
    return shift_tables[l][0][c & 0xff] ^ shift_tables[l][1][(c >> 8) & 0xff] ^
           shift_tables[l][2][(c >> 16) & 0xff] ^ shift_tables[l][3][c >> 24];
}

// Built once, before main: lazily, a thread could read a table another thread is still filling.
__attribute__((constructor))
static void crc32c_init(void) {
    if (__builtin_cpu_supports("sse4.2")) build_shift_tables();
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const void *data, size_t len) {
    const uint8_t *p = data;
    uint64_t c = ~crc;
    if (__atomic_load_n(&shift_ready, __ATOMIC_ACQUIRE)) {
        for (int l = 0; l < LANE_SIZES; l++) {
            size_t lane = lane_sizes[l];
            while (len >= 3 * lane) {
                uint64_t a = c, b = 0, d = 0;
                const uint8_t *pb = p + lane, *pd = p + 2 * lane;
                for (size_t i = 0; i < lane; i += 8) {
                    uint64_t wa, wb, wd;
                    memcpy(&wa, p + i, 8);
                    memcpy(&wb, pb + i, 8);
                    memcpy(&wd, pd + i, 8);
                    a = _mm_crc32_u64(a, wa);
                    b = _mm_crc32_u64(b, wb);
                    d = _mm_crc32_u64(d, wd);
                }
                c = shift(l, shift(l, (uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)d;
                p += 3 * lane;
                len -= 3 * lane;
            }
        }
    }
    c = chain(c, p, len);
    p += len & ~(size_t)7;
    len &= 7;
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}

int32_t dlog_crc32c_hardware(void) { return __builtin_cpu_supports("sse4.2") ? 1 : 0; }

uint32_t dlog_crc32c(uint32_t crc, const void *data, size_t len) {
    if (__builtin_cpu_supports("sse4.2")) return crc32c_sse42(crc, data, len);
    return dlog_crc32c_portable(crc, data, len);
}
#else
int32_t dlog_crc32c_hardware(void) { return 0; }
uint32_t dlog_crc32c(uint32_t crc, const void *data, size_t len) { return dlog_crc32c_portable(crc, data, len); }
#endif
