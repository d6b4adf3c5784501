/*
 * pkg_limits: the one table of the limits an FZIP importer enforces.
 *
 * Every bound pkg_reader and pkg_validate put on an untrusted package is
 * named here once, as a row of PKG_LIMITS: the constant, its unit and one
 * line on what it bounds.  The values are the constants themselves
 * (defined here or in the header of the module that owns them), so the
 * table cannot say one thing while the code does another.  docs/FORMAT.md
 * section 9 holds the same table, printed from this one by
 * `tests/pkg/print_pkg_limits --markdown`; the test pkg.limits_doc
 * fails when the two differ.
 *
 * PKGV_* rows are defined in pkg_validate.h; the table is expanded there.
 *
 * Exceeding an archive, JSON or id-count limit refuses the package with a
 * "limit.*" rule and status RESOURCE_EXHAUSTED (pkgr_rule_is_limit,
 * pkgv_result_error_code); an id or file name that is too long is a
 * schema error of the field (schema.id) like any other malformed value.
 */
#ifndef PKG_LIMITS_H
#define PKG_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include "fzip_entity.h"
#include "pkg_housef3.h"
#include "pkg_jsonread.h"
#include "pkg_writer.h"

#define PKG_KIB 1024ULL
#define PKG_MIB (1024ULL * 1024)
#define PKG_GIB (1024ULL * 1024 * 1024)

/* manifest + one data file per kind + one entry per transaction file */
#define PKG_ENTRIES_MAX (PKG_FILES_MAX + 1 + FZIP_KIND_COUNT)
/* "files/" + id + "/" + sanitised file name */
#define PKG_ENTRY_NAME_MAX (6 + FZIP_ID_MAX + 1 + PKG_FILE_NAME_MAX)
/* checksums of PKG_ENTRIES_MAX names of PKG_ENTRY_NAME_MAX bytes, plus the
 * external references and files_missing lists, fit with room to spare */
#define PKG_MANIFEST_MAX (64 * PKG_MIB)
#define PKG_DATA_FILE_MAX (8 * PKG_GIB)   /* ~10M transactions of ~800 bytes */
#define PKG_FILE_ENTRY_MAX (256 * PKG_MIB)
#define PKG_TOTAL_UNCOMPRESSED_MAX (32 * PKG_GIB)
/* Real packages compress 5-20x (JSON, CSV/OFX text); deflate tops out
 * near 1032x, which only runs of one byte reach. */
#define PKG_COMPRESSION_RATIO_MAX 200
#define PKG_RATIO_MIN_BYTES (1 * PKG_MIB) /* smaller entries / archives skip the ratio check */

typedef enum { PKG_UNIT_COUNT = 0, PKG_UNIT_BYTES } pkg_limit_unit_t;

typedef struct {
  const char *name;  /* the C constant */
  uint64_t value;
  pkg_limit_unit_t unit;
  const char *what;  /* one line, as printed in FORMAT.md */
} pkg_limit_t;

/* X(constant, unit, what).  Order is FORMAT.md's order. */
#define PKG_LIMITS(X)                                                                              \
  X(PKG_ENTRIES_MAX, PKG_UNIT_COUNT, "zip entries: manifest + 6 data files + `PKG_FILES_MAX`")     \
  X(PKG_FILES_MAX, PKG_UNIT_COUNT, "`files/` entries (writer: same)")                              \
  X(PKG_ENTRY_NAME_MAX, PKG_UNIT_BYTES, "entry name: `files/` + id + `/` + `PKG_FILE_NAME_MAX`")   \
  X(PKG_MANIFEST_MAX, PKG_UNIT_BYTES, "uncompressed manifest.json")                                \
  X(PKG_DATA_FILE_MAX, PKG_UNIT_BYTES, "uncompressed bytes of one data file")                      \
  X(PKG_FILE_ENTRY_MAX, PKG_UNIT_BYTES, "uncompressed bytes of one `files/` entry")                \
  X(PKG_TOTAL_UNCOMPRESSED_MAX, PKG_UNIT_BYTES, "uncompressed bytes of all entries")               \
  X(PKG_COMPRESSION_RATIO_MAX, PKG_UNIT_COUNT,                                                     \
    "declared uncompressed / compressed bytes of an entry, and of all entries / the file's size")  \
  X(PKG_RATIO_MIN_BYTES, PKG_UNIT_BYTES, "an entry or archive declaring less skips the ratio check") \
  X(PKGHF_LZMA_DICT_MAX, PKG_UNIT_BYTES, "LZMA dictionary, cut to the entry's size (section 12)")  \
  X(PKGJR_ELEMENTS_MAX, PKG_UNIT_COUNT, "entities in one data file (writer: `PKG_ENTITIES_MAX`)")  \
  X(PKGJR_DEPTH_MAX, PKG_UNIT_COUNT, "JSON nesting depth of one entity")                           \
  X(PKGJR_STRING_MAX, PKG_UNIT_BYTES, "one JSON string (field limits of section 3 are stricter)")  \
  X(PKGJR_KEY_MAX, PKG_UNIT_BYTES, "one JSON object key")                                          \
  X(PKGJR_NUMBER_MAX, PKG_UNIT_COUNT, "characters of one JSON number")                             \
  X(PKGJR_MEMBERS_MAX, PKG_UNIT_COUNT, "members of one nested object or array")                    \
  X(PKGJR_DOC_MAX, PKG_UNIT_BYTES, "one entity as BSON (the store's `STORE_DOC_MAX`)")             \
  X(PKG_EXTERNAL_REFS_MAX, PKG_UNIT_COUNT, "ids per kind in `external_references` (writer: same)") \
  X(PKGV_REF_IDS_MAX, PKG_UNIT_COUNT, "accounts, categories, file maps or transaction files")       \
  X(PKGV_TXN_IDS_MAX, PKG_UNIT_COUNT, "transactions or analytics records")                         \
  X(FZIP_ID_MAX, PKG_UNIT_BYTES, "an id")                                                          \
  X(PKG_FILE_NAME_MAX, PKG_UNIT_BYTES, "a sanitised file name")

#endif
