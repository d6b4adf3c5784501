/*
 * pkg_readahead: a read function run on a thread of its own, ahead of the
 * one reading its bytes.  Validating a package's largest entry is one
 * thread parsing JSON while the same thread inflated, CRC-checked and
 * hashed it before (about a fifth of validating 1M transactions); with a
 * read-ahead the inflating and hashing run on the other core, at most
 * `blocks` blocks of `block` bytes ahead, so memory stays bounded.
 *
 * Bytes come out in the order the function produced them, and its error
 * comes out where it happened, after the bytes before it: the reader sees
 * what it would have seen calling the function itself, in other read
 * sizes (never 0 bytes before the end).
 *
 * pkgra_stop hands the function back: its thread finishes the call in
 * progress and ends; what it had read still comes out first, and later
 * reads call the function on the caller's thread.  A caller whose `read`
 * shares state with other code (libzip's archive, for pkg_reader) stops
 * the read-ahead before that code runs.
 *
 *   pkgra_t *ra;
 *   if (!pkgra_new(&ra, read, ctx, 128 * 1024, 4, &err)) ...
 *   while (pkgra_read(ra, buf, sizeof buf, &n, &err) && n > 0) ...
 *   pkgra_destroy(ra);
 */
#ifndef FZIP_PKG_READAHEAD_H
#define FZIP_PKG_READAHEAD_H

#include <stdbool.h>
#include <stddef.h>

#include "fzip_error.h"
#include "pkg_jsonread.h"

#define PKGRA_BLOCK_MAX (16 * 1024 * 1024) /* bytes of one block, at most */
#define PKGRA_BLOCKS_MAX 64                /* blocks in flight, at most */

typedef struct pkgra pkgra_t;

/* Starts the thread, which calls read(ctx, ...) to fill blocks of `block`
 * bytes (a block is handed over full, or shorter at the end or at an
 * error).  read and ctx belong to that thread until pkgra_stop or
 * pkgra_destroy returns.  block in 1..PKGRA_BLOCK_MAX, blocks in
 * 2..PKGRA_BLOCKS_MAX (INVALID_ARGUMENT otherwise); out of memory or no
 * thread: RESOURCE_EXHAUSTED, and read is never called.  *out is the
 * caller's to destroy. */
bool pkgra_new(pkgra_t **out, pkgjr_read_fn read, void *ctx, size_t block, size_t blocks,
               fzip_error_t *error);

/* Copies up to cap bytes, in order, into buf; *n = 0 only at the end.
 * False with read's error once the bytes before it are out (and again at
 * every later call).  One reader thread at a time. */
bool pkgra_read(pkgra_t *ra, void *buf, size_t cap, size_t *n, fzip_error_t *error);

/* Ends the thread after the call in progress (it waits for none to
 * start); read and ctx are the caller's again when this returns.  Later
 * reads give what had been read ahead, then call read themselves.
 * Idempotent. */
void pkgra_stop(pkgra_t *ra);

/* Stops the thread and frees everything (NULL: nothing). */
void pkgra_destroy(pkgra_t *ra);

#endif
