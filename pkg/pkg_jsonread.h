/*
 * pkg_jsonread: a streaming pull reader for the JSON inside FZIP packages.
 *
 * Packages are untrusted input, so this reader is strict and bounded: it
 * accepts exactly RFC 8259 (no comments, no trailing commas, no NaN, no
 * leading zeros, no bare control characters in strings), checks that every
 * string is valid UTF-8 (overlongs, surrogates and code points above
 * U+10FFFF rejected, \u escapes must pair surrogates properly), refuses
 * duplicate keys inside an object (their meaning would be ambiguous) and
 * stops with an error at the first limit hit: nesting depth, bytes of one
 * string, characters of one number, members of one object or array, bytes
 * of one converted document and bytes of the whole input.  It never reads
 * its source further ahead than one buffer of PKGJR_BUFFER_SIZE bytes.
 *
 * Values become BSON: objects are documents, arrays are arrays, strings
 * UTF-8, true/false bool, null null.  A number without fraction or
 * exponent becomes int64 when it fits; any other number becomes int64 when
 * its value is integral and exactly representable (|v| <= 2^53), else a
 * double; a number that overflows a double is an error.
 *
 * Three shapes of input are read:
 *   - a data file, `{"<kind>": [ <object>, <object>, ... ]}`: open it with
 *     pkgjr_open_array(), then pull one element at a time with
 *     pkgjr_next_document(), so memory holds one entity, never the file;
 *   - a bare array of objects, `[ <object>, ... ]` (the HouseF3
 *     application's data files): pkgjr_open_bare_array(), then the same
 *     pkgjr_next_document();
 *   - a single object (the manifest): pkgjr_read_document().
 * Both insist that nothing but whitespace follows the value.
 *
 * Errors are FZIP_DOMAIN_PACKAGE: INVALID_ARGUMENT for malformed JSON,
 * RESOURCE_EXHAUSTED for a limit, whatever the source returned for a read
 * failure.  Messages start with "byte N: ".  After an error the reader is
 * spent: every later call fails again.
 */
#ifndef PKG_JSONREAD_H
#define PKG_JSONREAD_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_error.h"

#define PKGJR_BUFFER_SIZE (64 * 1024) /* bytes read from the source at a time */

/* Default limits (pkgjr_limits_default). */
#define PKGJR_DEPTH_MAX 32                        /* nested objects/arrays in one entity */
#define PKGJR_STRING_MAX (1024 * 1024)            /* bytes of one decoded string or key */
#define PKGJR_KEY_MAX 256                         /* bytes of one object key */
#define PKGJR_NUMBER_MAX 64                       /* characters of one number literal */
/* The most a caller may raise max_number to: the literal is copied into a
 * buffer of this size (plus its NUL) on the stack. */
#define PKGJR_NUMBER_CAP 511
#define PKGJR_MEMBERS_MAX 100000                  /* members of one nested object or array */
#define PKGJR_ELEMENTS_MAX 10000000               /* elements of the top-level array */
#define PKGJR_DOC_MAX (4 * 1024 * 1024)           /* bytes of one converted BSON document */
#define PKGJR_TOTAL_MAX (16ULL * 1024 * 1024 * 1024) /* bytes of the whole input */

typedef struct {
  size_t max_depth;
  size_t max_string;
  size_t max_key;
  size_t max_number;
  size_t max_members;
  size_t max_elements;
  size_t max_doc;
  uint64_t max_total;
} pkgjr_limits_t;

/* Fills *limits with the PKGJR_*_MAX defaults above. */
void pkgjr_limits_default(pkgjr_limits_t *limits);

/* Reads up to `cap` bytes into buf; *n = 0 means the end of the input.
 * Returns false and fills `error` on failure. */
typedef bool (*pkgjr_read_fn)(void *ctx, void *buf, size_t cap, size_t *n, fzip_error_t *error);

typedef struct pkgjr_reader pkgjr_reader_t;

/* Returns NULL only on allocation failure.  `read` and its ctx must outlive
 * the reader; limits (NULL: defaults) are copied.  Caller destroys. */
pkgjr_reader_t *pkgjr_reader_new(pkgjr_read_fn read, void *ctx, const pkgjr_limits_t *limits);
void pkgjr_reader_destroy(pkgjr_reader_t *r); /* accepts NULL */

/* Reads `{"<key>": [` and copies the key into key_out (NUL-terminated,
 * at most key_cap - 1 bytes; a longer key is an error). */
bool pkgjr_open_array(char *key_out, size_t key_cap, pkgjr_reader_t *r, fzip_error_t *error);

/* Reads the `[` of a bare top-level array (instead of pkgjr_open_array);
 * pkgjr_next_document then reads its elements and, at the end, `]`
 * followed by nothing but whitespace. */
bool pkgjr_open_bare_array(pkgjr_reader_t *r, fzip_error_t *error);

/* From now on an integer literal in (INT64_MAX, UINT64_MAX] that is the
 * value of a member named `key` (borrowed: a string that outlives the
 * reader) becomes the int64 with the same 64 bits (two's complement)
 * instead of a double: the HouseF3 application writes transactionHash as
 * an unsigned 64-bit number, format 1.0 stores it as int64 (FORMAT.md,
 * "The HouseF3 flavour").  Any other member keeps the 1.0 reading (a
 * double, which an integer field then refuses).  Off by default; negative
 * literals are unaffected. */
void pkgjr_wrap_uint64(pkgjr_reader_t *r, const char *key);

/* After pkgjr_open_array or pkgjr_open_bare_array: sets *more and, when true, replaces the contents
 * of `doc` (caller-owned, initialised) with the next element, which must
 * be an object.  When the array ends, reads the closing `]}` and checks
 * that only whitespace follows, then sets *more = false. */
bool pkgjr_next_document(bool *more, bson_t *doc, pkgjr_reader_t *r, fzip_error_t *error);

/* Reads one whole top-level object into `doc` (caller-owned, initialised,
 * replaced) and checks that only whitespace follows. */
bool pkgjr_read_document(bson_t *doc, pkgjr_reader_t *r, fzip_error_t *error);

/* Bytes consumed from the source so far. */
uint64_t pkgjr_bytes_read(const pkgjr_reader_t *r);

#endif
