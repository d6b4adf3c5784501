/*
 * pkg_reader: see pkg_reader.h.
 *
 * pkgr_open first walks the central directory itself, from the file, for
 * what libzip does not check (entries sharing bytes, NUL in names; see
 * "raw central directory" below), then walks libzip's view of it,
 * classifying each entry (manifest, data file of a kind, transaction file
 * bytes, directory, other) and applying every archive rule to it, each
 * limit of pkg_limits.h included; it keeps going after a problem so
 * that all of them are reported, and refuses the package at the end if
 * any was an error.  Only then is the manifest read (through the same
 * bounded JSON reader as the data) and its version, checksums, counts,
 * external references and missing-file list taken in.  Entry bytes are
 * read lazily by the stream objects, each through a counted, hashing
 * libzip read so that neither a lying header nor a tampered entry passes.
 */
#include "pkg_reader.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zip.h>

#include "pkg_housef3.h"
#include "pkg_json.h"
#include "pkg_readahead.h"

#define MANIFEST_KEY_CAP 64 /* bytes of the data file key read by open_array */

/* ROLE_CSV: csv/<name>.csv, the spreadsheet copy (FORMAT.md 13): accepted
 * with its checksum and otherwise ignored, never restored.
 * ROLE_DELETIONS: data/deletions.json, in an incremental package only
 * (FORMAT.md 15; anywhere else it is an unknown entry). */
typedef enum {
  ROLE_OTHER = 0,
  ROLE_MANIFEST,
  ROLE_DATA,
  ROLE_FILE,
  ROLE_DIR,
  ROLE_CSV,
  ROLE_DELETIONS
} role_t;

typedef struct {
  const char *name; /* libzip's raw name: the archive's until zip_discard */
  zip_uint64_t index;
  uint64_t size, comp_size;
  role_t role;
  int kind;            /* ROLE_DATA: fzip_kind_t */
  bool gz;             /* ROLE_DATA: data/<kind>.json.gz (the HouseF3 flavour) */
  bool lzma;           /* compression method 14: the HouseF3 flavour's large packages */
  uint32_t crc;        /* the directory's CRC-32 (checked by pkghf_lzma for lzma) */
  uint64_t inflated;   /* gz: the most bytes its gzip stream has given so far */
  pkgr_file_entry_t file; /* ROLE_FILE */
  bool has_sha;
  char sha[FZIP_SHA256_HEX_LEN + 1];
} entry_t;

typedef struct {
  char **ids; /* sorted */
  size_t n;
} idlist_t;

struct pkgr {
  zip_t *za;
  uint64_t archive_size; /* bytes of the file on disk: the real compressed size */
  pkgr_limits_t lim;
  pkgr_issue_fn on_issue;
  void *issue_ctx;
  size_t errors;
  bool limit_error; /* an error issue broke a limit: RESOURCE_EXHAUSTED */
  int64_t cd_walked; /* entries scan_central_directory checked, -1 if it could not */
  bool housef3;      /* the manifest is the HouseF3 application's (pkg_housef3) */
  entry_t *entries;
  size_t n_entries;
  entry_t *manifest_entry;
  entry_t *deletions_entry; /* data/deletions.json, or NULL */
  entry_t *data[FZIP_KIND_COUNT];
  entry_t **by_name; /* all entries sorted by name */
  entry_t **files;   /* sorted by file id */
  size_t n_files;
  bson_t *manifest; /* bson_new: a bson_t wants more alignment than calloc gives */
  pkgr_info_t info;
  idlist_t external[FZIP_KIND_COUNT];
  idlist_t missing_files;
  /* The stream whose read-ahead thread is reading the archive, or NULL.
   * libzip's archive is one thread's at a time: any other use of it
   * stops that thread first (stop_ahead). */
  struct entry_stream *ahead;
};

/* A counted, hashing read of one entry.  With `ahead`, the fields below
 * it are the read-ahead thread's until stream_own. */
typedef struct entry_stream {
  pkgr_t *r;
  pkgra_t *ahead;
  zip_file_t *zf;
  pkghf_lzma_t *lz; /* an LZMA entry: zf gives its raw bytes, lz decodes them */
  const entry_t *e;
  uint64_t done;
  uint64_t max;
  fzip_sha256_t *sha;
} entry_stream_t;

struct pkgr_entities {
  pkgr_t *r;
  fzip_kind_t kind;
  entry_stream_t s;
  pkgjr_reader_t *json;
  bson_t *doc; /* bson_new, for the same reason */
  bson_t *mapped; /* the HouseF3 flavour: doc mapped to format 1.0 */
  pkghf_gunzip_t *gz; /* data/<kind>.json.gz: between the entry and the JSON */
  uint64_t count;
  bool started, ended, empty;
  bool failed; /* a read or the JSON failed: finish must not verify the stream */
};

struct pkgr_file {
  entry_stream_t s;
  bool ended;
  char hex[FZIP_SHA256_HEX_LEN + 1]; /* once ended */
};

void pkgr_limits_default(pkgr_limits_t *limits) {
  limits->max_entries = PKGR_ENTRIES_MAX;
  limits->max_files = PKG_FILES_MAX;
  limits->max_data_entry = PKGR_DATA_ENTRY_MAX;
  limits->max_file_entry = PKGR_FILE_ENTRY_MAX;
  limits->max_manifest = PKGR_MANIFEST_MAX;
  limits->max_total = PKGR_TOTAL_MAX;
  limits->max_ratio = PKGR_RATIO_MAX;
  pkgjr_limits_default(&limits->json);
}

const char *pkgr_data_entry(fzip_kind_t kind) {
  const fzip_kind_info_t *info = fzip_kind_info(kind);
  return info ? info->data_file : NULL;
}

static bool oom(fzip_error_t *error) {
  return fzip_error_oom(error, NULL);
}

/* ---- issues ----------------------------------------------------------- */

__attribute__((format(printf, 6, 7))) static void issue(pkgr_t *r, pkgr_severity_t sev,
                                                        const char *rule, const char *entry,
                                                        const char *field, const char *fmt,
                                                        ...) {
  char reason[FZIP_ERROR_MESSAGE_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  if (sev == PKGR_SEVERITY_ERROR) {
    r->errors++;
    r->limit_error = r->limit_error || pkgr_rule_is_limit(rule);
  }
  if (r->on_issue) {
    pkgr_issue_t is = {sev, rule, entry, -1, NULL, field, reason};
    r->on_issue(r->issue_ctx, &is);
  }
}

bool pkgr_rule_is_limit(const char *rule) {
  return rule && strncmp(rule, "limit.", 6) == 0;
}

#define ERR(r, rule, entry, field, ...) issue(r, PKGR_SEVERITY_ERROR, rule, entry, field, __VA_ARGS__)
#define WARN(r, rule, entry, field, ...) \
  issue(r, PKGR_SEVERITY_WARNING, rule, entry, field, __VA_ARGS__)

/* ---- sorted id lists -------------------------------------------------- */

static int cmp_strp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool idlist_has(const idlist_t *l, const char *id) {
  return id && l->n && bsearch(&id, l->ids, l->n, sizeof *l->ids, cmp_strp) != NULL;
}

static void idlist_free(idlist_t *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->ids[i]);
  free(l->ids);
  l->ids = NULL;
  l->n = 0;
}

/* ---- entry names ------------------------------------------------------ */

/* Why a name is unsafe as a path, or NULL. */
static const char *path_problem(const char *name) {
  size_t len = strlen(name);
  if (len == 0)
    return "empty entry name";
  if (!pkgjson_utf8_valid(name, len))
    return "entry name is not valid UTF-8";
  if (name[0] == '/' || (len >= 2 && name[1] == ':'))
    return "absolute path";
  if (strchr(name, '\\'))
    return "backslash in entry name";
  for (const char *p = name; *p;) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if ((n == 2 && p[0] == '.' && p[1] == '.'))
      return "'..' path component";
    if (n == 1 && p[0] == '.')
      return "'.' path component";
    if (n == 0 && slash)
      return "empty path component";
    for (size_t i = 0; i < n; i++) {
      if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
        return "control character in entry name";
    }
    if (!slash)
      break;
    p = slash + 1;
  }
  return NULL;
}

static void classify(pkgr_t *r, entry_t *e) {
  const char *n = e->name;
  size_t len = strlen(n);

  if (len && n[len - 1] == '/') {
    e->role = ROLE_DIR;
    return;
  }
  if (strcmp(n, PKG_MANIFEST_ENTRY) == 0) {
    e->role = ROLE_MANIFEST;
    return;
  }
  if (strcmp(n, PKG_DELETIONS_ENTRY) == 0) {
    e->role = ROLE_DELETIONS;
    return;
  }
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    const char *data = pkgr_data_entry((fzip_kind_t)k);
    size_t dlen = strlen(data);
    bool gz = strncmp(n, data, dlen) == 0 && strcmp(n + dlen, PKGHF_GZ_SUFFIX) == 0;
    if (gz || strcmp(n, data) == 0) {
      e->role = ROLE_DATA;
      e->kind = k;
      e->gz = gz;
      return;
    }
  }
  if (strncmp(n, "csv/", 4) == 0 && n[4] && !strchr(n + 4, '/') && strlen(n) > 8 &&
      strcmp(n + strlen(n) - 4, ".csv") == 0) {
    e->role = ROLE_CSV;
    return;
  }
  if (strncmp(n, "files/", 6) == 0) {
    const char *id = n + 6;
    const char *slash = strchr(id, '/');
    char copy[FZIP_ID_MAX + 1];
    size_t idlen = slash ? (size_t)(slash - id) : 0;
    if (slash && slash[1] && !strchr(slash + 1, '/') && idlen < sizeof copy) {
      memcpy(copy, id, idlen); /* the name is libzip's: checked as a copy */
      copy[idlen] = '\0';
      if (fzip_id_is_valid(copy)) {
        e->role = ROLE_FILE;
        return;
      }
    }
  }
  e->role = ROLE_OTHER;
}

/* ---- archive checks --------------------------------------------------- */

static bool is_link_or_special(zip_t *za, zip_uint64_t i) {
  zip_uint8_t opsys;
  zip_uint32_t attr;
  if (zip_file_get_external_attributes(za, i, 0, &opsys, &attr) != 0)
    return false;
  if (opsys != ZIP_OPSYS_UNIX)
    return false;
  unsigned mode = (attr >> 16) & 0170000u;
  return mode != 0 && mode != 0100000u && mode != 0040000u;
}

static int cmp_entry_name(const void *a, const void *b) {
  return strcmp((*(entry_t *const *)a)->name, (*(entry_t *const *)b)->name);
}

/* Per entry: ratio of declared uncompressed to compressed size.  Small
 * entries are exempt (a 1 KiB run of spaces is not a bomb). */
static void check_entry_ratio(pkgr_t *r, const entry_t *e) {
  uint64_t comp = e->comp_size ? e->comp_size : 1;
  if (e->size >= PKG_RATIO_MIN_BYTES && e->size / comp > r->lim.max_ratio)
    ERR(r, "limit.ratio", e->name, NULL,
        "declares %llu bytes from %llu compressed: ratio above %llu (a zip bomb?)",
        (unsigned long long)e->size, (unsigned long long)e->comp_size,
        (unsigned long long)r->lim.max_ratio);
}

static void check_entry(pkgr_t *r, entry_t *e, const zip_stat_t *st) {
  const char *why = path_problem(e->name);
  uint64_t max;

  if (strlen(e->name) > PKG_ENTRY_NAME_MAX) {
    ERR(r, "limit.entry_name", e->name, NULL, "entry name of %zu bytes exceeds the limit of %d",
        strlen(e->name), (int)PKG_ENTRY_NAME_MAX);
    e->role = ROLE_OTHER;
    return;
  }
  if (why) {
    ERR(r, "archive.path", e->name, NULL, "unsafe entry name: %s", why);
    e->role = ROLE_OTHER;
    return;
  }
  if (is_link_or_special(r->za, e->index))
    ERR(r, "archive.link", e->name, NULL, "entry is a symbolic link or special file");
  if ((st->valid & ZIP_STAT_ENCRYPTION_METHOD) && st->encryption_method != ZIP_EM_NONE)
    ERR(r, "archive.encrypted", e->name, NULL, "entry is encrypted");
  /* LZMA only in the HouseF3 flavour: check_flavour_entries, once the
   * manifest says which flavour the package is. */
  e->lzma = (st->valid & ZIP_STAT_COMP_METHOD) && st->comp_method == ZIP_CM_LZMA;
  e->crc = (st->valid & ZIP_STAT_CRC) ? st->crc : 0;
  if ((st->valid & ZIP_STAT_COMP_METHOD) && st->comp_method != ZIP_CM_STORE &&
      st->comp_method != ZIP_CM_DEFLATE && !e->lzma)
    ERR(r, "archive.compression", e->name, NULL,
        "compression method %d (stored and deflate are read; LZMA in HouseF3 application "
        "packages)", (int)st->comp_method);
  classify(r, e);
  max = e->role == ROLE_DATA || e->role == ROLE_CSV || e->role == ROLE_DELETIONS
            ? r->lim.max_data_entry
        : e->role == ROLE_MANIFEST ? r->lim.max_manifest
                                   : r->lim.max_file_entry;
  if (e->size > max)
    ERR(r, "limit.entry_size", e->name, NULL, "declares %llu bytes, above the limit of %llu",
        (unsigned long long)e->size, (unsigned long long)max);
  check_entry_ratio(r, e);
  /* FORMAT.md section 1: no directory entries, no other entries. */
  if (e->role == ROLE_DIR)
    ERR(r, "archive.directory", e->name, NULL, "directory entry (the format has none)");
  else if (e->role == ROLE_OTHER)
    ERR(r, "archive.unknown_entry", e->name, NULL,
        "entry is not one of the format's names (manifest.json, data/<kind>.json, "
        "files/<fileId>/<name>; data/<kind>.json.gz in HouseF3 packages)");
}

/* Over the whole archive: declared sizes against the limit, and against
 * the file's real size, which overlapping entries cannot inflate. */
static void check_totals(pkgr_t *r, uint64_t total) {
  uint64_t size = r->archive_size ? r->archive_size : 1;
  if (total > r->lim.max_total)
    ERR(r, "limit.total_size", NULL, NULL,
        "entries declare %llu uncompressed bytes, above the limit of %llu",
        (unsigned long long)total, (unsigned long long)r->lim.max_total);
  if (total >= PKG_RATIO_MIN_BYTES && total / size > r->lim.max_ratio)
    ERR(r, "limit.ratio", NULL, NULL,
        "entries declare %llu uncompressed bytes in a %llu-byte archive: ratio above %llu "
        "(a zip bomb?)",
        (unsigned long long)total, (unsigned long long)r->archive_size,
        (unsigned long long)r->lim.max_ratio);
}

static bool read_directory(pkgr_t *r, fzip_error_t *error) {
  zip_int64_t n = zip_get_num_entries(r->za, 0);
  uint64_t total = 0;

  if (n < 0 || (uint64_t)n > r->lim.max_entries) {
    ERR(r, "limit.entries", NULL, NULL, "%lld entries exceed the limit of %llu", (long long)n,
        (unsigned long long)r->lim.max_entries);
    return true;
  }
  /* What could not be checked for overlaps is not read. */
  if (r->cd_walked != n)
    ERR(r, "archive.corrupt", NULL, NULL,
        "libzip reads %lld entries where the central directory walk found %lld: the archive's "
        "structure is ambiguous",
        (long long)n, (long long)r->cd_walked);
  if (n && !(r->entries = calloc((size_t)n, sizeof *r->entries)))
    return oom(error);
  for (zip_uint64_t i = 0; i < (zip_uint64_t)n; i++) {
    zip_stat_t st;
    entry_t *e = &r->entries[r->n_entries];
    zip_stat_init(&st);
    if (zip_stat_index(r->za, i, ZIP_FL_ENC_RAW, &st) != 0 || !(st.valid & ZIP_STAT_NAME) ||
        !(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE)) {
      const char *name = zip_get_name(r->za, i, ZIP_FL_ENC_RAW);
      ERR(r, "archive.corrupt", name, NULL, "entry %llu: %s", (unsigned long long)i,
          zip_strerror(r->za));
      continue;
    }
    e->name = st.name; /* with ZIP_FL_ENC_RAW, the directory's own string (no copy) */
    e->index = i;
    e->size = st.size;
    e->comp_size = st.comp_size;
    e->kind = -1;
    r->n_entries++;
    total = total + st.size < total ? UINT64_MAX : total + st.size;
    check_entry(r, e, &st);
  }
  check_totals(r, total);
  return true;
}

/* Duplicate names (libzip would silently give the first) and duplicate
 * file ids under files/. */
static bool check_duplicates(pkgr_t *r, fzip_error_t *error) {
  if (!(r->by_name = calloc(r->n_entries ? r->n_entries : 1, sizeof *r->by_name)))
    return oom(error);
  for (size_t i = 0; i < r->n_entries; i++)
    r->by_name[i] = &r->entries[i];
  qsort(r->by_name, r->n_entries, sizeof *r->by_name, cmp_entry_name);
  for (size_t i = 1; i < r->n_entries; i++) {
    if (strcmp(r->by_name[i]->name, r->by_name[i - 1]->name) == 0)
      ERR(r, "archive.duplicate_entry", r->by_name[i]->name, NULL,
          "entry name appears more than once");
  }
  return true;
}

static int cmp_name_entry(const void *key, const void *elem) {
  return strcmp((const char *)key, (*(entry_t *const *)elem)->name);
}

static entry_t *find_entry(const pkgr_t *r, const char *name) {
  entry_t **e = r->n_entries ? bsearch(name, r->by_name, r->n_entries, sizeof *r->by_name,
                                       cmp_name_entry)
                             : NULL;
  return e ? *e : NULL;
}

static int cmp_file_id(const void *a, const void *b) {
  return strcmp((*(entry_t *const *)a)->file.file_id, (*(entry_t *const *)b)->file.file_id);
}

/* Splits files/<id>/<name> (checked by classify) and sorts by id. */
static bool index_files(pkgr_t *r, fzip_error_t *error) {
  size_t n = 0;
  for (size_t i = 0; i < r->n_entries; i++)
    n += r->entries[i].role == ROLE_FILE;
  if (n && !(r->files = calloc(n, sizeof *r->files)))
    return oom(error);
  for (size_t i = 0; i < r->n_entries; i++) {
    entry_t *e = &r->entries[i];
    if (e->role == ROLE_DATA) {
      if (!r->data[e->kind])
        r->data[e->kind] = e;
      else if (r->data[e->kind]->gz != e->gz)
        ERR(r, "archive.duplicate_data", e->name, NULL,
            "both %s and %s.gz hold %s: which one is the data is ambiguous",
            pkgr_data_entry((fzip_kind_t)e->kind), pkgr_data_entry((fzip_kind_t)e->kind),
            fzip_kind_info((fzip_kind_t)e->kind)->name);
      continue;
    }
    if (e->role == ROLE_MANIFEST && !r->manifest_entry)
      r->manifest_entry = e;
    if (e->role == ROLE_DELETIONS)
      r->deletions_entry = e;
    if (e->role != ROLE_FILE)
      continue;
    size_t idlen = (size_t)(strchr(e->name + 6, '/') - (e->name + 6));
    char *id = fzip_strndup(e->name + 6, idlen);
    if (!id)
      return oom(error);
    e->file.file_id = id;
    e->file.name = e->name + 6 + idlen + 1;
    e->file.entry = e->name;
    e->file.size = e->size;
    r->files[r->n_files++] = e;
  }
  if (r->n_files > r->lim.max_files)
    ERR(r, "limit.files", NULL, NULL, "%zu files/ entries exceed the limit of %llu", r->n_files,
        (unsigned long long)r->lim.max_files);
  if (r->n_files)
    qsort(r->files, r->n_files, sizeof *r->files, cmp_file_id);
  for (size_t i = 1; i < r->n_files; i++) {
    if (strcmp(r->files[i]->file.file_id, r->files[i - 1]->file.file_id) == 0)
      ERR(r, "archive.duplicate_file", r->files[i]->name, NULL,
          "file id %s has more than one files/ entry", r->files[i]->file.file_id);
  }
  return true;
}

/* ---- entry streams ---------------------------------------------------- */

/* libzip's bytes of the entry: decompressed, or for an LZMA entry (opened
 * with ZIP_FL_COMPRESSED) the raw bytes pkghf_lzma decodes. */
static bool raw_read(void *ctx, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  entry_stream_t *s = ctx;
  zip_int64_t got = zip_fread(s->zf, buf, cap);
  *n = 0;
  if (got < 0)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_DATA_LOSS, "%s: %s", s->e->name,
                          zip_error_strerror(zip_file_get_error(s->zf)));
  *n = (size_t)got;
  return true;
}

/* Ends the archive's read-ahead thread, if one runs (its stream goes on
 * reading on the caller's thread). */
static void stop_ahead(pkgr_t *r) {
  if (!r->ahead)
    return;
  pkgra_stop(r->ahead->ahead);
  r->ahead = NULL;
}

/* The stream's fields are the caller's again. */
static void stream_own(entry_stream_t *s) {
  if (s->ahead && s->r->ahead == s)
    stop_ahead(s->r);
}

static bool stream_open(entry_stream_t *s, pkgr_t *r, const entry_t *e, uint64_t max,
                        fzip_error_t *error) {
  stop_ahead(r);
  memset(s, 0, sizeof *s);
  s->r = r;
  s->e = e;
  s->max = max < e->size ? max : e->size;
  if (!(s->sha = fzip_sha256_new()))
    return oom(error);
  if (!(s->zf = zip_fopen_index(r->za, e->index, e->lzma ? ZIP_FL_COMPRESSED : 0)))
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_DATA_LOSS, "%s: %s", e->name,
                          zip_strerror(r->za));
  if (e->lzma && !(s->lz = pkghf_lzma_new(raw_read, s, e->name, e->crc, e->size)))
    return oom(error);
  return true;
}

/* Decompressed bytes of the entry: libzip's, or pkghf_lzma's. */
static bool entry_read(entry_stream_t *s, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  return s->lz ? pkghf_lzma_read(s->lz, buf, cap, n, error) : raw_read(s, buf, cap, n, error);
}

static void stream_close(entry_stream_t *s) {
  if (s->r)
    stop_ahead(s->r);
  pkgra_destroy(s->ahead);
  pkghf_lzma_destroy(s->lz);
  if (s->zf)
    zip_fclose(s->zf);
  fzip_sha256_destroy(s->sha);
  memset(s, 0, sizeof *s);
}

/* stream_read on the thread that reads the archive: the read-ahead's, or
 * the caller's. */
static bool stream_read_here(void *ctx, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  entry_stream_t *s = ctx;
  size_t got;
  *n = 0;
  if (cap > PKGR_READ_CHUNK)
    cap = PKGR_READ_CHUNK;
  /* Ask for one byte more than allowed so that excess data is noticed. */
  if (s->done + cap > s->max + 1)
    cap = (size_t)(s->max + 1 - s->done);
  if (!entry_read(s, buf, cap, &got, error))
    return false;
  if (s->done + (uint64_t)got > s->max)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_OUT_OF_RANGE,
                          "%s: inflates to more than the %llu bytes its header declares",
                          s->e->name, (unsigned long long)s->max);
  s->done += (uint64_t)got;
  fzip_sha256_update(s->sha, buf, (size_t)got);
  *n = (size_t)got;
  return true;
}

static bool stream_read(entry_stream_t *s, void *buf, size_t cap, size_t *n,
                        fzip_error_t *error) {
  /* Another stream's thread is in the archive: this read (or, once its
   * ring is drained, a stopped read-ahead's) may use it too. */
  if (s->r->ahead && s->r->ahead != s)
    stop_ahead(s->r);
  if (s->ahead)
    return pkgra_read(s->ahead, buf, cap, n, error);
  return stream_read_here(s, buf, cap, n, error);
}

/* Reads the rest of a large entry ahead on a thread of its own, when no
 * other stream does. */
static bool stream_read_ahead(entry_stream_t *s, fzip_error_t *error) {
  if (s->e->size < PKGR_AHEAD_MIN || s->r->ahead)
    return true;
  if (!pkgra_new(&s->ahead, stream_read_here, s, PKGR_AHEAD_BLOCK, PKGR_AHEAD_BLOCKS, error))
    return false;
  s->r->ahead = s;
  return true;
}

/* At the end of an entry: short reads and checksum. */
static bool stream_verify(char *hex_out, entry_stream_t *s, fzip_error_t *error) {
  char hex[FZIP_SHA256_HEX_LEN + 1];
  stream_own(s);
  if (s->done != s->e->size)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_OUT_OF_RANGE,
                          "%s: inflates to %llu bytes, its header declares %llu", s->e->name,
                          (unsigned long long)s->done, (unsigned long long)s->e->size);
  fzip_sha256_final_hex(s->sha, hex);
  if (hex_out)
    memcpy(hex_out, hex, sizeof hex);
  if (s->e->has_sha && strcmp(hex, s->e->sha) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_DATA_LOSS,
                          "%s: sha256 %s does not match the manifest's %s", s->e->name, hex,
                          s->e->sha);
  return true;
}

static bool json_source(void *ctx, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  return stream_read(ctx, buf, cap, n, error);
}

/* ---- manifest --------------------------------------------------------- */

static bool read_manifest_doc(pkgr_t *r, fzip_error_t *error) {
  entry_stream_t s;
  pkgjr_reader_t *json = NULL;
  pkgjr_limits_t lim = r->lim.json;
  fzip_error_t jerr = {0};
  bool ok = false;

  if (!stream_open(&s, r, r->manifest_entry, r->lim.max_manifest, error))
    goto done;
  lim.max_doc = (size_t)r->lim.max_manifest;
  lim.max_total = r->lim.max_manifest;
  lim.max_members = (size_t)r->lim.max_entries + 16;
  if (!(json = pkgjr_reader_new(json_source, &s, &lim))) {
    oom(error);
    goto done;
  }
  if (!pkgjr_read_document(r->manifest, json, &jerr)) {
    if (jerr.domain == FZIP_DOMAIN_SYS) {
      *error = jerr;
      goto done;
    }
    ERR(r, "manifest.json", PKG_MANIFEST_ENTRY, NULL, "%s", jerr.message);
  }
  ok = true;
done:
  pkgjr_reader_destroy(json);
  stream_close(&s);
  return ok;
}

/* "1.0" -> 1, 0; false unless two dot-separated decimal numbers. */
static bool parse_version(int *major, int *minor, const char *v) {
  char *end;
  long a, b;
  if (!v || !(v[0] >= '0' && v[0] <= '9'))
    return false;
  a = strtol(v, &end, 10);
  if (*end != '.' || !(end[1] >= '0' && end[1] <= '9'))
    return false;
  b = strtol(end + 1, &end, 10);
  if (*end != '\0' && *end != '.')
    return false; /* "2.0.0" style is accepted: the patch part is ignored */
  if (a > 1000 || b > 1000)
    return false;
  *major = (int)a;
  *minor = (int)b;
  return true;
}

static const char *str_at(const bson_t *doc, const char *path, bool *wrong_type) {
  bson_iter_t it;
  *wrong_type = false;
  if (!bson_iter_init(&it, doc) || !bson_iter_find_descendant(&it, path, &it))
    return NULL;
  if (!BSON_ITER_HOLDS_UTF8(&it)) {
    *wrong_type = true;
    return NULL;
  }
  return bson_iter_utf8(&it, NULL);
}

static void copy_info(char *dst, size_t cap, const char *src) {
  snprintf(dst, cap, "%s", src ? src : "");
}

static void check_version(pkgr_t *r) {
  bool wrong;
  const char *v = str_at(r->manifest, "export_format_version", &wrong);
  int maj, min;

  if (!v) {
    ERR(r, "manifest.version", PKG_MANIFEST_ENTRY, "export_format_version",
        wrong ? "export_format_version is not a string" : "export_format_version is missing");
    return;
  }
  copy_info(r->info.format_version, sizeof r->info.format_version, v);
  if (!parse_version(&maj, &min, v)) {
    ERR(r, "manifest.version", PKG_MANIFEST_ENTRY, "export_format_version",
        "export_format_version \"%.32s\" is not MAJOR.MINOR", v);
    return;
  }
  r->info.format_major = maj;
  r->info.format_minor = min;
  if (maj != PKG_FORMAT_MAJOR) {
    ERR(r, "manifest.version", PKG_MANIFEST_ENTRY, "export_format_version",
        "format %d.%d is not supported (this build reads %d.x)", maj, min, PKG_FORMAT_MAJOR);
    return;
  }
  if (min > PKG_FORMAT_MINOR)
    ERR(r, "manifest.version", PKG_MANIFEST_ENTRY, "export_format_version",
        "format %d.%d is newer than this build's %s (FORMAT.md section 8)", maj, min,
        PKG_FORMAT_VERSION);
  /* compatibility.minimum_version is not checked: the design document
   * fills it with an application version ("2.0.0"), not a format one. */
}

/* The manifest's `field` as an object, in *sub.  False when it is absent
 * (*absent: the caller says what that means) or not an object (reported
 * here). */
static bool manifest_object(pkgr_t *r, bson_iter_t *sub, const char *field, bool *absent) {
  bson_iter_t it;

  *absent = !bson_iter_init_find(&it, r->manifest, field);
  if (*absent)
    return false;
  if (BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, sub))
    return true;
  ERR(r, "manifest.field", PKG_MANIFEST_ENTRY, field, "%s is not an object", field);
  return false;
}

static void read_info(pkgr_t *r) {
  static const char *count_keys[FZIP_KIND_COUNT] = {
      "accounts_count", "categories_count", "file_maps_count", "transaction_files_count",
      "transactions_count", "analytics_count"};
  bson_iter_t it, sub;
  bool wrong, absent;
  const char *s;

  copy_info(r->info.source_user_id, sizeof r->info.source_user_id,
            str_at(r->manifest, "user_id", &wrong));
  s = str_at(r->manifest, "application_version", &wrong);
  copy_info(r->info.application_version, sizeof r->info.application_version,
            s ? s : str_at(r->manifest, "housef3_version", &wrong));
  copy_info(r->info.export_type, sizeof r->info.export_type,
            str_at(r->manifest, "export_type", &wrong));
  s = str_at(r->manifest, "package_format", &wrong);
  r->info.design_flavour = !s && !wrong && !r->housef3;
  if ((s && strcmp(s, PKG_PACKAGE_FORMAT) != 0) || wrong)
    ERR(r, "manifest.field", PKG_MANIFEST_ENTRY, "package_format",
        "package_format is not \"%s\"", PKG_PACKAGE_FORMAT);
  if (bson_iter_init_find(&it, r->manifest, "export_timestamp_ms") &&
      BSON_ITER_HOLDS_INT64(&it))
    r->info.export_timestamp_ms = bson_iter_int64(&it);
  if (!manifest_object(r, &sub, "data_summary", &absent)) {
    if (absent)
      WARN(r, "manifest.count", PKG_MANIFEST_ENTRY, "data_summary",
           "no data_summary: entity counts are not cross-checked");
    return;
  }
  while (bson_iter_next(&sub)) {
    const char *key = bson_iter_key(&sub);
    int k = -1;
    for (int i = 0; i < FZIP_KIND_COUNT; i++)
      k = strcmp(key, count_keys[i]) == 0 ? i : k;
    bool is_files = strcmp(key, "files_count") == 0;
    if (k < 0 && !is_files)
      continue;
    if (!BSON_ITER_HOLDS_INT64(&sub) || bson_iter_int64(&sub) < 0) {
      char field[PKGR_FIELD_PATH_MAX];
      snprintf(field, sizeof field, "data_summary.%s", key);
      ERR(r, "manifest.field", PKG_MANIFEST_ENTRY, field, "%s is not a non-negative integer",
          key);
      continue;
    }
    if (is_files) {
      r->info.has_files_count = true;
      r->info.files_count = (uint64_t)bson_iter_int64(&sub);
    } else {
      r->info.has_count[k] = true;
      r->info.count[k] = (uint64_t)bson_iter_int64(&sub);
    }
  }
}

/* The entry a checksums key names: the exact entry name, or a bare data
 * file name ("accounts.json") as the design document writes them. */
static entry_t *checksum_target(pkgr_t *r, const char *key) {
  char full[sizeof "data/" + PKGR_ENTRY_NAME_MAX];
  entry_t *e = find_entry(r, key);
  if (e || strchr(key, '/') || (size_t)snprintf(full, sizeof full, "data/%s", key) >= sizeof full)
    return e;
  e = find_entry(r, full);
  return e && e->role == ROLE_DATA ? e : NULL;
}

/* Exactly 64 lower-case hex digits: one spelling, so that a digest
 * compares as a string everywhere. */
static bool hex_sha256(char out[FZIP_SHA256_HEX_LEN + 1], const char *v) {
  if (!pkg_sha256_hex_is_valid(v))
    return false;
  memcpy(out, v, FZIP_SHA256_HEX_LEN + 1);
  return true;
}

/* Exactly "sha256:<64 lower-case hex>", as the schema's pattern says. */
static bool parse_sha(char out[FZIP_SHA256_HEX_LEN + 1], const char *v) {
  return strncmp(v, PKG_CHECKSUM_PREFIX, PKG_CHECKSUM_PREFIX_LEN) == 0 &&
         hex_sha256(out, v + PKG_CHECKSUM_PREFIX_LEN);
}

static void read_checksums(pkgr_t *r) {
  bson_iter_t sub;
  bool absent;
  if (!manifest_object(r, &sub, "checksums", &absent)) {
    if (absent)
      ERR(r, "checksum.missing", PKG_MANIFEST_ENTRY, "checksums",
          "the manifest has no checksums: every entry must carry a sha256");
    return;
  }
  while (bson_iter_next(&sub)) {
    const char *key = bson_iter_key(&sub);
    entry_t *e = checksum_target(r, key);
    char sha[FZIP_SHA256_HEX_LEN + 1];
    char field[PKGR_ENTRY_NAME_MAX + 16];
    snprintf(field, sizeof field, "checksums.%s", key);
    if (!BSON_ITER_HOLDS_UTF8(&sub) || !parse_sha(sha, bson_iter_utf8(&sub, NULL))) {
      ERR(r, "manifest.field", PKG_MANIFEST_ENTRY, field,
          "checksum is not \"sha256:<64 lower-case hex>\"");
      continue;
    }
    if (!e || (e->role != ROLE_DATA && e->role != ROLE_FILE && e->role != ROLE_CSV &&
               e->role != ROLE_DELETIONS)) {
      ERR(r, "checksum.unknown_entry", key, field,
          "the manifest has a checksum for an entry the package does not contain");
      continue;
    }
    e->has_sha = true;
    memcpy(e->sha, sha, sizeof sha);
  }
  size_t unchecked = 0;
  for (size_t i = 0; i < r->n_entries; i++) {
    entry_t *e = &r->entries[i];
    if (e->role == ROLE_FILE)
      e->file.has_checksum = e->has_sha;
    if ((e->role != ROLE_DATA && e->role != ROLE_FILE && e->role != ROLE_DELETIONS) ||
        e->has_sha)
      continue;
    /* The HouseF3 app writes no checksums: what can be is verified
     * otherwise (FORMAT.md, "The HouseF3 flavour"), and the job says so. */
    if (r->housef3)
      unchecked++;
    /* The design flavour's files/ entries may go without: pkg_validate
     * then checks them against their record's sha256 (FORMAT.md 8). */
    else if (e->role != ROLE_FILE || !r->info.design_flavour)
      ERR(r, "checksum.missing", e->name, "checksums",
          "the manifest gives no sha256 for this entry");
  }
  if (unchecked)
    WARN(r, "checksum.absent", PKG_MANIFEST_ENTRY, "checksums",
         "HouseF3 application package: no sha256 for %zu of its entries; they are checked only "
         "by the zip and gzip CRC-32s, the counts of dataSummary and each file's fileSize",
         unchecked);
}

/* Reads an array of ids into a sorted list of at most max. */
static bool read_id_array(idlist_t *out, pkgr_t *r, const bson_iter_t *arr_it, const char *field,
                          size_t max, fzip_error_t *error) {
  bson_iter_t it;
  size_t n = 0;
  if (!BSON_ITER_HOLDS_ARRAY(arr_it) || !bson_iter_recurse(arr_it, &it)) {
    ERR(r, "manifest.field", PKG_MANIFEST_ENTRY, field, "%s is not an array", field);
    return true;
  }
  while (bson_iter_next(&it)) {
    if (!BSON_ITER_HOLDS_UTF8(&it) || !fzip_id_is_valid(bson_iter_utf8(&it, NULL))) {
      ERR(r, "manifest.field", PKG_MANIFEST_ENTRY, field, "%s holds something not an id", field);
      return true;
    }
    if (n >= max) {
      ERR(r, "limit.ids", PKG_MANIFEST_ENTRY, field, "%s lists more than %zu ids", field, max);
      return true;
    }
    char **p = realloc(out->ids, (n + 1) * sizeof *p);
    if (!p)
      return oom(error);
    out->ids = p;
    if (!(p[n] = strdup(bson_iter_utf8(&it, NULL))))
      return oom(error);
    out->n = ++n;
  }
  if (out->n)
    qsort(out->ids, out->n, sizeof *out->ids, cmp_strp);
  return true;
}

static bool read_references(pkgr_t *r, fzip_error_t *error) {
  bson_iter_t it, sub;
  char field[96];
  bool absent;
  if (bson_iter_init_find(&it, r->manifest, "files_missing") &&
      !read_id_array(&r->missing_files, r, &it, "files_missing", PKG_FILES_MAX, error))
    return false;
  if (!manifest_object(r, &sub, "external_references", &absent))
    return true; /* absent: no references outside the package */
  while (bson_iter_next(&sub)) {
    fzip_kind_t k;
    if (!fzip_kind_from_name(&k, bson_iter_key(&sub)))
      continue;
    snprintf(field, sizeof field, "external_references.%s", bson_iter_key(&sub));
    if (r->external[k].n == 0 &&
        !read_id_array(&r->external[k], r, &sub, field, PKG_EXTERNAL_REFS_MAX, error))
      return false;
  }
  return true;
}

/* The keys docs/schema/manifest.schema.json allows, per object: format
 * 1.0 has additionalProperties false everywhere but checksums. */
static const char *const manifest_keys[] = {
    "export_format_version", "package_format", "export_timestamp", "export_timestamp_ms",
    "user_id", "application_version", "housef3_version", "export_type", "filters",
    "data_summary", "checksums", "compatibility", "external_references", "files_missing",
    PKG_INCREMENTAL_KEY, NULL};
static const char *const filters_keys[] = {"account_ids", "date_from", "date_to", NULL};
static const char *const summary_keys[] = {
    "accounts_count", "transactions_count", "categories_count", "file_maps_count",
    "transaction_files_count", "analytics_count", "analytics_included", "files_count",
    "files_bytes", "files_missing_count", NULL};
static const char *const compatibility_keys[] = {"minimum_version", "supported_versions", NULL};
static const char *const external_keys[] = {"accounts", "categories", "file_maps",
                                            "transaction_files", NULL};
static const char *const incremental_keys[] = {"base_export_id", "base_package_sha256",
                                               "base_change_seq", "change_seq", "chain_length",
                                               NULL};

static bool key_known(const char *key, const char *const *keys) {
  for (; *keys; keys++) {
    if (strcmp(key, *keys) == 0)
      return true;
  }
  return false;
}

static void check_keys(pkgr_t *r, bson_iter_t *it, const char *prefix, const char *const *keys) {
  char field[PKGJR_KEY_MAX + 32];
  while (bson_iter_next(it)) {
    const char *key = bson_iter_key(it);
    if (key_known(key, keys))
      continue;
    snprintf(field, sizeof field, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", key);
    ERR(r, "manifest.unknown_key", PKG_MANIFEST_ENTRY, field,
        "key \"%.64s\" is not in the 1.0 manifest schema", key);
  }
}

static void check_manifest_keys(pkgr_t *r) {
  static const struct {
    const char *name;
    const char *const *keys;
  } objects[] = {{"filters", filters_keys},
                 {"data_summary", summary_keys},
                 {"compatibility", compatibility_keys},
                 {"external_references", external_keys},
                 {PKG_INCREMENTAL_KEY, incremental_keys}};
  bson_iter_t it, sub;
  if (bson_iter_init(&it, r->manifest))
    check_keys(r, &it, NULL, manifest_keys);
  for (size_t i = 0; i < sizeof objects / sizeof objects[0]; i++) {
    if (bson_iter_init_find(&it, r->manifest, objects[i].name) &&
        BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &sub))
      check_keys(r, &sub, objects[i].name, objects[i].keys);
  }
}

/* incremental.<key> as a non-negative int64 into *out; false (reported)
 * when absent or anything else. */
static bool incremental_int(pkgr_t *r, int64_t *out, const bson_t *inc, const char *key) {
  char field[64];
  bson_iter_t it;
  snprintf(field, sizeof field, PKG_INCREMENTAL_KEY ".%s", key);
  if (bson_iter_init_find(&it, inc, key) && BSON_ITER_HOLDS_INT64(&it) &&
      bson_iter_int64(&it) >= 0) {
    *out = bson_iter_int64(&it);
    return true;
  }
  ERR(r, "manifest.field", PKG_MANIFEST_ENTRY, field, "%s is not a non-negative integer", field);
  return false;
}

/* The manifest's `incremental` object (FORMAT.md 15): what the increment
 * was taken against.  Each key is required; an increment must hold
 * data/deletions.json, a complete package must not. */
static void read_incremental(pkgr_t *r) {
  pkgr_info_t *info = &r->info;
  bson_iter_t it, sub;
  bson_t inc;
  uint32_t len;
  const uint8_t *data;
  bool absent, wrong;
  const char *s;

  if (!manifest_object(r, &sub, PKG_INCREMENTAL_KEY, &absent)) {
    if (absent && r->deletions_entry)
      ERR(r, "archive.unknown_entry", PKG_DELETIONS_ENTRY, NULL,
          "%s belongs to incremental packages only (FORMAT.md 15)", PKG_DELETIONS_ENTRY);
    return;
  }
  info->incremental = true;
  bson_iter_init_find(&it, r->manifest, PKG_INCREMENTAL_KEY);
  bson_iter_document(&it, &len, &data);
  if (!bson_init_static(&inc, data, len))
    return;
  s = str_at(&inc, "base_export_id", &wrong);
  if (!s || !fzip_id_is_valid(s))
    ERR(r, "manifest.field", PKG_MANIFEST_ENTRY, PKG_INCREMENTAL_KEY ".base_export_id",
        "base_export_id is not an id");
  else
    copy_info(info->base_export_id, sizeof info->base_export_id, s);
  s = str_at(&inc, "base_package_sha256", &wrong);
  if (!s || !hex_sha256(info->base_package_sha256, s))
    ERR(r, "manifest.field", PKG_MANIFEST_ENTRY, PKG_INCREMENTAL_KEY ".base_package_sha256",
        "base_package_sha256 is not 64 lower-case hex digits");
  if (incremental_int(r, &info->base_change_seq, &inc, "base_change_seq") &&
      incremental_int(r, &info->change_seq, &inc, "change_seq") &&
      info->change_seq < info->base_change_seq)
    ERR(r, "manifest.field", PKG_MANIFEST_ENTRY, PKG_INCREMENTAL_KEY ".change_seq",
        "change_seq is below base_change_seq");
  if (incremental_int(r, &info->chain_length, &inc, "chain_length") && info->chain_length < 1)
    ERR(r, "manifest.field", PKG_MANIFEST_ENTRY, PKG_INCREMENTAL_KEY ".chain_length",
        "chain_length is below 1");
  if (!r->deletions_entry)
    ERR(r, "manifest.incremental", PKG_DELETIONS_ENTRY, NULL,
        "an incremental package must hold %s (FORMAT.md 15)", PKG_DELETIONS_ENTRY);
}

static void housef3_issue(void *ctx, int severity, const char *rule, const char *field,
                          const char *reason) {
  issue(ctx, (pkgr_severity_t)severity, rule, PKG_MANIFEST_ENTRY, field, "%s", reason);
}

/* The HouseF3 application's manifest becomes a 1.0 one (pkg_housef3): all
 * later checks read the mapped manifest, pkgr_manifest() included. */
static bool map_housef3_manifest(pkgr_t *r, fzip_error_t *error) {
  bson_t *mapped = bson_new();
  if (!mapped)
    return oom(error);
  pkghf_map_manifest(mapped, r->manifest, housef3_issue, r);
  bson_destroy(r->manifest);
  r->manifest = mapped;
  r->housef3 = true;
  copy_info(r->info.flavour, sizeof r->info.flavour, PKGR_FLAVOUR_HOUSEF3);
  return true;
}

/* data/<kind>.json.gz belongs to the HouseF3 flavour only: in a package
 * whose manifest is format 1.0's, it is two flavours mixed. */
static void check_flavour_entries(pkgr_t *r) {
  for (size_t i = 0; i < r->n_entries && !r->housef3; i++) {
    if (r->entries[i].lzma)
      ERR(r, "archive.compression", r->entries[i].name, NULL,
          "LZMA (method 14) is read in HouseF3 application packages only, not in format 1.0");
  }
  for (int k = 0; k < FZIP_KIND_COUNT && !r->housef3; k++) {
    if (r->data[k] && r->data[k]->gz)
      ERR(r, "archive.flavour", r->data[k]->name, NULL,
          "a gzipped data file (the HouseF3 application's layout) in a package whose manifest "
          "is format 1.0's: the flavours are mixed");
  }
}

/* Once read_checksums has put every sha256 into its entry, the manifest
 * kept for pkgr_manifest() goes without them: they are nearly all of it
 * (~140 bytes an entry, 1 MiB of BSON at 5,000 files), and an import holds
 * two readers of its package at once (the validation's, the restore's). */
static bool drop_checksums(pkgr_t *r, fzip_error_t *error) {
  bson_t *slim = bson_new();
  if (!slim)
    return oom(error);
  bson_copy_to_excluding_noinit(r->manifest, slim, "checksums", NULL);
  bson_destroy(r->manifest);
  r->manifest = slim;
  return true;
}

static bool read_manifest(pkgr_t *r, fzip_error_t *error) {
  size_t before = r->errors;
  if (!r->manifest_entry) {
    ERR(r, "manifest.missing", PKG_MANIFEST_ENTRY, NULL, "the package has no manifest.json");
    return true;
  }
  if (!read_manifest_doc(r, error))
    return false;
  if (r->errors != before)
    return true;
  if (pkghf_is_manifest(r->manifest) && !map_housef3_manifest(r, error))
    return false;
  check_flavour_entries(r);
  if (r->errors != before)
    return true;
  check_version(r);
  if (r->errors != before)
    return true; /* nothing else in an unknown format means what we think */
  if (!r->housef3)
    check_manifest_keys(r); /* pkg_housef3 checked the app's keys */
  read_info(r);
  read_incremental(r);
  read_checksums(r);
  return read_references(r, error) && drop_checksums(r, error);
}

/* ---- raw central directory ------------------------------------------- */

/* libzip trusts the central directory: two records may point into the same
 * bytes, and then a 300 KB archive of 300 entries sharing one deflate
 * stream inflates to gigabytes (Fifield, "A better zip bomb", 2019).  So
 * the central directory is walked here once more, from the file, with
 * bounded reads: each record's raw name (NUL bytes), and the span from its
 * local header to the end of its compressed data; sorted by offset, no
 * span may start before the previous one ends.  Anything this walk cannot
 * make sense of is left to libzip, which reports it as archive.not_zip. */

#define CD_EOCD_LEN 22
#define CD_EOCD_SEARCH (0xFFFF + CD_EOCD_LEN) /* the comment is at most 64 KiB */
#define CD_RECORD_LEN 46
#define CD_LOCAL_LEN 30
#define CD_ZIP64_LOCATOR_LEN 20
#define CD_ZIP64_EOCD_LEN 56
#define CD_FIELD_MAX 0xFFFF /* bytes of a name or extra field */

typedef struct {
  uint64_t start, end; /* local header .. end of compressed data */
  uint64_t record;     /* offset of its central directory record */
} span_t;

typedef struct {
  FILE *f;
  uint64_t size;
  unsigned char *field; /* CD_FIELD_MAX + 1 bytes: a name or an extra field */
  span_t *spans;
  size_t n;
} cdscan_t;

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t le64(const unsigned char *p) { return le32(p) | ((uint64_t)le32(p + 4) << 32); }

static bool read_at(cdscan_t *c, uint64_t off, void *buf, size_t n) {
  return off <= c->size && n <= c->size - off && fseeko(c->f, (off_t)off, SEEK_SET) == 0 &&
         fread(buf, 1, n, c->f) == n;
}

/* The end record at `eocd` gives the directory's offset and count, from
 * the zip64 end record when a locator precedes it.  0xFFFF entries may
 * also be just that many: without a locator the 32-bit values stand, as
 * libzip reads them too.  False unless the directory ends where the
 * (zip64) end record begins. */
static bool read_eocd(uint64_t *cd_off, uint64_t *count, cdscan_t *c, uint64_t eocd,
                      const unsigned char *e) {
  unsigned char loc[CD_ZIP64_LOCATOR_LEN], z[CD_ZIP64_EOCD_LEN];
  uint64_t cd_size = le32(e + 12), cd_end = eocd;
  *count = le16(e + 10);
  *cd_off = le32(e + 16);
  if ((*count == 0xFFFF || *cd_off == 0xFFFFFFFFu || cd_size == 0xFFFFFFFFu) &&
      eocd >= CD_ZIP64_LOCATOR_LEN && read_at(c, eocd - CD_ZIP64_LOCATOR_LEN, loc, sizeof loc) &&
      memcmp(loc, "PK\6\7", 4) == 0) {
    cd_end = le64(loc + 8);
    if (!read_at(c, cd_end, z, sizeof z) || memcmp(z, "PK\6\6", 4) != 0)
      return false;
    *count = le64(z + 32);
    cd_size = le64(z + 40);
    *cd_off = le64(z + 48);
  }
  return *cd_off <= cd_end && cd_size == cd_end - *cd_off;
}

/* Finds the central directory: the last end record (searching back over
 * the comment) that is consistent with a directory before it, so that a
 * fake end record in the comment does not hide the real one.  *ambiguous
 * is set when a second consistent end record names another directory:
 * libzip may then read a directory other than the one walked here (a
 * decoy directory in the comment could hide a bomb), so such an archive
 * is refused. */
static bool find_cd(uint64_t *cd_off, uint64_t *count, bool *ambiguous, cdscan_t *c) {
  size_t tail = c->size < CD_EOCD_SEARCH ? (size_t)c->size : CD_EOCD_SEARCH;
  unsigned char *buf = malloc(tail ? tail : 1), sig[4];
  bool ok = false;

  *ambiguous = false;
  if (!buf || tail < CD_EOCD_LEN || !read_at(c, c->size - tail, buf, tail))
    goto done;
  for (size_t i = tail - CD_EOCD_LEN + 1; i-- > 0 && !*ambiguous;) {
    uint64_t off = 0, n = 0;
    if (memcmp(buf + i, "PK\5\6", 4) != 0 || !read_eocd(&off, &n, c, c->size - tail + i, buf + i))
      continue;
    if (n != 0 && !(read_at(c, off, sig, sizeof sig) && memcmp(sig, "PK\1\2", 4) == 0))
      continue;
    if (!ok) {
      *cd_off = off;
      *count = n;
      ok = true;
    } else if (off != *cd_off || n != *count) {
      *ambiguous = true;
    }
  }
done:
  free(buf);
  return ok;
}

/* The zip64 extended information extra field (0x0001) replaces the 32-bit
 * fields that are 0xFFFFFFFF, in the order size, compressed size, offset. */
static void apply_zip64(uint64_t *size, uint64_t *comp, uint64_t *off, const unsigned char *x,
                        size_t n) {
  for (size_t i = 0; i + 4 <= n;) {
    size_t len = le16(x + i + 2);
    const unsigned char *d = x + i + 4, *end = d + (len < n - i - 4 ? len : n - i - 4);
    if (le16(x + i) == 0x0001) {
      uint64_t *fields[3] = {size, comp, off};
      for (int k = 0; k < 3; k++) {
        if (*fields[k] != 0xFFFFFFFFu)
          continue;
        if (d + 8 > end)
          return;
        *fields[k] = le64(d);
        d += 8;
      }
      return;
    }
    i += 4 + len;
  }
}

/* Reads central record i sequentially; reports NUL bytes in its name. */
static bool scan_record(pkgr_t *r, cdscan_t *c, uint64_t at, uint64_t *next) {
  unsigned char h[CD_RECORD_LEN];
  span_t *sp = &c->spans[c->n];
  if (!read_at(c, at, h, sizeof h) || memcmp(h, "PK\1\2", 4) != 0)
    return false;
  size_t name_len = le16(h + 28), extra_len = le16(h + 30), comment_len = le16(h + 32);
  uint64_t size = le32(h + 24), comp = le32(h + 20), off = le32(h + 42);
  if (fread(c->field, 1, name_len, c->f) != name_len)
    return false;
  c->field[name_len] = '\0';
  if (memchr(c->field, '\0', name_len))
    ERR(r, "archive.path", (const char *)c->field, NULL,
        "entry name of %zu bytes holds a NUL byte (it would read as \"%s\")", name_len,
        (const char *)c->field);
  if (fread(c->field, 1, extra_len, c->f) != extra_len)
    return false;
  apply_zip64(&size, &comp, &off, c->field, extra_len);
  sp->start = off;
  sp->end = comp; /* the data's start is known once the local header is read */
  sp->record = at;
  c->n++;
  *next = at + CD_RECORD_LEN + name_len + extra_len + comment_len;
  return true;
}

static const char *record_name(cdscan_t *c, const span_t *sp) {
  unsigned char h[CD_RECORD_LEN];
  size_t len;
  c->field[0] = '\0';
  if (read_at(c, sp->record, h, sizeof h)) {
    len = le16(h + 28);
    if (fread(c->field, 1, len, c->f) == len)
      c->field[len] = '\0';
  }
  return (const char *)c->field;
}

static int cmp_span(const void *a, const void *b) {
  const span_t *x = a, *y = b;
  return x->start < y->start ? -1 : x->start > y->start;
}

/* Each span gets its end from its local header; overlaps are reported
 * naming both entries. */
static void check_spans(pkgr_t *r, cdscan_t *c) {
  char prev_name[PKG_ENTRY_NAME_MAX + 1] = "";
  uint64_t prev_end = 0;
  if (c->n)
    qsort(c->spans, c->n, sizeof *c->spans, cmp_span);
  for (size_t i = 0; i < c->n; i++) {
    span_t *sp = &c->spans[i];
    unsigned char h[CD_LOCAL_LEN];
    const char *name = record_name(c, sp);
    if (!read_at(c, sp->start, h, sizeof h) || memcmp(h, "PK\3\4", 4) != 0) {
      ERR(r, "archive.corrupt", name, NULL,
          "the central directory puts its local header at offset %llu, where there is none",
          (unsigned long long)sp->start);
      continue;
    }
    uint64_t data = sp->start + CD_LOCAL_LEN + le16(h + 26) + le16(h + 28);
    sp->end = data + sp->end;
    if (sp->end > c->size || sp->end < data) {
      ERR(r, "archive.corrupt", name, NULL,
          "declares compressed data up to offset %llu in a %llu-byte archive",
          (unsigned long long)sp->end, (unsigned long long)c->size);
      continue; /* its end is a lie: it must not make the others overlap */
    }
    if (sp->start < prev_end)
      ERR(r, "archive.overlap", name, NULL,
          "its bytes from offset %llu overlap entry %s (which ends at %llu): entries sharing "
          "data are a zip bomb",
          (unsigned long long)sp->start, prev_name, (unsigned long long)prev_end);
    if (sp->end > prev_end) {
      prev_end = sp->end;
      snprintf(prev_name, sizeof prev_name, "%s", name);
    }
  }
}

static bool scan_central_directory(pkgr_t *r, const char *path, fzip_error_t *error) {
  cdscan_t c = {0};
  uint64_t at = 0, count = 0;
  bool ambiguous = false;
  bool ok = true;

  c.size = r->archive_size;
  if (!(c.f = fopen(path, "rb")))
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "opening %s", path);
  if (!find_cd(&at, &count, &ambiguous, &c) || count > r->lim.max_entries)
    goto done; /* libzip names the problem */
  if (ambiguous)
    ERR(r, "archive.corrupt", NULL, NULL,
        "two end records name two different central directories: which entries the archive "
        "holds is ambiguous");
  if (!(c.field = malloc(CD_FIELD_MAX + 1)) ||
      (count && !(c.spans = calloc((size_t)count, sizeof *c.spans)))) {
    ok = oom(error);
    goto done;
  }
  while (c.n < count && scan_record(r, &c, at, &at))
    ;
  if (c.n == count) {
    check_spans(r, &c);
    r->cd_walked = (int64_t)count;
  }
done:
  free(c.spans);
  free(c.field);
  fclose(c.f);
  return ok;
}

/* ---- open / destroy --------------------------------------------------- */

static bool open_zip(pkgr_t *r, const char *path, fzip_error_t *error) {
  zip_error_t ze;
  int zerr = 0;
  struct stat sb;

  if (stat(path, &sb) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_NOT_FOUND, "package %s not found",
                          path);
  r->archive_size = (uint64_t)sb.st_size;
  r->cd_walked = -1;
  if (!scan_central_directory(r, path, error))
    return false;
  if ((r->za = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr)))
    return true;
  /* libzip refuses duplicate names outright; reopen without the
   * consistency check so that check_duplicates can name the entry. */
  if (zerr == ZIP_ER_EXISTS && (r->za = zip_open(path, ZIP_RDONLY, &zerr)))
    return true;
  zip_error_init_with_code(&ze, zerr);
  if (zerr == ZIP_ER_MEMORY)
    oom(error);
  else if (zerr == ZIP_ER_OPEN || zerr == ZIP_ER_READ)
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "opening %s: %s", path,
                   zip_error_strerror(&ze));
  else if (zerr == ZIP_ER_EXISTS)
    ERR(r, "archive.duplicate_entry", NULL, NULL, "the archive holds duplicate entry names");
  else
    ERR(r, "archive.not_zip", NULL, NULL, "not a readable zip archive: %s",
        zip_error_strerror(&ze));
  zip_error_fini(&ze);
  return zerr != ZIP_ER_MEMORY && zerr != ZIP_ER_OPEN && zerr != ZIP_ER_READ;
}

bool pkgr_open(pkgr_t **out, const char *path, const pkgr_limits_t *limits,
               pkgr_issue_fn on_issue, void *issue_ctx, fzip_error_t *error) {
  pkgr_t *r = calloc(1, sizeof *r);
  bool ok = false;

  *out = NULL;
  if (!r)
    return oom(error);
  if (!(r->manifest = bson_new())) {
    free(r);
    return oom(error);
  }
  if (limits)
    r->lim = *limits;
  else
    pkgr_limits_default(&r->lim);
  r->on_issue = on_issue;
  r->issue_ctx = issue_ctx;
  copy_info(r->info.flavour, sizeof r->info.flavour, PKGR_FLAVOUR_FZIP);
  if (!open_zip(r, path, error))
    goto done;
  if (r->za && (!read_directory(r, error) || !check_duplicates(r, error) ||
                !index_files(r, error)))
    goto done;
  if (r->za && !r->errors && !read_manifest(r, error))
    goto done;
  if (r->errors) {
    fzip_error_set(error, FZIP_DOMAIN_VALIDATION,
                   r->limit_error ? FZIP_ERR_RESOURCE_EXHAUSTED
                                           : FZIP_ERR_INVALID_ARGUMENT,
                   "package refused: %zu archive or manifest problem(s)", r->errors);
    goto done;
  }
  ok = true;
done:
  if (ok)
    *out = r;
  else
    pkgr_destroy(r);
  return ok;
}

void pkgr_destroy(pkgr_t *r) {
  if (!r)
    return;
  stop_ahead(r);
  if (r->za)
    zip_discard(r->za);
  for (size_t i = 0; i < r->n_entries; i++)
    free((char *)r->entries[i].file.file_id);
  free(r->entries);
  free(r->by_name);
  free(r->files);
  for (int k = 0; k < FZIP_KIND_COUNT; k++)
    idlist_free(&r->external[k]);
  idlist_free(&r->missing_files);
  bson_destroy(r->manifest);
  free(r);
}

/* ---- accessors -------------------------------------------------------- */

const pkgr_info_t *pkgr_info(const pkgr_t *r) { return &r->info; }
const bson_t *pkgr_manifest(const pkgr_t *r) { return r->manifest; }

bool pkgr_has_kind(const pkgr_t *r, fzip_kind_t kind) {
  return (unsigned)kind < FZIP_KIND_COUNT && r->data[kind] != NULL;
}

size_t pkgr_file_count(const pkgr_t *r) { return r->n_files; }

const pkgr_file_entry_t *pkgr_file_at(const pkgr_t *r, size_t i) {
  return i < r->n_files ? &r->files[i]->file : NULL;
}

static int cmp_id_file(const void *key, const void *elem) {
  return strcmp((const char *)key, (*(entry_t *const *)elem)->file.file_id);
}

static entry_t *find_file(const pkgr_t *r, const char *file_id) {
  entry_t **e;
  if (!file_id || !r->n_files)
    return NULL;
  e = bsearch(file_id, r->files, r->n_files, sizeof *r->files, cmp_id_file);
  return e ? *e : NULL;
}

const pkgr_file_entry_t *pkgr_file_find(const pkgr_t *r, const char *file_id) {
  entry_t *e = find_file(r, file_id);
  return e ? &e->file : NULL;
}

bool pkgr_file_listed_missing(const pkgr_t *r, const char *file_id) {
  /* The HouseF3 app has no files_missing: a file whose download failed at
   * export just has no files/ entry (its processingSummary counts them),
   * so any file without bytes is taken as listed (FORMAT.md section 12). */
  return idlist_has(&r->missing_files, file_id) || (r->housef3 && !find_file(r, file_id));
}

size_t pkgr_external_count(const pkgr_t *r, fzip_kind_t kind) {
  return (unsigned)kind < FZIP_KIND_COUNT ? r->external[kind].n : 0;
}

const char *pkgr_external_at(const pkgr_t *r, fzip_kind_t kind, size_t i) {
  return i < pkgr_external_count(r, kind) ? r->external[kind].ids[i] : NULL;
}

bool pkgr_external_has(const pkgr_t *r, fzip_kind_t kind, const char *id) {
  return (unsigned)kind < FZIP_KIND_COUNT && idlist_has(&r->external[kind], id);
}

/* ---- entity streams --------------------------------------------------- */

static uint64_t add_sat(uint64_t a, uint64_t b) { return a + b < a ? UINT64_MAX : a + b; }

/* What a .json.gz entry may inflate to: the data file limit, and what the
 * total limit leaves after every other entry (the declared size of each
 * plain one, the bytes the other gzip streams gave so far). */
static uint64_t gz_room(const pkgr_t *r, const entry_t *e) {
  uint64_t used = 0;
  for (size_t i = 0; i < r->n_entries; i++) {
    const entry_t *o = &r->entries[i];
    if (o != e)
      used = add_sat(used, o->gz ? o->inflated : o->size);
  }
  uint64_t room = used >= r->lim.max_total ? 0 : r->lim.max_total - used;
  return room < r->lim.max_data_entry ? room : r->lim.max_data_entry;
}

/* The JSON reader of a data entry: straight from the entry, or through a
 * gzip stream; the HouseF3 flavour's 64-bit hashes read as int64. */
static bool entities_reader(pkgr_entities_t *it, fzip_error_t *error) {
  pkgr_t *r = it->r;
  entry_t *e = r->data[it->kind];
  pkgjr_read_fn read = json_source;
  void *ctx = &it->s;
  if (e->gz) {
    if (!(it->gz = pkghf_gunzip_new(json_source, &it->s, e->name, gz_room(r, e),
                                    r->lim.max_ratio, PKG_RATIO_MIN_BYTES)))
      return oom(error);
    read = pkghf_gunzip_read;
    ctx = it->gz;
  }
  if (!(it->json = pkgjr_reader_new(read, ctx, &r->lim.json)))
    return oom(error);
  if (r->housef3)
    pkgjr_wrap_uint64(it->json, "transactionHash");
  return true;
}

static void note_inflated(pkgr_entities_t *it) {
  entry_t *e = it->gz ? it->r->data[it->kind] : NULL;
  if (e && pkghf_gunzip_bytes_out(it->gz) > e->inflated)
    e->inflated = pkghf_gunzip_bytes_out(it->gz);
}

/* Reads up to the first element: `{"<kind>": [` in format 1.0, `[` in
 * the HouseF3 flavour. */
static bool entities_start(pkgr_entities_t *it, fzip_error_t *error) {
  const fzip_kind_info_t *info = fzip_kind_info(it->kind);
  char key[MANIFEST_KEY_CAP];
  if (it->r->housef3)
    return pkgjr_open_bare_array(it->json, error);
  if (!pkgjr_open_array(key, sizeof key, it->json, error))
    return false;
  if (strcmp(key, info->name) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "top-level key \"%.40s\" is not \"%s\"", key, info->name);
  return true;
}

bool pkgr_entities_open(pkgr_entities_t **out, pkgr_t *r, fzip_kind_t kind,
                        fzip_error_t *error) {
  pkgr_entities_t *it;
  *out = NULL;
  if ((unsigned)kind >= FZIP_KIND_COUNT)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT, "bad kind");
  if (!(it = calloc(1, sizeof *it)))
    return oom(error);
  it->r = r;
  it->kind = kind;
  if (!(it->doc = bson_new()) || !(it->mapped = bson_new())) {
    pkgr_entities_destroy(it);
    return oom(error);
  }
  if (!r->data[kind]) {
    it->empty = it->ended = true;
    *out = it;
    return true;
  }
  if (!stream_open(&it->s, r, r->data[kind], r->lim.max_data_entry, error) ||
      !stream_read_ahead(&it->s, error) || !entities_reader(it, error)) {
    pkgr_entities_destroy(it);
    return false;
  }
  *out = it;
  return true;
}

bool pkgr_entities_next(pkgr_entities_t *it, const bson_t **doc, fzip_error_t *error) {
  bool more = false, ok;

  if (it->ended)
    return false;
  if (!it->started) {
    it->started = true;
    if (!entities_start(it, error))
      goto fail;
  }
  ok = pkgjr_next_document(&more, it->doc, it->json, error);
  note_inflated(it);
  if (!ok)
    goto fail;
  if (!more) {
    it->ended = true;
    return false;
  }
  it->count++;
  *doc = it->doc;
  if (it->r->housef3) {
    pkghf_map_entity(it->mapped, it->kind, it->doc);
    *doc = it->mapped;
  }
  return true;
fail:
  it->ended = true;
  it->empty = false;
  it->started = true;
  it->failed = true;
  return false;
}

uint64_t pkgr_entities_count(const pkgr_entities_t *it) { return it->count; }

/* After a JSON entry's last value: the JSON reader saw the end of input,
 * so the stream is drained; one more read makes libzip check the CRC,
 * then size and checksum.  `whole`: the JSON was read to its end. */
static bool json_entry_finish(char *hex_out, entry_stream_t *s, bool whole, const char *name,
                              fzip_error_t *error) {
  char drain[256];
  size_t n = 0;
  if (!whole)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_FAILED_PRECONDITION,
                          "%s was not read to its end", name);
  if (!stream_read(s, drain, sizeof drain, &n, error))
    return false;
  return stream_verify(hex_out, s, error);
}

bool pkgr_entities_finish(char *hex_out, pkgr_entities_t *it, fzip_error_t *error) {
  if (it->empty)
    return true;
  return json_entry_finish(hex_out, &it->s, it->ended && !it->failed,
                           it->s.e ? it->s.e->name : "entry", error);
}

void pkgr_entities_destroy(pkgr_entities_t *it) {
  if (!it)
    return;
  pkgjr_reader_destroy(it->json);
  pkghf_gunzip_destroy(it->gz);
  stream_close(&it->s);
  if (it->doc)
    bson_destroy(it->doc);
  if (it->mapped)
    bson_destroy(it->mapped);
  free(it);
}

/* ---- deletions --------------------------------------------------------- */

struct pkgr_deletions {
  entry_stream_t s;
  pkgjr_reader_t *json;
  bson_t *doc; /* bson_new, as in pkgr_entities */
  uint64_t count;
  int kind;                 /* the last record's, -1 before the first */
  char id[FZIP_ID_MAX + 1]; /* the last record's */
  bool started, ended, empty, failed;
};

bool pkgr_deletions_open(pkgr_deletions_t **out, pkgr_t *r, fzip_error_t *error) {
  pkgr_deletions_t *it = calloc(1, sizeof *it);
  *out = NULL;
  if (!it || !(it->doc = bson_new())) {
    pkgr_deletions_destroy(it);
    return oom(error);
  }
  it->kind = -1;
  if (!r->deletions_entry) {
    it->empty = it->ended = true;
    *out = it;
    return true;
  }
  if (!stream_open(&it->s, r, r->deletions_entry, r->lim.max_data_entry, error) ||
      !(it->json = pkgjr_reader_new(json_source, &it->s, &r->lim.json))) {
    if (!fzip_error_is_set(error))
      oom(error);
    pkgr_deletions_destroy(it);
    return false;
  }
  *out = it;
  return true;
}

/* Exactly {"kind": <known kind name>, "id": <valid id>}, after the
 * previous record in (kind, id) order. */
static bool deletion_check(pkgr_deletions_t *it, fzip_kind_t *kind, fzip_error_t *error) {
  bson_iter_t i;
  const char *name = NULL, *id = NULL;
  int keys = 0;
  if (bson_iter_init(&i, it->doc)) {
    while (bson_iter_next(&i)) {
      keys++;
      if (strcmp(bson_iter_key(&i), "kind") == 0 && BSON_ITER_HOLDS_UTF8(&i))
        name = bson_iter_utf8(&i, NULL);
      else if (strcmp(bson_iter_key(&i), "id") == 0 && BSON_ITER_HOLDS_UTF8(&i))
        id = bson_iter_utf8(&i, NULL);
    }
  }
  if (keys != 2 || !name || !id)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "deletion #%llu: not exactly {\"kind\": string, \"id\": string}",
                          (unsigned long long)it->count + 1);
  if (!fzip_kind_from_name(kind, name) || !fzip_id_is_valid(id))
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "deletion #%llu: unknown kind or invalid id",
                          (unsigned long long)it->count + 1);
  if ((int)*kind < it->kind || ((int)*kind == it->kind && strcmp(id, it->id) <= 0))
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "deletion #%llu (%s %s): out of order (kinds in dependency order, ids "
                          "ascending)",
                          (unsigned long long)it->count + 1, name, id);
  it->kind = (int)*kind;
  snprintf(it->id, sizeof it->id, "%s", id);
  return true;
}

bool pkgr_deletions_next(pkgr_deletions_t *it, fzip_kind_t *kind, const char **id,
                         fzip_error_t *error) {
  bool more = false;
  if (it->ended)
    return false;
  if (!it->started) {
    it->started = true;
    if (!pkgjr_open_bare_array(it->json, error))
      goto fail;
  }
  if (!pkgjr_next_document(&more, it->doc, it->json, error))
    goto fail;
  if (!more) {
    it->ended = true;
    return false;
  }
  if (!deletion_check(it, kind, error))
    goto fail;
  it->count++;
  *id = it->id;
  return true;
fail:
  it->ended = it->failed = true;
  return fzip_error_prefix(error, "%s", PKG_DELETIONS_ENTRY);
}

bool pkgr_deletions_finish(char *hex_out, pkgr_deletions_t *it, fzip_error_t *error) {
  if (it->empty)
    return true;
  return json_entry_finish(hex_out, &it->s, it->ended && !it->failed, PKG_DELETIONS_ENTRY, error);
}

void pkgr_deletions_destroy(pkgr_deletions_t *it) {
  if (!it)
    return;
  pkgjr_reader_destroy(it->json);
  stream_close(&it->s);
  if (it->doc)
    bson_destroy(it->doc);
  free(it);
}

/* ---- file bytes ------------------------------------------------------- */

bool pkgr_file_open(pkgr_file_t **out, pkgr_t *r, const char *file_id, fzip_error_t *error) {
  entry_t *e = find_file(r, file_id);
  pkgr_file_t *f;
  *out = NULL;
  if (!e)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_NOT_FOUND,
                          "the package holds no bytes for file %s", file_id ? file_id : "?");
  if (!(f = calloc(1, sizeof *f)))
    return oom(error);
  if (!stream_open(&f->s, r, e, r->lim.max_file_entry, error)) {
    pkgr_file_destroy(f);
    return false;
  }
  *out = f;
  return true;
}

bool pkgr_file_read(pkgr_file_t *f, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  *n = 0;
  if (f->ended)
    return true;
  if (!stream_read(&f->s, buf, cap, n, error))
    return false;
  if (*n == 0) {
    f->ended = true;
    return stream_verify(f->hex, &f->s, error);
  }
  return true;
}

bool pkgr_file_at_end(const pkgr_file_t *f) { return f->ended; }

bool pkgr_file_digest(char *hex_out, uint64_t *bytes, const pkgr_file_t *f) {
  if (!f->ended || !f->hex[0])
    return false;
  memcpy(hex_out, f->hex, sizeof f->hex);
  *bytes = f->s.done;
  return true;
}

void pkgr_file_destroy(pkgr_file_t *f) {
  if (!f)
    return;
  stream_close(&f->s);
  free(f);
}
