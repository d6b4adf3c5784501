/*
 * import_feed: the package's entities handed from the validation, as it
 * reads them, to a restore running beside it on another thread
 * (docs/IMPORT.md "Restoring while validating"); also the transactions an
 * analytics regeneration reads back from the store, handed to the thread
 * that tallies them (analytics.c).
 *
 * One writer (the validator's sink, pkgv_options_t.sink) and one reader
 * (the restore thread).  Documents go in kind by kind, in ascending kind
 * order, and come out in the order they went in; the reader asks for the
 * documents of one kind at a time (import_feed_next), which ends where the
 * next kind begins.  The writer packs documents into chunks of
 * IMPORT_FEED_CHUNK bytes and publishes a chunk when it is full or the
 * kind changes; it waits while IMPORT_FEED_CHUNKS chunks are published
 * and not read yet, so a restore slower than the validation holds the
 * validation back instead of letting memory grow.
 *
 * Either side can stop the other:
 *   - import_feed_close: the writer is done (normally); the reader gets
 *     the rest, then the end.
 *   - import_feed_halt: the writer gives up (validation refused the
 *     package, a cancel, an error), before or after a close; the reader
 *     finishes the chunk it holds, then its next call fails with
 *     FZIP_ERR_ABORTED, and import_feed_halted tells its other loops.
 *   - import_feed_abandon: the reader failed; from then on the writer's
 *     puts drop their documents (the validation goes on to its verdict,
 *     which decides what the job reports).
 *
 * Memory: at most IMPORT_FEED_CHUNKS + 2 chunks (the published ones, the
 * one being filled and the one being read) of IMPORT_FEED_CHUNK bytes;
 * a document larger than a chunk gets a chunk of its own size, freed when
 * read.  Chunks are allocated as they are first needed.
 *
 * Threads: the writer's calls (put, close, halt) from one thread, the
 * reader's (next, abandon, halted) from one other; new and destroy when
 * neither is running.
 */
#ifndef IMPORT_FEED_H
#define IMPORT_FEED_H

#include <bson/bson.h>
#include <stdbool.h>

#include "fzip_entity.h"
#include "fzip_error.h"

/* 640 KiB in all, enough that the restore finds a batch's worth (1,000
 * transactions, ~350 KiB) waiting after each write of one. */
#define IMPORT_FEED_CHUNK (128u * 1024) /* bytes of documents per chunk */
#define IMPORT_FEED_CHUNKS 3u            /* chunks published and not read yet, at most */
#define IMPORT_FEED_TICK_MS 250          /* a waiting writer's calls of its wait function */

typedef struct import_feed import_feed_t;

/* Called on the writer's thread about every IMPORT_FEED_TICK_MS while it
 * waits for the reader, so that a slow restore does not keep the
 * validation from its own duties (the job's lease, a cancel): false
 * makes the put (or close) give up with FZIP_ERR_CANCELLED. */
typedef bool (*import_feed_wait_fn)(void *ctx);

/* An empty, open feed; *out is the caller's (import_feed_destroy).
 * waiting (may be NULL: wait as long as it takes) and its ctx are
 * borrowed for the feed's life. */
bool import_feed_new(import_feed_t **out, import_feed_wait_fn waiting, void *wait_ctx,
                     fzip_error_t *error);
void import_feed_destroy(import_feed_t *f); /* accepts NULL */

/* Writer: appends a copy of doc as the next document of kind, waiting for
 * the reader when the feed is full.  A kind lower than the last one put,
 * or a put after close or halt, is INVALID_ARGUMENT; after the reader
 * abandoned the feed the document is dropped and the put succeeds.
 * CANCELLED when the wait function gave up. */
bool import_feed_put(import_feed_t *f, fzip_kind_t kind, const bson_t *doc, fzip_error_t *error);

/* Writer: the end, after what was put (normal end).  False only when
 * the wait function gave up publishing the last chunk (CANCELLED): the
 * feed is then halted. */
bool import_feed_close(import_feed_t *f, fzip_error_t *error);

/* Writer: stops the reader (its next call fails with ABORTED). */
void import_feed_halt(import_feed_t *f);

/* Reader: the next document of `kind`: true with *doc (the feed's, valid
 * until the next call), false at the end of the kind's documents (error
 * clear: the next document is of a later kind, or the feed was closed) or
 * when halted (error set: ABORTED).  Waits for the writer as needed.
 * Kinds are asked in ascending order; documents of a lower kind still
 * unread are skipped. */
bool import_feed_next(import_feed_t *f, fzip_kind_t kind, const bson_t **doc,
                      fzip_error_t *error);

/* Reader: whether import_feed_next would return without waiting (a
 * document, or an end, is there).  The restore writes the batch it holds
 * rather than wait with it half full: the validation refills the feed
 * meanwhile. */
bool import_feed_ready(import_feed_t *f);

/* Reader: it stops reading; the writer's waiting put (and every later
 * one) returns at once, dropping its document. */
void import_feed_abandon(import_feed_t *f);

/* Writer: whether the reader abandoned the feed (a cheap check for a
 * writer that has no use for its documents then, such as the analytics'
 * read-back, which stops reading the store). */
bool import_feed_abandoned(import_feed_t *f);

/* Reader: whether the writer halted (a cheap check for its loops); if so
 * *error is the ABORTED that import_feed_next gives. */
bool import_feed_halted(import_feed_t *f, fzip_error_t *error);

#endif
