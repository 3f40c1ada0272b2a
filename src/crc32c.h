#ifndef HEREPROXY_CRC32C_H
#define HEREPROXY_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * CRC-32C (Castagnoli, as in iSCSI and ext4): crc32c(0, "123456789", 9)
 * is 0xe3069283. Continue a running value by passing it back in. Uses the
 * SSE 4.2 crc32 instruction where the CPU has it (about 8 bytes a cycle,
 * ten times zlib's CRC-32 here), else tables eight bytes at a time.
 */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

/* The table version alone, for tests that compare the two. */
uint32_t crc32c_portable(uint32_t crc, const void *data, size_t len);

#endif
