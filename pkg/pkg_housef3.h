/*
 * pkg_housef3: the HouseF3 application's own packages, mapped to format 1.0.
 *
 * The real HouseF3 app (FORMAT.md, "The HouseF3 flavour") writes a
 * camelCase manifest (backupFormatVersion, backupTimestamp, userId,
 * housef3Version, packageFormat, jobId, backupType, dataSummary{...Count},
 * compatibility{minimumVersion, supportedVersions}, an always empty
 * `checksums`), its data files as gzipped bare JSON arrays
 * (data/<kind>.json.gz, `[ {...}, ... ]`), and adds derived fields to each
 * entity (exportMetadata, computedFields, userId...).  Everything that
 * differs from format 1.0 is translated here, in one place, so that
 * pkg_reader hands the validator and the restore step a 1.0 manifest and
 * 1.0 entities, and the same rules apply to both flavours:
 *   - pkghf_map_manifest: the manifest, key by key;
 *   - pkghf_map_entity: one entity (the app's derived fields dropped,
 *     analytics given their 1.0 id and epoch-ms dates);
 *   - pkghf_gunzip_*: a bounded, streaming gzip reader in front of the
 *     JSON reader (zlib checks the gzip CRC-32 and length).
 * pkg_reader decides when the flavour applies (pkghf_is_manifest).
 */
#ifndef PKG_HOUSEF3_H
#define PKG_HOUSEF3_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "fzip_entity.h"
#include "fzip_error.h"
#include "pkg_jsonread.h"

#define PKGHF_FORMAT_MAJOR 1            /* backupFormatVersion major this build reads */
#define PKGHF_GZ_SUFFIX ".gz"           /* data/<kind>.json + this */
#define PKGHF_GZ_INPUT (64 * 1024)      /* compressed bytes read from the entry at a time */
/* The largest LZMA dictionary an entry may ask for (the app's zipfile uses
 * 8 MiB, preset 6); a dictionary larger than the entry is cut to its size
 * first, so this bounds the decoder's memory, not what can be read. */
#define PKGHF_LZMA_DICT_MAX (64 * 1024 * 1024)

/* The manifest is the app's: it has backupFormatVersion. */
bool pkghf_is_manifest(const bson_t *manifest);

/* Severity as pkgr_severity_t (1 error, 2 warning); strings borrowed. */
typedef void (*pkghf_issue_fn)(void *ctx, int severity, const char *rule, const char *field,
                               const char *reason);

/* Fills `out` (initialised, emptied first) with the format 1.0 manifest
 * that says what `in`, the app's manifest, says.  Problems with `in`
 * (wrong types, an unreadable version, unknown keys) are reported to
 * on_issue; the mapping goes on so that all are reported. */
void pkghf_map_manifest(bson_t *out, const bson_t *in, pkghf_issue_fn on_issue, void *ctx);

/* Fills `out` (initialised, emptied first) with the format 1.0 form of
 * one entity of `kind` as the app writes it. */
void pkghf_map_entity(bson_t *out, fzip_kind_t kind, const bson_t *in);

/* "2024-05-01T12:00:00.123456+00:00", "2024-05-01 12:00:00", "...Z",
 * or a date "2024-05-01" (midnight UTC) -> epoch ms.  No offset means
 * UTC.  False for anything else, and for a time that does not exist:
 * a day past its month's end (leap years as in the proleptic Gregorian
 * calendar), month 13, hour 24, minute or second 60 (Python, the app's
 * language, writes no leap second), an offset of 24 hours or more. */
bool pkghf_parse_time(int64_t *ms, const char *s);

/* ---- gzip ------------------------------------------------------------- */

typedef struct pkghf_gunzip pkghf_gunzip_t;

/* A gzip reader over `src` (one gzip member, nothing after it).  `name`
 * (copied) is named in errors.  It inflates at most max_out bytes, and
 * refuses a stream whose inflated bytes exceed max_ratio times the
 * compressed bytes read so far once they pass ratio_min_bytes.  NULL only
 * when out of memory; the caller destroys. */
pkghf_gunzip_t *pkghf_gunzip_new(pkgjr_read_fn src, void *src_ctx, const char *name,
                                 uint64_t max_out, uint64_t max_ratio, uint64_t ratio_min_bytes);
/* A pkgjr_read_fn (ctx: the pkghf_gunzip_t).  Errors are FZIP_DOMAIN_PACKAGE:
 * DATA_LOSS for a corrupt or truncated stream, a CRC-32 or length that does
 * not match, or bytes after the stream; RESOURCE_EXHAUSTED for max_out or
 * max_ratio; whatever src returned. */
bool pkghf_gunzip_read(void *gz, void *buf, size_t cap, size_t *n, fzip_error_t *error);
uint64_t pkghf_gunzip_bytes_out(const pkghf_gunzip_t *gz); /* inflated so far */
void pkghf_gunzip_destroy(pkghf_gunzip_t *gz);              /* accepts NULL */

/* ---- LZMA zip entries --------------------------------------------------- */

/* The app's zipfile switches to compression method 14 (LZMA) when the
 * transaction files pass 50 MB, which libzip (as Debian builds it) cannot
 * read.  pkghf_lzma decodes such an entry from its raw compressed bytes
 * (`src`, zip_fopen_index with ZIP_FL_COMPRESSED): the 4-byte zip LZMA
 * header (version, properties size), the LZMA1 properties, the raw LZMA1
 * stream (ending with its end marker or after `size` bytes), and compares
 * the CRC-32 of what it gave with `crc`, the zip directory's.  NULL only
 * when out of memory; the caller destroys. */
typedef struct pkghf_lzma pkghf_lzma_t;

pkghf_lzma_t *pkghf_lzma_new(pkgjr_read_fn src, void *src_ctx, const char *name, uint32_t crc,
                             uint64_t size);
/* A pkgjr_read_fn (ctx: the pkghf_lzma_t); *n == 0 at the end.  Errors are
 * FZIP_DOMAIN_PACKAGE DATA_LOSS (a bad header or stream, a truncated one,
 * a CRC-32 that differs), RESOURCE_EXHAUSTED (a dictionary above
 * PKGHF_LZMA_DICT_MAX), or src's. */
bool pkghf_lzma_read(void *lz, void *buf, size_t cap, size_t *n, fzip_error_t *error);
void pkghf_lzma_destroy(pkghf_lzma_t *lz); /* accepts NULL */

#endif
