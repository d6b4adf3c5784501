/*
 * pkg_json: a streaming, deterministic JSON writer for FZIP packages.
 *
 * Entity documents live in the store as BSON; a package holds them as
 * JSON.  This writer turns BSON documents (and a few scalars for the
 * framing around them) into JSON text with exactly one spelling for each
 * value, so that the same data always gives the same bytes and the same
 * checksum (docs/FORMAT.md, "Determinism"):
 *
 *   - keys in stored order, no whitespace inside a document;
 *   - strings escaped as RFC 8259 requires: '"', '\\' and every control
 *     character below 0x20 (\b \f \n \r \t, else \u00XX); everything else,
 *     including non-ASCII, is copied as UTF-8.  Invalid UTF-8 (overlongs,
 *     surrogates, > U+10FFFF, truncated sequences) is an error, never
 *     passed through or replaced;
 *   - int32 and int64 as integers; doubles in the shortest "%.*g" form that
 *     reads back to the same double, with ".0" added when that form looks
 *     like an integer so that the type survives a round trip; NaN and the
 *     infinities are errors (JSON cannot carry them);
 *   - only JSON-native BSON types: double, string, document, array, bool,
 *     null, int32, int64.  Any other type (date, decimal128, binary,
 *     ObjectId ...) is an error that names the field's path.
 *
 * Output goes through a caller-supplied sink in chunks of at most
 * PKGJSON_BUFFER_SIZE bytes; the writer never holds more than that.
 * Nesting deeper than PKGJSON_DEPTH_MAX is an error.
 *
 * Text is appended to the writer's buffer directly (no stdio): strings
 * are checked and searched for bytes to escape in one table-driven pass,
 * then copied in runs; integers are formatted by hand, digit for digit
 * what "%lld" gives.  Doubles (rare in documents) use snprintf under the
 * "C" locale; fzip never calls setlocale, so the decimal point is always
 * '.'.
 */
#ifndef PKG_JSON_H
#define PKG_JSON_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_error.h"

#define PKGJSON_BUFFER_SIZE (64 * 1024) /* bytes buffered before the sink runs */
#define PKGJSON_DEPTH_MAX 32            /* nested documents/arrays in one value */
#define PKGJSON_PATH_MAX 256            /* bytes of a field path kept for errors */
/* An array index as a BSON key (bson_uint32_to_string): 10 digits + NUL. */
#define PKGJSON_INDEX_KEY_SIZE 16

/* Receives the next `len` bytes of output.  Returns false and fills
 * `error` to stop the writer (the failure is returned by the call that
 * flushed). */
typedef bool (*pkgjson_sink_fn)(void *ctx, const void *data, size_t len, fzip_error_t *error);

typedef struct pkgjson_writer pkgjson_writer_t;

/* Returns NULL only on allocation failure.  `sink` must outlive the writer.
 * The caller destroys. */
pkgjson_writer_t *pkgjson_writer_new(pkgjson_sink_fn sink, void *sink_ctx);
/* Discards buffered output that was not flushed.  Accepts NULL. */
void pkgjson_writer_destroy(pkgjson_writer_t *w);

/* Writes punctuation or other text the caller vouches for ("{\"accounts\":[",
 * ",\n"), unescaped. */
bool pkgjson_write_raw(pkgjson_writer_t *w, const char *text, size_t len, fzip_error_t *error);
/* Writes `len` bytes of UTF-8 as a quoted, escaped JSON string.  Embedded
 * NULs are allowed (written as \u0000). */
bool pkgjson_write_string(pkgjson_writer_t *w, const char *s, size_t len, fzip_error_t *error);
bool pkgjson_write_int64(pkgjson_writer_t *w, int64_t v, fzip_error_t *error);
bool pkgjson_write_double(pkgjson_writer_t *w, double v, fzip_error_t *error);
/* Writes a whole BSON document as a JSON object.  On a type or UTF-8
 * error nothing of the document is guaranteed unwritten: the caller
 * abandons the output. */
bool pkgjson_write_document(pkgjson_writer_t *w, const bson_t *doc, fzip_error_t *error);
/* Hands everything buffered to the sink. */
bool pkgjson_flush(pkgjson_writer_t *w, fzip_error_t *error);
/* Bytes accepted so far (flushed or buffered). */
uint64_t pkgjson_bytes_written(const pkgjson_writer_t *w);

/* True if `s[0..len)` is well-formed UTF-8 (RFC 3629).  Shared with the
 * package writer's file name rules. */
bool pkgjson_utf8_valid(const char *s, size_t len);
/* Length of the valid UTF-8 sequence starting at s (1-4), or 0 if the
 * bytes at s do not start one within `len`. */
size_t pkgjson_utf8_seq_len(const char *s, size_t len);

/* Formats `v` in the writer's double spelling into out (NUL-terminated);
 * false for NaN and infinities.  out needs PKGJSON_DOUBLE_MAX bytes. */
#define PKGJSON_DOUBLE_MAX 32
bool pkgjson_format_double(char out[PKGJSON_DOUBLE_MAX], double v);

#endif
