/*
 * pkg_spool: a package's entities as BSON documents in an unlinked
 * temporary file, kind by kind, so that a second pass over them (the
 * import's restore, after its validation) reads them back instead of
 * inflating and parsing the package's JSON again, which cost about as much
 * as the validation itself (docs/BENCHMARKS.md "Where the time goes").
 *
 * Kinds are put in ascending order, each once; any kind can then be read
 * back from its first document (pkg_spool_rewind), any number of times.
 * A document is stored as its own BSON bytes (the first four say its
 * length), nothing else.
 *
 * Memory: PKG_SPOOL_BUFFER of stdio buffer and the largest document read
 * back (at most PKG_SPOOL_DOC_MAX).  Disk: the documents' BSON bytes,
 * about the size of the package's uncompressed JSON; the file is created
 * in temp_dir ($TMPDIR, else /tmp, when NULL) as fzip-spool-XXXXXX and
 * unlinked at once, so nothing is left behind whatever happens.  A failed
 * create, write or read is an error (FZIP_DOMAIN_SYS: RESOURCE_EXHAUSTED
 * when the disk is full, INTERNAL otherwise), never a short read taken for
 * the end.
 *
 * A spool belongs to one thread at a time.
 */
#ifndef PKG_SPOOL_H
#define PKG_SPOOL_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "fzip_entity.h"
#include "fzip_error.h"

#define PKG_SPOOL_BUFFER (1u << 20)          /* stdio buffer of the file */
#define PKG_SPOOL_DOC_MAX (16u * 1024 * 1024) /* bytes of one document (BSON's own cap) */

typedef struct pkg_spool pkg_spool_t;

/* An empty spool; *out is the caller's (pkg_spool_destroy).  temp_dir is
 * copied. */
bool pkg_spool_new(pkg_spool_t **out, const char *temp_dir, fzip_error_t *error);

/* Appends doc (copied) as the next document of kind.  A kind lower than
 * the last one put is INVALID_ARGUMENT, a document over PKG_SPOOL_DOC_MAX
 * RESOURCE_EXHAUSTED; neither is written. */
bool pkg_spool_put(pkg_spool_t *s, fzip_kind_t kind, const bson_t *doc, fzip_error_t *error);

/* Documents of kind put so far. */
uint64_t pkg_spool_count(const pkg_spool_t *s, fzip_kind_t kind);

/* Positions the spool before kind's first document (ends the writing:
 * a put after a rewind is INVALID_ARGUMENT). */
bool pkg_spool_rewind(pkg_spool_t *s, fzip_kind_t kind, fzip_error_t *error);

/* The next document of the kind rewound to: true with *doc (the spool's,
 * valid until the next call or the destroy), false at its end (error
 * clear) or on a failure (error set). */
bool pkg_spool_next(pkg_spool_t *s, const bson_t **doc, fzip_error_t *error);

void pkg_spool_destroy(pkg_spool_t *s); /* accepts NULL */

#endif
