/*
 * pkg_deflate: raw deflate (zip method 8) of one entry at a time, its
 * blocks compressed in parallel on a pool of threads, pigz-style.
 *
 * A stream's input is cut into PKG_DEFLATE_BLOCK-byte blocks.  Each block
 * is deflated on its own (deflateReset, the previous PKG_DEFLATE_DICT bytes
 * of input as dictionary, Z_SYNC_FLUSH; Z_FINISH on the last), so the
 * blocks' outputs concatenated in order are one valid deflate stream that
 * any inflater (unzip, python zipfile, libzip) reads; the entry's CRC-32 is
 * the blocks' CRCs combined.  A block's output depends only on its bytes,
 * its dictionary, whether it is the last, the level and the zlib build:
 * never on the thread count or timing, so 1 or N threads give the same
 * bytes (the package stays deterministic, FORMAT.md section 5).
 *
 * Memory is bounded: a stream has at most PKG_DEFLATE_IN_FLIGHT blocks
 * allocated (each its input, dictionary and output buffer), allocated at
 * the first entry that needs them and reused by the next ones; each worker
 * thread has one zlib state.
 *
 * Threads: a pool of N threads is N - 1 workers, which only compress, and
 * the writer: every pkg_deflate_* call on one stream comes from one thread
 * (the writer's), which hands compressed blocks to the sink in order and,
 * whenever it would wait for one, compresses queued blocks itself.
 * Several streams may share a pool and be open at once (a data entry and
 * its CSV table).
 */
#ifndef PKG_DEFLATE_H
#define PKG_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_error.h"
#include "pkg_json.h"

/* Input bytes per block.  Part of the output bytes: changing it changes
 * every package (pinned baseline, FORMAT.md 5); it must not depend on the
 * thread count. */
#define PKG_DEFLATE_BLOCK (128 * 1024)
#define PKG_DEFLATE_DICT (32 * 1024)      /* deflate's window: the dictionary of a block */
#define PKG_DEFLATE_IN_FLIGHT 8           /* blocks per stream being filled, compressed or written */
#define PKG_DEFLATE_THREADS_MAX 16        /* threads of one pool, its writer's included */
#define PKG_DEFLATE_FLUSH_SLACK 64        /* output bytes beyond deflateBound for the sync flush */

typedef struct pkg_deflate_pool pkg_deflate_pool_t;
typedef struct pkg_deflate pkg_deflate_t;

/* The number of threads "0: all cores" means: the online CPUs, at most
 * PKG_DEFLATE_THREADS_MAX. */
unsigned pkg_deflate_threads_auto(void);

/* A pool compressing on `threads` threads (0: pkg_deflate_threads_auto()):
 * threads - 1 workers and the writer (1: no worker, every block is
 * compressed on the writer's thread), at `level` (zlib's 0-9).  *out is
 * the caller's, released with _destroy. */
bool pkg_deflate_pool_new(pkg_deflate_pool_t **out, unsigned threads, int level,
                          fzip_error_t *error);
/* Stops and joins the workers; accepts NULL.  No stream may be open. */
void pkg_deflate_pool_destroy(pkg_deflate_pool_t *pool);

/* A stream over `pool` (borrowed, must outlive it).  Caller's; _destroy. */
bool pkg_deflate_new(pkg_deflate_t **out, pkg_deflate_pool_t *pool, fzip_error_t *error);
/* Accepts NULL; waits for the stream's blocks still being compressed. */
void pkg_deflate_destroy(pkg_deflate_t *z);

/* Starts an entry whose compressed bytes go to sink(sink_ctx, ...) in
 * order.  A stream holds one entry at a time: _begin after _finish (or a
 * failure, which drops what was pending). */
void pkg_deflate_begin(pkg_deflate_t *z, pkgjson_sink_fn sink, void *sink_ctx);
bool pkg_deflate_write(pkg_deflate_t *z, const void *data, size_t len, fzip_error_t *error);
/* Optional, before _finish: no more input; the last block goes to the pool
 * at once (finish compresses it on the calling thread, which would only
 * wait for it otherwise), so the caller can feed another stream meanwhile
 * and _finish later (the writer keeps two transaction files in flight).
 * No _write after it. */
bool pkg_deflate_end_input(pkg_deflate_t *z, fzip_error_t *error);
/* Compresses the last block and writes everything out; the entry's
 * CRC-32, uncompressed and compressed sizes. */
bool pkg_deflate_finish(pkg_deflate_t *z, uint32_t *crc32, uint64_t *size, uint64_t *comp_size,
                        fzip_error_t *error);

#endif
