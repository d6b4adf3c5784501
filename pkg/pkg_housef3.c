/*
 * pkg_housef3: see pkg_housef3.h.
 *
 * The manifest and entity mappings are tables: which app key becomes which
 * 1.0 key, and which derived fields the app adds to each kind (and that
 * format 1.0 does not hold).  Those derived fields are dropped silently
 * because every entity of a real package has them; any other field the
 * 1.0 schema does not know still reaches the validator, which warns
 * (schema.unknown_field) and drops it as for any package.
 *
 * The gzip reader is zlib's inflate with a gzip-only window (16 +
 * MAX_WBITS): zlib checks the header, the CRC-32 and the length (ISIZE) at
 * the end of the member; this file adds the bounds (bytes out, ratio) and
 * insists that the member ends exactly where the entry does.  LZMA zip
 * entries (the app's large packages) go through liblzma's raw LZMA1
 * decoder, with the CRC-32 that libzip would have checked done here.
 */
#include "pkg_housef3.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <lzma.h>
#include <string.h>
#include <zlib.h>

#include "fzip_tz.h"

#define MAPPED_FORMAT_VERSION "1.0" /* what the mapping produces */
#define REASON_MAX 256
#define FIELD_MAX 96

/* ---- manifest --------------------------------------------------------- */

typedef struct {
  const char *app;   /* the app's key */
  const char *fzip;  /* format 1.0's key */
} keymap_t;

/* Top-level strings copied as they are. */
static const keymap_t manifest_strings[] = {{"userId", "user_id"},
                                            {"housef3Version", "application_version"},
                                            {"backupType", "export_type"},
                                            {NULL, NULL}};
static const keymap_t summary_keys[] = {{"accountsCount", "accounts_count"},
                                        {"categoriesCount", "categories_count"},
                                        {"fileMapsCount", "file_maps_count"},
                                        {"transactionFilesCount", "transaction_files_count"},
                                        {"transactionsCount", "transactions_count"},
                                        {"analyticsCount", "analytics_count"},
                                        {"analyticsIncluded", "analytics_included"},
                                        {NULL, NULL}};
static const keymap_t compatibility_keys[] = {{"minimumVersion", "minimum_version"},
                                              {"supportedVersions", "supported_versions"},
                                              {NULL, NULL}};
/* Read above, or informational only (the app's own job id and
 * bookkeeping); anything else is reported as unknown. */
static const char *const manifest_keys[] = {
    "backupFormatVersion", "backupTimestamp", "userId",        "housef3Version",
    "packageFormat",       "dataSummary",     "checksums",     "compatibility",
    "jobId",               "backupType",      "includeAnalytics", "processingSummary",
    "exportSummaries",     NULL};

typedef struct {
  pkghf_issue_fn fn;
  void *ctx;
} report_t;

__attribute__((format(printf, 5, 6))) static void report(const report_t *rep, int severity,
                                                         const char *rule, const char *field,
                                                         const char *fmt, ...) {
  char reason[REASON_MAX];
  va_list ap;
  if (!rep->fn)
    return;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  rep->fn(rep->ctx, severity, rule, field, reason);
}

#define HF_ERROR 1
#define HF_WARNING 2

bool pkghf_is_manifest(const bson_t *manifest) {
  return bson_has_field(manifest, "backupFormatVersion");
}

static const keymap_t *keymap_find(const keymap_t *map, const char *app) {
  for (; map->app; map++) {
    if (strcmp(map->app, app) == 0)
      return map;
  }
  return NULL;
}

static bool key_listed(const char *const *keys, const char *key) {
  for (; *keys; keys++) {
    if (strcmp(*keys, key) == 0)
      return true;
  }
  return false;
}

/* "1.0" (or "1.0.3"): the major number, or -1. */
static long version_major(const char *v) {
  char *end;
  long major;
  if (!(v[0] >= '0' && v[0] <= '9'))
    return -1;
  major = strtol(v, &end, 10);
  return *end == '.' && end[1] >= '0' && end[1] <= '9' ? major : -1;
}

static void map_version(bson_t *out, const bson_iter_t *it, const report_t *rep) {
  const char *v = BSON_ITER_HOLDS_UTF8(it) ? bson_iter_utf8(it, NULL) : NULL;
  if (!v || version_major(v) < 0) {
    report(rep, HF_ERROR, "manifest.version", "backupFormatVersion",
           "backupFormatVersion is not a \"MAJOR.MINOR\" string");
    return;
  }
  if (version_major(v) != PKGHF_FORMAT_MAJOR) {
    report(rep, HF_ERROR, "manifest.version", "backupFormatVersion",
           "HouseF3 backup format %.32s is not supported (this build reads %d.x)", v,
           PKGHF_FORMAT_MAJOR);
    return;
  }
  BSON_APPEND_UTF8(out, "export_format_version", MAPPED_FORMAT_VERSION);
}

static void map_timestamp(bson_t *out, const bson_iter_t *it, const report_t *rep) {
  int64_t ms = 0;
  if (BSON_ITER_HOLDS_INT64(it)) { /* epoch ms, as the app's other times */
    BSON_APPEND_INT64(out, "export_timestamp_ms", bson_iter_int64(it));
    return;
  }
  if (BSON_ITER_HOLDS_UTF8(it) && pkghf_parse_time(&ms, bson_iter_utf8(it, NULL))) {
    BSON_APPEND_UTF8(out, "export_timestamp", bson_iter_utf8(it, NULL));
    BSON_APPEND_INT64(out, "export_timestamp_ms", ms);
    return;
  }
  report(rep, HF_WARNING, "manifest.field", "backupTimestamp",
         "backupTimestamp is not an ISO 8601 time: the export time is unknown");
}

/* An object whose keys are renamed by `map`; unknown keys are warned of
 * and left out, values are copied as they are (the 1.0 checks judge them). */
static void map_object(bson_t *out, const char *fzip_key, const bson_iter_t *it,
                       const keymap_t *map, const report_t *rep) {
  const char *app_key = bson_iter_key(it);
  bson_iter_t sub;
  bson_t child;
  if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &sub)) {
    report(rep, HF_ERROR, "manifest.field", app_key, "%s is not an object", app_key);
    return;
  }
  bson_append_document_begin(out, fzip_key, -1, &child);
  while (bson_iter_next(&sub)) {
    const keymap_t *m = keymap_find(map, bson_iter_key(&sub));
    char field[FIELD_MAX];
    if (m) {
      bson_append_iter(&child, m->fzip, -1, &sub);
      continue;
    }
    snprintf(field, sizeof field, "%s.%s", app_key, bson_iter_key(&sub));
    report(rep, HF_WARNING, "manifest.unknown_key", field,
           "key \"%.64s\" is not one the HouseF3 application writes; ignored",
           bson_iter_key(&sub));
  }
  bson_append_document_end(out, &child);
}

static void map_manifest_key(bson_t *out, const bson_iter_t *it, const report_t *rep) {
  const char *key = bson_iter_key(it);
  const keymap_t *m = keymap_find(manifest_strings, key);
  if (strcmp(key, "backupFormatVersion") == 0)
    map_version(out, it, rep);
  else if (strcmp(key, "backupTimestamp") == 0)
    map_timestamp(out, it, rep);
  else if (strcmp(key, "dataSummary") == 0)
    map_object(out, "data_summary", it, summary_keys, rep);
  else if (strcmp(key, "compatibility") == 0)
    map_object(out, "compatibility", it, compatibility_keys, rep);
  else if (strcmp(key, "checksums") == 0)
    bson_append_iter(out, "checksums", -1, it); /* entry names: the same in both flavours */
  else if (m && BSON_ITER_HOLDS_UTF8(it))
    bson_append_iter(out, m->fzip, -1, it);
  else if (m)
    report(rep, HF_ERROR, "manifest.field", key, "%s is not a string", key);
  else if (!key_listed(manifest_keys, key))
    report(rep, HF_WARNING, "manifest.unknown_key", key,
           "key \"%.64s\" is not one the HouseF3 application writes; ignored", key);
}

void pkghf_map_manifest(bson_t *out, const bson_t *in, pkghf_issue_fn on_issue, void *ctx) {
  report_t rep = {on_issue, ctx};
  bson_iter_t it;
  bson_reinit(out);
  if (!bson_iter_init(&it, in))
    return;
  while (bson_iter_next(&it))
    map_manifest_key(out, &it, &rep);
  /* The app's model always has checksums (empty); 1.0 requires the key. */
  if (!bson_has_field(out, "checksums")) {
    bson_t empty;
    bson_append_document_begin(out, "checksums", -1, &empty);
    bson_append_document_end(out, &empty);
  }
}

/* ---- entities --------------------------------------------------------- */

/* Fields the app derives while exporting (export_data_processors.py) and
 * the owner's id: none is part of format 1.0. */
static const char *const derived_all[] = {"userId", "exportMetadata", "computedFields", NULL};
static const char *const derived_categories[] = {"hierarchyInfo", NULL};
static const char *const derived_transactions[] = {"dateFormatted", "categoryAssignments", NULL};
static const char *const derived_files[] = {"uploadDateFormatted", "processedDateFormatted",
                                            "fileStatusInfo", NULL};
static const char *const derived_analytics[] = {"ttl", NULL};
static const char *const derived_mapping[] = {"validationInfo", NULL}; /* file_maps.mappings[] */
static const char *const derived_none[] = {NULL};

static const char *const *derived_of(fzip_kind_t kind) {
  switch (kind) {
  case FZIP_KIND_CATEGORY: return derived_categories;
  case FZIP_KIND_TRANSACTION: return derived_transactions;
  case FZIP_KIND_TRANSACTION_FILE: return derived_files;
  case FZIP_KIND_ANALYTICS: return derived_analytics;
  default: return derived_none;
  }
}

/* file_maps.mappings without each mapping's validationInfo. */
static void append_mappings(bson_t *out, const bson_iter_t *it) {
  bson_iter_t arr, el;
  bson_t child;
  char idx[16];
  const char *key;
  uint32_t i = 0;
  if (!BSON_ITER_HOLDS_ARRAY(it) || !bson_iter_recurse(it, &arr)) {
    bson_append_iter(out, bson_iter_key(it), -1, it);
    return;
  }
  bson_append_array_begin(out, bson_iter_key(it), -1, &child);
  while (bson_iter_next(&arr)) {
    bson_uint32_to_string(i++, &key, idx, sizeof idx);
    if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &el)) {
      bson_append_iter(&child, key, -1, &arr);
      continue;
    }
    bson_t m;
    bson_append_document_begin(&child, key, -1, &m);
    while (bson_iter_next(&el)) {
      if (!key_listed(derived_mapping, bson_iter_key(&el)))
        bson_append_iter(&m, NULL, 0, &el);
    }
    bson_append_document_end(&child, &m);
  }
  bson_append_array_end(out, &child);
}

/* Analytics dates: the app's datetime/date strings as epoch ms. */
static void append_analytics_time(bson_t *out, const bson_iter_t *it) {
  int64_t ms;
  if (BSON_ITER_HOLDS_UTF8(it) && pkghf_parse_time(&ms, bson_iter_utf8(it, NULL)))
    BSON_APPEND_INT64(out, bson_iter_key(it), ms);
  else
    bson_append_iter(out, NULL, 0, it); /* the validator names what is wrong */
}

/* Format 1.0's key of an analytics record, type#period[#accountId], as
 * fzip's own exports write it; nothing when a part is missing (the
 * validator then reports analyticsId as missing). */
static void append_analytics_id(bson_t *out, const bson_t *in) {
  bson_iter_t it;
  const char *type = NULL, *period = NULL, *account = NULL;
  char id[FZIP_ID_MAX + 2];
  if (bson_has_field(in, "analyticsId") || !bson_iter_init(&it, in))
    return;
  while (bson_iter_next(&it)) {
    const char *v = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : NULL;
    if (strcmp(bson_iter_key(&it), "analyticType") == 0)
      type = v;
    else if (strcmp(bson_iter_key(&it), "timePeriod") == 0)
      period = v;
    else if (strcmp(bson_iter_key(&it), "accountId") == 0)
      account = v;
  }
  if (!type || !period)
    return;
  /* A longer id is cut one byte past FZIP_ID_MAX, so the validator refuses it. */
  snprintf(id, sizeof id, "%s#%s%s%s", type, period, account ? "#" : "", account ? account : "");
  BSON_APPEND_UTF8(out, "analyticsId", id);
}

void pkghf_map_entity(bson_t *out, fzip_kind_t kind, const bson_t *in) {
  const char *const *derived = derived_of(kind);
  bson_iter_t it;
  bson_reinit(out);
  if (kind == FZIP_KIND_ANALYTICS)
    append_analytics_id(out, in);
  if (!bson_iter_init(&it, in))
    return;
  while (bson_iter_next(&it)) {
    const char *key = bson_iter_key(&it);
    if (key_listed(derived_all, key) || key_listed(derived, key))
      continue;
    if (kind == FZIP_KIND_FILE_MAP && strcmp(key, "mappings") == 0)
      append_mappings(out, &it);
    else if (kind == FZIP_KIND_ANALYTICS &&
             (strcmp(key, "computedDate") == 0 || strcmp(key, "dataThroughDate") == 0))
      append_analytics_time(out, &it);
    else
      bson_append_iter(out, NULL, 0, &it);
  }
}

/* ---- time ------------------------------------------------------------- */

/* Exactly n digits at *p, advancing it. */
static bool digits(int64_t *out, const char **p, int n) {
  int64_t v = 0;
  for (int i = 0; i < n; i++) {
    if (!((*p)[i] >= '0' && (*p)[i] <= '9'))
      return false;
    v = v * 10 + ((*p)[i] - '0');
  }
  *p += n;
  *out = v;
  return true;
}

static bool parse_offset(int64_t *offset_min, const char *p) {
  int64_t h, m;
  int sign;
  *offset_min = 0;
  if (*p == '\0' || ((*p == 'Z' || *p == 'z') && p[1] == '\0'))
    return true;
  if (*p != '+' && *p != '-')
    return false;
  sign = *p++ == '-' ? -1 : 1;
  if (!digits(&h, &p, 2))
    return false;
  if (*p == ':')
    p++;
  if (!digits(&m, &p, 2) || *p != '\0' || h > 23 || m > 59)
    return false;
  *offset_min = sign * (h * 60 + m);
  return true;
}

bool pkghf_parse_time(int64_t *ms, const char *s) {
  const char *p = s;
  int64_t y, mo, d, h = 0, mi = 0, sec = 0, frac_ms = 0, offset = 0;
  if (!digits(&y, &p, 4) || *p++ != '-' || !digits(&mo, &p, 2) || *p++ != '-' ||
      !digits(&d, &p, 2) || mo < 1 || mo > 12 || d < 1 || d > fzip_tz_month_days(y, (int)mo))
    return false;
  if (*p == 'T' || *p == ' ') {
    p++;
    if (!digits(&h, &p, 2) || *p++ != ':' || !digits(&mi, &p, 2) || *p++ != ':' ||
        !digits(&sec, &p, 2) || h > 23 || mi > 59 || sec > 59)
      return false;
    if (*p == '.') {
      int n = 0;
      for (p++; *p >= '0' && *p <= '9'; p++, n++) {
        if (n < 3)
          frac_ms = frac_ms * 10 + (*p - '0');
      }
      if (n == 0 || n > 9)
        return false;
      for (; n < 3; n++)
        frac_ms *= 10;
    }
    if (!parse_offset(&offset, p))
      return false;
  } else if (*p != '\0') {
    return false;
  }
  int64_t days = fzip_tz_days_from_civil(y, (int)mo, (int)d);
  *ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - offset * 60) * 1000 +
        frac_ms;
  return true;
}

/* ---- decoders --------------------------------------------------------- */

/* What the gzip and LZMA decoders share: their source, the entry's name
 * for errors, and the buffer of compressed bytes. */
typedef struct {
  pkgjr_read_fn src;
  void *src_ctx;
  char *name;
  unsigned char *in; /* PKGHF_GZ_INPUT bytes */
} source_t;

static bool source_init(source_t *s, pkgjr_read_fn src, void *src_ctx, const char *name) {
  s->src = src;
  s->src_ctx = src_ctx;
  return (s->name = strdup(name ? name : "entry")) && (s->in = malloc(PKGHF_GZ_INPUT));
}

static void source_fini(source_t *s) {
  free(s->in);
  free(s->name);
}

/* ---- gzip ------------------------------------------------------------- */

struct pkghf_gunzip {
  source_t s;
  uint64_t max_out, max_ratio, ratio_min;
  z_stream z;
  bool z_ready, ended;
  uint64_t in_total, out_total;
};

pkghf_gunzip_t *pkghf_gunzip_new(pkgjr_read_fn src, void *src_ctx, const char *name,
                                 uint64_t max_out, uint64_t max_ratio, uint64_t ratio_min_bytes) {
  pkghf_gunzip_t *gz = calloc(1, sizeof *gz);
  if (!gz)
    return NULL;
  gz->max_out = max_out;
  gz->max_ratio = max_ratio;
  gz->ratio_min = ratio_min_bytes;
  if (!source_init(&gz->s, src, src_ctx, name) || inflateInit2(&gz->z, 16 + MAX_WBITS) != Z_OK) {
    pkghf_gunzip_destroy(gz);
    return NULL;
  }
  gz->z_ready = true;
  return gz;
}

void pkghf_gunzip_destroy(pkghf_gunzip_t *gz) {
  if (!gz)
    return;
  if (gz->z_ready)
    inflateEnd(&gz->z);
  source_fini(&gz->s);
  free(gz);
}

uint64_t pkghf_gunzip_bytes_out(const pkghf_gunzip_t *gz) { return gz->out_total; }

static bool gz_fail(pkghf_gunzip_t *gz, fzip_code_t code, fzip_error_t *error, const char *what) {
  return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, code, "%s: gzip: %s", gz->s.name, what);
}

/* After the member's end: the entry must end too. */
static bool gz_expect_end(pkghf_gunzip_t *gz, fzip_error_t *error) {
  size_t n = 0;
  if (gz->z.avail_in)
    return gz_fail(gz, FZIP_ERR_DATA_LOSS, error, "data after the end of the gzip stream");
  if (!gz->s.src(gz->s.src_ctx, gz->s.in, PKGHF_GZ_INPUT, &n, error))
    return false;
  if (n)
    return gz_fail(gz, FZIP_ERR_DATA_LOSS, error, "data after the end of the gzip stream");
  return true;
}

static bool gz_check_bounds(pkghf_gunzip_t *gz, fzip_error_t *error) {
  char what[REASON_MAX];
  uint64_t in = gz->in_total ? gz->in_total : 1;
  if (gz->out_total > gz->max_out) {
    snprintf(what, sizeof what, "inflates to more than %llu bytes", (unsigned long long)gz->max_out);
    return gz_fail(gz, FZIP_ERR_RESOURCE_EXHAUSTED, error, what);
  }
  if (gz->out_total >= gz->ratio_min && gz->out_total / in > gz->max_ratio) {
    snprintf(what, sizeof what,
             "%llu bytes inflated from %llu: ratio above %llu (a gzip bomb?)",
             (unsigned long long)gz->out_total, (unsigned long long)gz->in_total,
             (unsigned long long)gz->max_ratio);
    return gz_fail(gz, FZIP_ERR_RESOURCE_EXHAUSTED, error, what);
  }
  return true;
}

bool pkghf_gunzip_read(void *ctx, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  pkghf_gunzip_t *gz = ctx;
  *n = 0;
  if (gz->ended || cap == 0)
    return true;
  uInt want = cap > UINT32_MAX ? UINT32_MAX : (uInt)cap;
  gz->z.next_out = buf;
  gz->z.avail_out = want;
  while (gz->z.avail_out == want) { /* until some output, or the end */
    int rc;
    if (gz->z.avail_in == 0) {
      size_t got = 0;
      if (!gz->s.src(gz->s.src_ctx, gz->s.in, PKGHF_GZ_INPUT, &got, error))
        return false;
      if (got == 0)
        return gz_fail(gz, FZIP_ERR_DATA_LOSS, error, "truncated (the entry ends inside it)");
      gz->z.next_in = gz->s.in;
      gz->z.avail_in = (uInt)got;
      gz->in_total += got;
    }
    rc = inflate(&gz->z, Z_NO_FLUSH);
    if (rc == Z_STREAM_END) {
      gz->ended = true;
      break;
    }
    if (rc == Z_MEM_ERROR)
      return fzip_error_oom(error, "gzip");
    if (rc != Z_OK && rc != Z_BUF_ERROR)
      return gz_fail(gz, FZIP_ERR_DATA_LOSS, error,
                     gz->z.msg ? gz->z.msg : "corrupt stream");
  }
  *n = want - gz->z.avail_out;
  gz->out_total += *n;
  if (!gz_check_bounds(gz, error))
    return false;
  if (gz->ended && !gz_expect_end(gz, error))
    return false;
  return true;
}

/* ---- LZMA ------------------------------------------------------------- */

#define LZMA_ZIP_HEADER 4 /* version major, minor, properties size (LE16) */

struct pkghf_lzma {
  source_t s;
  uint32_t want_crc, crc;
  uint64_t size, out_total;
  lzma_stream z;
  bool started, ended, src_eof;
};

pkghf_lzma_t *pkghf_lzma_new(pkgjr_read_fn src, void *src_ctx, const char *name, uint32_t crc,
                             uint64_t size) {
  pkghf_lzma_t *lz = calloc(1, sizeof *lz);
  lzma_stream init = LZMA_STREAM_INIT;
  if (lz) {
    lz->want_crc = crc;
    lz->size = size;
    lz->z = init; /* lzma_end on it is then a no-op until the decoder starts */
  }
  if (lz && !source_init(&lz->s, src, src_ctx, name)) {
    pkghf_lzma_destroy(lz);
    lz = NULL;
  }
  return lz;
}

void pkghf_lzma_destroy(pkghf_lzma_t *lz) {
  if (!lz)
    return;
  lzma_end(&lz->z);
  source_fini(&lz->s);
  free(lz);
}

static bool lz_fail(pkghf_lzma_t *lz, fzip_code_t code, fzip_error_t *error, const char *what) {
  return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, code, "%s: LZMA: %s", lz->s.name, what);
}

/* Exactly n bytes from src (the header is tiny: short reads are joined). */
static bool lz_read_exact(pkghf_lzma_t *lz, unsigned char *out, size_t n, fzip_error_t *error) {
  size_t got = 0, k;
  while (got < n) {
    if (!lz->s.src(lz->s.src_ctx, out + got, n - got, &k, error))
      return false;
    if (k == 0)
      return lz_fail(lz, FZIP_ERR_DATA_LOSS, error, "truncated header");
    got += k;
  }
  return true;
}

/* The zip LZMA header and properties, then the raw decoder. */
static bool lz_start(pkghf_lzma_t *lz, fzip_error_t *error) {
  unsigned char head[LZMA_ZIP_HEADER], props[16];
  lzma_filter filters[2] = {{LZMA_FILTER_LZMA1, NULL}, {LZMA_VLI_UNKNOWN, NULL}};
  lzma_options_lzma *opt;
  size_t psize;
  bool ok = false;

  if (!lz_read_exact(lz, head, sizeof head, error))
    return false;
  psize = (size_t)head[2] | (size_t)head[3] << 8;
  if (psize != 5)
    return lz_fail(lz, FZIP_ERR_DATA_LOSS, error, "properties are not the 5 bytes of LZMA1");
  if (!lz_read_exact(lz, props, psize, error))
    return false;
  if (lzma_properties_decode(&filters[0], NULL, props, psize) != LZMA_OK)
    return lz_fail(lz, FZIP_ERR_DATA_LOSS, error, "bad properties");
  opt = filters[0].options;
  /* Nothing can refer further back than the entry is long. */
  if (opt->dict_size > lz->size)
    opt->dict_size = lz->size < LZMA_DICT_SIZE_MIN ? LZMA_DICT_SIZE_MIN : (uint32_t)lz->size;
  if (opt->dict_size > PKGHF_LZMA_DICT_MAX)
    lz_fail(lz, FZIP_ERR_RESOURCE_EXHAUSTED, error, "dictionary above PKGHF_LZMA_DICT_MAX");
  else if (lzma_raw_decoder(&lz->z, filters) != LZMA_OK)
    lz_fail(lz, FZIP_ERR_DATA_LOSS, error, "the decoder refuses the properties");
  else
    ok = true;
  free(opt); /* lzma_properties_decode allocated it with the default allocator */
  lz->started = ok;
  return ok;
}

/* At the end of the data: the CRC-32 libzip checks for its own methods. */
static bool lz_finish(pkghf_lzma_t *lz, fzip_error_t *error) {
  char what[REASON_MAX];
  lz->ended = true;
  if (lz->crc == lz->want_crc)
    return true;
  snprintf(what, sizeof what, "CRC-32 %08x of the data differs from the directory's %08x",
           (unsigned)lz->crc, (unsigned)lz->want_crc);
  return lz_fail(lz, FZIP_ERR_DATA_LOSS, error, what);
}

bool pkghf_lzma_read(void *ctx, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  pkghf_lzma_t *lz = ctx;
  *n = 0;
  if (lz->ended || cap == 0)
    return true;
  if (!lz->started && !lz_start(lz, error))
    return false;
  lz->z.next_out = buf;
  lz->z.avail_out = cap;
  while (lz->z.avail_out == cap) {
    lzma_ret rc;
    if (lz->z.avail_in == 0 && !lz->src_eof) {
      size_t got = 0;
      if (!lz->s.src(lz->s.src_ctx, lz->s.in, PKGHF_GZ_INPUT, &got, error))
        return false;
      lz->src_eof = got == 0;
      lz->z.next_in = lz->s.in;
      lz->z.avail_in = got;
    }
    rc = lzma_code(&lz->z, lz->src_eof ? LZMA_FINISH : LZMA_RUN);
    if (rc == LZMA_STREAM_END) {
      lz->ended = true;
      break;
    }
    if (rc == LZMA_MEM_ERROR)
      return fzip_error_oom(error, "LZMA");
    if (rc == LZMA_BUF_ERROR && lz->src_eof && lz->out_total + (cap - lz->z.avail_out) == lz->size)
      break; /* no end marker: the entry ends after its declared size */
    if (rc != LZMA_OK)
      return lz_fail(lz, FZIP_ERR_DATA_LOSS, error,
                     rc == LZMA_BUF_ERROR ? "truncated stream" : "corrupt stream");
  }
  *n = cap - lz->z.avail_out;
  lz->out_total += *n;
  lz->crc = (uint32_t)crc32(lz->crc, buf, (uInt)*n); /* cap stays below 4 GiB: PKGR_READ_CHUNK */
  if (*n == 0 || lz->ended)
    return lz_finish(lz, error);
  return true;
}
