/*
 * pkg_zipout: writes a ZIP archive front to back into a sink, for
 * entries whose deflated bytes, CRC-32 and sizes are all known before the
 * entry's turn (pkg_writer's spools).  Each entry is a local header and
 * its bytes; then the central directory and the end records.  Nothing is
 * ever rewritten, so the sink may be a blob being uploaded, a hash, a
 * socket: the package needs no file of its own and its bytes are written
 * once.
 *
 * The headers are FORMAT.md section 1's: method 8 (deflate), DOS time
 * 1980-01-01 00:00, version made by 6.3 on UNIX, external attributes
 * 0100644, the UTF-8 flag (bit 11) when the name is not ASCII, no extra
 * fields and no comments; byte for byte what libzip writes for the same
 * entries (pkg.zipout checks it).  Zip64 as the APPNOTE (4.5.3) says, only
 * where a field does not fit: the sizes in a local header when an entry's
 * size is 0xFFFFFFFF or more; sizes and offset in its central record; the
 * zip64 end record and locator when there are 0xFFFF entries or more, or
 * the directory's size or offset does not fit 32 bits.
 *
 * Output goes to the sink in PKGZO_BUFFER-byte writes (headers gathered,
 * an entry's bytes read straight into the buffer).  Memory: that buffer;
 * the caller keeps the entries (the central directory is written from
 * them, in the same order, after the last local entry).
 */
#ifndef PKG_ZIPOUT_H
#define PKG_ZIPOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_error.h"
#include "pkg_json.h"

#define PKGZO_BUFFER (256 * 1024) /* bytes per sink write */
#define PKGZO_DOS_DATE ((0u << 9) | (1u << 5) | 1u) /* 1980-01-01 */
#define PKGZO_DOS_TIME 0u
#define PKGZO_MODE 0100644u /* regular file, rw-r--r-- */

typedef struct {
  const char *name; /* UTF-8, at most 0xFFFF bytes */
  uint32_t crc32;   /* of the uncompressed bytes */
  uint64_t size;    /* uncompressed */
  uint64_t comp_size;
  uint64_t offset; /* of its local header; set by pkgzo_local */
} pkgzo_entry_t;

/* Reads `len` of the entry's deflated bytes, from byte `at` of them,
 * into buf; all of them or an error. */
typedef bool (*pkgzo_read_fn)(void *ctx, void *buf, size_t len, uint64_t at,
                              fzip_error_t *error);

typedef struct pkgzo pkgzo_t;

/* *out is the caller's (_destroy).  `sink` gets every byte in order. */
bool pkgzo_new(pkgzo_t **out, pkgjson_sink_fn sink, void *sink_ctx, fzip_error_t *error);
void pkgzo_destroy(pkgzo_t *z); /* accepts NULL */

/* Writes e's local header and its comp_size bytes (read through `read`),
 * and sets e->offset.  Entries go in archive order. */
bool pkgzo_local(pkgzo_t *z, pkgzo_entry_t *e, pkgzo_read_fn read, void *read_ctx,
                 fzip_error_t *error);
/* After the last pkgzo_local: e's central record; call for the same
 * entries in the same order. */
bool pkgzo_central(pkgzo_t *z, const pkgzo_entry_t *e, fzip_error_t *error);
/* The end records; flushes everything to the sink. */
bool pkgzo_end(pkgzo_t *z, fzip_error_t *error);

/* Bytes of the archive so far (written to the sink or buffered). */
uint64_t pkgzo_offset(const pkgzo_t *z);

#endif
