/*
 * pkg_writer: see pkg_writer.h.
 *
 * A write runs in four steps, each appending entries to a spool file in
 * a private temporary directory: (1) every included kind is streamed from
 * its cursor through pkg_json into its own entry, hashed on the way and
 * deflated (pkg_deflate: the writer's thread fills blocks, the pool's
 * threads compress them meanwhile); (2) each transaction file's bytes are
 * copied from the source into another entry the same way; (3) the
 * manifest is composed as a BSON document (counts, checksums, external
 * references) and written the same way; (4) only then, from a consistent
 * read, is the zip written (pkg_zipout) front to back into the file or
 * the sink, in the fixed order of FORMAT.md with manifest.json first,
 * fixed DOS times and attributes, each entry's deflated bytes copied from
 * its spool as they are.  Doing all hashing before the zip exists is what
 * lets the manifest come first; deflating on the way is what keeps the
 * uncompressed bytes off the disk; writing the zip in one pass is what
 * keeps the package itself off it (the bytes of a package were written
 * three times before: spool, package file, blob).
 */
#include "pkg_writer.h"
#include "pkg_limits.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pkg_csv.h"
#include "pkg_deflate.h"
#include "pkg_json.h"
#include "pkg_set.h"
#include "pkg_tmp.h"
#include "pkg_zipout.h"
#include "fzip_version.h"

/* The private temp dir's path; room is left below PATH_MAX for the names
 * of the temporaries inside it. */
#define PKG_TEMP_DIR_MAX (PATH_MAX - 64)

static bool sys_error(fzip_error_t *error, const char *what, const char *path) {
  return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s %s: %s", what, path,
                        strerror(errno));
}

static bool oom(fzip_error_t *error) {
  return fzip_error_oom(error, NULL);
}

/* ---- names ----------------------------------------------------------- */

const char *pkg_export_type_name(pkg_export_type_t type) {
  static const char *names[] = {"complete", "accounts_only", "transactions_only",
                                "categories_only", "selective"};
  return (unsigned)type < sizeof names / sizeof names[0] ? names[type] : "unknown";
}

const char *pkg_phase_name(pkg_phase_t phase) {
  static const char *names[] = {"counting", "data", "files", "compressing", "uploading", "done"};
  return (unsigned)phase < sizeof names / sizeof names[0] ? names[phase] : "unknown";
}

/* ---- file names ------------------------------------------------------ */

static bool name_byte_is_bad(unsigned char c) {
  return c < 0x20 || c == 0x7f || strchr("/\\:*?\"<>|", c) != NULL;
}

/* Copies name into out replacing what is unsafe by '_'; returns its length. */
static size_t sanitize_chars(char *out, size_t cap, const char *name, size_t len) {
  size_t o = 0, i = 0;
  while (i < len && o + 1 < cap) {
    size_t n = pkgjson_utf8_seq_len(name + i, len - i);
    if (n == 0 || (n == 1 && name_byte_is_bad((unsigned char)name[i]))) {
      out[o++] = '_';
      i += n ? n : 1;
      continue;
    }
    memcpy(out + o, name + i, n);
    o += n;
    i += n;
  }
  out[o] = '\0';
  return o;
}

/* Length of the longest prefix of s[0..len) of at most max bytes that ends
 * on a character boundary (s is valid UTF-8 here). */
static size_t utf8_prefix(const char *s, size_t len, size_t max) {
  size_t i = 0;
  while (i < len) {
    size_t n = pkgjson_utf8_seq_len(s + i, len - i);
    if (n == 0 || i + n > max)
      break;
    i += n;
  }
  return i;
}

void pkg_sanitize_file_name(char out[PKG_FILE_NAME_MAX + 1], const char *name, size_t len) {
  /* Room for a name 4x the limit before cutting: enough to keep an
   * extension of a long name, bounded like everything else. */
  char tmp[4 * PKG_FILE_NAME_MAX + 1];
  size_t n = sanitize_chars(tmp, sizeof tmp, name ? name : "", name ? len : 0);
  size_t start = 0;

  while (start < n && (tmp[start] == ' ' || tmp[start] == '.'))
    start++;
  while (n > start && (tmp[n - 1] == ' ' || tmp[n - 1] == '.'))
    n--;
  if (n == start) {
    strcpy(out, "file");
    return;
  }
  if (n - start <= PKG_FILE_NAME_MAX) {
    memcpy(out, tmp + start, n - start);
    out[n - start] = '\0';
    return;
  }
  {
    const char *base = tmp + start;
    size_t blen = n - start;
    const char *dot = memchr(base, '.', blen) ? strrchr(base, '.') : NULL;
    size_t ext = dot && (size_t)(base + blen - dot) <= 16 ? (size_t)(base + blen - dot) : 0;
    size_t head = utf8_prefix(base, blen - ext, PKG_FILE_NAME_MAX - ext);
    memcpy(out, base, head);
    memcpy(out + head, base + blen - ext, ext);
    out[head + ext] = '\0';
  }
}

/* ---- ids -------------------------------------------------------------- */

/* Adds id to set, refusing more than PKG_REF_IDS_MAX distinct ids. */
static bool id_add(pkg_strset_t *set, const char *id, fzip_error_t *error) {
  switch (pkg_strset_add(set, id, PKG_REF_IDS_MAX)) {
  case PKG_SET_OOM:
    return oom(error);
  case PKG_SET_FULL:
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "more than PKG_REF_IDS_MAX (%d) distinct referenced ids",
                          PKG_REF_IDS_MAX);
  default:
    return true;
  }
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- the plan: which kinds, which filters ------------------------------ */

typedef struct {
  bool include[FZIP_KIND_COUNT];
  bool filtered[FZIP_KIND_COUNT]; /* apply the selection's filter to this kind */
  bool dated[FZIP_KIND_COUNT];    /* ... including its date range */
  bool files;                     /* copy transaction file bytes */
} plan_t;

static void plan_make(plan_t *p, const pkg_selection_t *sel) {
  memset(p, 0, sizeof *p);
  switch (sel->export_type) {
  case PKG_EXPORT_COMPLETE:
  case PKG_EXPORT_SELECTIVE:
    for (int k = 0; k < FZIP_KIND_COUNT; k++)
      p->include[k] = k != FZIP_KIND_ANALYTICS || sel->include_analytics;
    p->files = true;
    if (sel->export_type == PKG_EXPORT_SELECTIVE) {
      p->filtered[FZIP_KIND_ACCOUNT] = p->filtered[FZIP_KIND_TRANSACTION_FILE] = true;
      p->filtered[FZIP_KIND_TRANSACTION] = p->filtered[FZIP_KIND_ANALYTICS] = true;
      p->dated[FZIP_KIND_TRANSACTION] = true;
    }
    break;
  case PKG_EXPORT_ACCOUNTS_ONLY:
    p->include[FZIP_KIND_ACCOUNT] = true;
    break;
  case PKG_EXPORT_TRANSACTIONS_ONLY:
    p->include[FZIP_KIND_ACCOUNT] = p->include[FZIP_KIND_CATEGORY] = true;
    p->include[FZIP_KIND_TRANSACTION] = true;
    p->filtered[FZIP_KIND_ACCOUNT] = p->filtered[FZIP_KIND_TRANSACTION] = true;
    p->dated[FZIP_KIND_TRANSACTION] = true;
    break;
  case PKG_EXPORT_CATEGORIES_ONLY:
    p->include[FZIP_KIND_CATEGORY] = true;
    break;
  }
}

static void plan_filter(pkg_filter_t *f, const plan_t *p, const pkg_selection_t *sel,
                        fzip_kind_t kind) {
  memset(f, 0, sizeof *f);
  f->changed_after = sel->incremental ? sel->incremental->base_change_seq : 0;
  if (!p->filtered[kind])
    return;
  f->account_ids = sel->account_ids;
  f->n_account_ids = sel->n_account_ids;
  if (p->dated[kind]) {
    f->has_date_from = sel->has_date_from;
    f->date_from = sel->date_from;
    f->has_date_to = sel->has_date_to;
    f->date_to = sel->date_to;
  }
}

bool pkg_selection_check(const pkg_selection_t *sel, fzip_error_t *error) {
  if (!sel)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "selection is NULL");
  if ((unsigned)sel->export_type > PKG_EXPORT_SELECTIVE)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "unknown export type %d", (int)sel->export_type);
  if (sel->n_account_ids > PKG_FILTER_IDS_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "more than PKG_FILTER_IDS_MAX (%d) account ids",
                          PKG_FILTER_IDS_MAX);
  for (size_t i = 0; i < sel->n_account_ids; i++) {
    if (!fzip_id_is_valid(sel->account_ids[i]))
      return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                            "account id #%zu is not a valid id", i);
  }
  if (sel->has_date_from && sel->has_date_to && sel->date_from > sel->date_to)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "date_from is after date_to");
  if (sel->incremental && (sel->incremental->chain_length < 1 || sel->include_csv))
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "an increment has chain_length >= 1 and no CSV");
  return true;
}

/* A write also needs what the manifest's "incremental" object names (a
 * count does not): never a package that the project's own reader refuses. */
static bool base_check(const pkg_selection_t *sel, fzip_error_t *error) {
  if (!sel->incremental)
    return true;
  if (!fzip_id_is_valid(sel->incremental->base_export_id))
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "an increment's base_export_id is not a valid id");
  if (!pkg_sha256_hex_is_valid(sel->incremental->base_package_sha256))
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "an increment's base_package_sha256 is not %d lower-case hex digits",
                          FZIP_SHA256_HEX_LEN);
  return true;
}

bool pkg_sha256_hex_is_valid(const char *hex) {
  if (!hex || strlen(hex) != FZIP_SHA256_HEX_LEN)
    return false;
  for (size_t i = 0; i < FZIP_SHA256_HEX_LEN; i++) {
    if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
      return false;
  }
  return true;
}

bool pkg_count(uint64_t *items_total, const pkg_source_t *source,
               const pkg_selection_t *sel, fzip_error_t *error) {
  plan_t plan;
  uint64_t total = 0;

  if (!pkg_selection_check(sel, error))
    return false;
  plan_make(&plan, sel);
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    pkg_filter_t f;
    uint64_t n = 0;
    if (!plan.include[k])
      continue;
    plan_filter(&f, &plan, sel, (fzip_kind_t)k);
    if (!source->ops->count(source->ctx, &n, (fzip_kind_t)k, &f, error))
      return false;
    total += n;
    if (k == FZIP_KIND_TRANSACTION_FILE && plan.files)
      total += n; /* each file's bytes are an item too */
  }
  *items_total = total;
  return true;
}

/* ---- the build ------------------------------------------------------- */

typedef struct {
  char *name;  /* zip entry name */
  uint64_t size;
  char sha256[FZIP_SHA256_HEX_LEN + 1];
  uint32_t crc32;     /* of the uncompressed bytes, for the zip headers */
  uint64_t comp_size; /* deflated bytes in the spool */
  int spool;          /* which spool holds them (SPOOL_*) ... */
  uint64_t offset;    /* ... from where */
  uint64_t zip_offset; /* of its local header in the package (write_zip) */
} entry_t;

/* Every entry's deflated bytes go to one of a few spool files in the
 * build's temp dir, one after the other, instead of a file per entry:
 * creating a file costs the kernel more CPU than writing one (ext4's
 * inode allocation was ~4% of an export's CPU with a file per
 * transaction file).  Each spool has its own deflate stream, and holds
 * one entry at a time: a kind's csv/ entry is written at the same time as
 * its data entry, and transaction files go round all of them
 * (write_files). */
enum { SPOOL_MAIN = 0, SPOOL_CSV = 1, SPOOL_COUNT = 4 };

typedef struct {
  char *file_id;
  char *file_name;
  char *blob_id;
} file_ref_t;

typedef struct {
  const pkg_source_t *source;
  const char *user_id;
  const pkg_selection_t *sel;
  const pkg_options_t *opt;
  plan_t plan;
  char dir[PKG_TEMP_DIR_MAX];
  entry_t *entries;
  size_t n_entries, cap_entries;
  file_ref_t *files;
  size_t n_files, cap_files;
  pkg_strset_t included[FZIP_KIND_COUNT];   /* ids written, for kinds others refer to */
  pkg_strset_t referenced[FZIP_KIND_COUNT]; /* ids referred to, per target kind */
  pkg_strset_t missing_files;
  pkg_result_t res;
  pkg_progress_t prog;
  uint64_t next_items, next_bytes;
  pkg_csv_t *csv;  /* with selection->include_csv: the CSV tables' state */
  void *csv_out;   /* the hashed_file_t of the kind's csv/ entry while one is written */
  entry_t manifest; /* size, crc32, comp_size of manifest.json (no name, no sha256) */
  pkg_deflate_t *deflate[SPOOL_COUNT]; /* each spool's stream */
  FILE *spool[SPOOL_COUNT];   /* made at their first entry */
  uint64_t spool_end[SPOOL_COUNT];
} build_t;

/* Reports progress at most every PKG_PROGRESS_EVERY_* and polls for
 * cancellation at the same moments; `force` reports regardless. */
static bool tick(build_t *b, bool force, fzip_error_t *error) {
  if (!force && b->prog.items_done < b->next_items && b->prog.bytes_done < b->next_bytes)
    return true;
  b->next_items = b->prog.items_done + PKG_PROGRESS_EVERY_ITEMS;
  b->next_bytes = b->prog.bytes_done + PKG_PROGRESS_EVERY_BYTES;
  if (b->opt->progress)
    b->opt->progress(b->opt->progress_ctx, &b->prog);
  if (b->opt->cancelled && b->opt->cancelled(b->opt->cancel_ctx))
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_CANCELLED, "export cancelled");
  return true;
}

static void set_phase(build_t *b, pkg_phase_t phase, const char *entry) {
  b->prog.phase = phase;
  b->prog.entry = entry;
  b->prog.fraction = 0;
}

static void spool_path(char out[PATH_MAX], const build_t *b, int spool) {
  snprintf(out, PATH_MAX, "%s/spool%d", b->dir, spool);
}

/* Adds an entry record; hashed_close says where its bytes are. */
static bool entry_push(build_t *b, const char *name, fzip_error_t *error) {
  entry_t *e = pkg_array_room(b->entries, &b->cap_entries, b->n_entries, sizeof *e, 16);
  if (!e)
    return oom(error);
  b->entries = e;
  memset(&b->entries[b->n_entries], 0, sizeof b->entries[0]);
  if (!(b->entries[b->n_entries].name = strdup(name)))
    return oom(error);
  b->n_entries++;
  return true;
}

/* An entry on its way to its spool: hashed and counted as it goes
 * through, deflated (pkg_deflate, blocks compressed in parallel) onto the
 * spool's end, whence the zip then takes the bytes as they are. */
typedef struct {
  FILE *f; /* the spool (borrowed); NULL once closed */
  fzip_sha256_t *hash;
  pkg_deflate_t *z;
  uint64_t size;
  int spool;
  uint64_t offset;     /* where the entry starts in the spool */
  uint64_t *spool_end; /* the build's, moved by what is written */
  const char *dir;
} hashed_file_t;

static bool deflated_out(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  hashed_file_t *h = ctx;
  if (fwrite(data, 1, len, h->f) != len)
    return sys_error(error, "writing the spool in", h->dir);
  *h->spool_end += len;
  return true;
}

static bool hashed_open(hashed_file_t *h, build_t *b, int spool, fzip_error_t *error) {
  char path[PATH_MAX];

  memset(h, 0, sizeof *h);
  h->z = b->deflate[spool];
  h->spool = spool;
  h->spool_end = &b->spool_end[spool];
  h->offset = b->spool_end[spool];
  h->dir = b->dir;
  if (!(h->hash = fzip_sha256_new()))
    return oom(error);
  if (!b->spool[spool]) {
    spool_path(path, b, spool);
    if (!(b->spool[spool] = fopen(path, "w+b")))
      return sys_error(error, "creating", path);
  }
  h->f = b->spool[spool];
  pkg_deflate_begin(h->z, deflated_out, h);
  return true;
}

static bool hashed_sink(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  hashed_file_t *h = ctx;
  if (!pkg_deflate_write(h->z, data, len, error))
    return false;
  fzip_sha256_update(h->hash, data, len);
  h->size += len;
  return true;
}

/* Finishes the deflate stream, closes, and records size, hash, CRC and
 * compressed size into `e` (NULL: the entry failed, its blocks are
 * dropped); always releases h. */
static bool hashed_close(hashed_file_t *h, entry_t *e, fzip_error_t *error) {
  uint64_t size = 0;
  bool ok = true;
  if (e && h->f && !pkg_deflate_finish(h->z, &e->crc32, &size, &e->comp_size, error))
    ok = false;
  h->f = NULL;
  if (ok && e) {
    fzip_sha256_final_hex(h->hash, e->sha256);
    e->size = h->size;
    e->spool = h->spool;
    e->offset = h->offset;
  }
  fzip_sha256_destroy(h->hash);
  h->hash = NULL;
  return ok;
}

/* ---- references ------------------------------------------------------ */

typedef struct {
  fzip_kind_t from;
  const char *field;
  fzip_kind_t to;
} ref_rule_t;

/* Which fields of which kinds name entities of another kind (FORMAT.md
 * "External references").  categories[].categoryId is handled apart. */
static const ref_rule_t ref_rules[] = {
    {FZIP_KIND_ACCOUNT, "defaultFileMapId", FZIP_KIND_FILE_MAP},
    {FZIP_KIND_CATEGORY, "parentCategoryId", FZIP_KIND_CATEGORY},
    {FZIP_KIND_FILE_MAP, "accountId", FZIP_KIND_ACCOUNT},
    {FZIP_KIND_TRANSACTION_FILE, "accountId", FZIP_KIND_ACCOUNT},
    {FZIP_KIND_TRANSACTION_FILE, "fileMapId", FZIP_KIND_FILE_MAP},
    {FZIP_KIND_TRANSACTION, "accountId", FZIP_KIND_ACCOUNT},
    {FZIP_KIND_TRANSACTION, "fileId", FZIP_KIND_TRANSACTION_FILE},
    {FZIP_KIND_TRANSACTION, "primaryCategoryId", FZIP_KIND_CATEGORY},
    {FZIP_KIND_ANALYTICS, "accountId", FZIP_KIND_ACCOUNT},
};

static bool is_ref_target(fzip_kind_t kind) {
  return kind == FZIP_KIND_ACCOUNT || kind == FZIP_KIND_CATEGORY ||
         kind == FZIP_KIND_FILE_MAP || kind == FZIP_KIND_TRANSACTION_FILE;
}

/* A non-empty string field, or NULL. */
static const char *str_field(const bson_t *doc, const char *field) {
  bson_iter_t it;
  if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_UTF8(&it))
    return NULL;
  const char *s = bson_iter_utf8(&it, NULL);
  return *s ? s : NULL;
}

static bool note_ref(build_t *b, fzip_kind_t to, const char *id, fzip_error_t *error) {
  return !id || id_add(&b->referenced[to], id, error);
}

#define REF_RULES_N (sizeof ref_rules / sizeof ref_rules[0])

/* The ids `kind`'s document refers to, noted in ref_rules order (then
 * categories[].categoryId), as str_field would find each: the first
 * member of that name, a non-empty string.  One walk over the top-level
 * members instead of one lookup per rule: a transaction has four. */
static bool collect_refs(build_t *b, fzip_kind_t kind, const bson_t *doc, fzip_error_t *error) {
  const char *ids[REF_RULES_N] = {0};
  bool seen[REF_RULES_N] = {0}, seen_categories = kind != FZIP_KIND_TRANSACTION;
  bson_iter_t it, arr, item;
  bool has_arr = false;

  if (!bson_iter_init(&it, doc))
    return true;
  while (bson_iter_next(&it)) {
    const char *key = bson_iter_key(&it);
    for (size_t i = 0; i < REF_RULES_N; i++) {
      if (ref_rules[i].from != kind || seen[i] || key[0] != ref_rules[i].field[0] ||
          strcmp(key, ref_rules[i].field) != 0)
        continue;
      seen[i] = true;
      if (BSON_ITER_HOLDS_UTF8(&it) && *bson_iter_utf8(&it, NULL))
        ids[i] = bson_iter_utf8(&it, NULL);
    }
    if (!seen_categories && key[0] == 'c' && strcmp(key, "categories") == 0) {
      seen_categories = true;
      has_arr = BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &arr);
    }
  }
  for (size_t i = 0; i < REF_RULES_N; i++) {
    if (!note_ref(b, ref_rules[i].to, ids[i], error))
      return false;
  }
  while (has_arr && bson_iter_next(&arr)) {
    if (BSON_ITER_HOLDS_DOCUMENT(&arr) && bson_iter_recurse(&arr, &item) &&
        bson_iter_find(&item, "categoryId") && BSON_ITER_HOLDS_UTF8(&item) &&
        *bson_iter_utf8(&item, NULL) &&
        !note_ref(b, FZIP_KIND_CATEGORY, bson_iter_utf8(&item, NULL), error))
      return false;
  }
  return true;
}

/* Remembers a transaction file whose bytes go under files/. */
static bool note_file(build_t *b, const bson_t *doc, fzip_error_t *error) {
  const char *id = str_field(doc, "fileId");
  const char *name = str_field(doc, "fileName");
  const char *blob = str_field(doc, "s3Key");
  file_ref_t *f;

  if (!fzip_id_is_valid(id))
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "transaction file with an invalid fileId");
  if (b->n_files >= PKG_FILES_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "more than PKG_FILES_MAX (%d) transaction files", PKG_FILES_MAX);
  if (!(f = pkg_array_room(b->files, &b->cap_files, b->n_files, sizeof *f, 16)))
    return oom(error);
  b->files = f;
  f = &b->files[b->n_files];
  f->file_id = strdup(id);
  f->file_name = strdup(name ? name : "");
  f->blob_id = blob ? strdup(blob) : NULL;
  b->n_files++;
  if (!f->file_id || !f->file_name || (blob && !f->blob_id))
    return oom(error);
  return true;
}

/* ---- step 1: data files ---------------------------------------------- */

/* s3Key is where the source store keeps a file's bytes: meaningless in
 * any other environment (the bytes travel as files/<id>/<name>), so it is
 * not exported, and a round trip through another store exports the same
 * data entries. */
static bool write_entity(pkgjson_writer_t *w, fzip_kind_t kind, const bson_t *doc,
                         fzip_error_t *error) {
  bson_t stripped;
  bool ok;

  if (kind != FZIP_KIND_TRANSACTION_FILE)
    return pkgjson_write_document(w, doc, error);
  bson_init(&stripped);
  bson_copy_to_excluding_noinit(doc, &stripped, "s3Key", NULL);
  ok = pkgjson_write_document(w, &stripped, error);
  bson_destroy(&stripped);
  return ok;
}

static bool on_document(build_t *b, fzip_kind_t kind, pkgjson_writer_t *w, const bson_t *doc,
                        fzip_error_t *error) {
  const fzip_kind_info_t *info = fzip_kind_info(kind);

  if (b->res.counts[kind] >= PKG_ENTITIES_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "more than PKG_ENTITIES_MAX %s", info->name);
  if (!pkgjson_write_raw(w, b->res.counts[kind] ? ",\n" : "\n", b->res.counts[kind] ? 2 : 1,
                         error) ||
      !write_entity(w, kind, doc, error) ||
      (b->csv_out && !pkg_csv_row(b->csv, kind, doc, hashed_sink, b->csv_out, error))) {
    const char *id = str_field(doc, info->id_field);
    return fzip_error_prefix(error, "%s %s", info->name, id ? id : "?");
  }
  if (!collect_refs(b, kind, doc, error))
    return false;
  if (is_ref_target(kind) && str_field(doc, info->id_field) &&
      !id_add(&b->included[kind], str_field(doc, info->id_field), error))
    return false;
  if (kind == FZIP_KIND_TRANSACTION_FILE && b->plan.files && !note_file(b, doc, error))
    return false;
  b->res.counts[kind]++;
  b->prog.items_done++;
  return tick(b, false, error);
}

/* Opens kind's csv/ entry next to its data entry when the selection asks
 * for CSV and the kind has a table (FORMAT.md 13); *csv_index is then its
 * entry, else SIZE_MAX. */
static bool csv_open(build_t *b, hashed_file_t *h, size_t *csv_index, fzip_kind_t kind,
                     fzip_error_t *error) {
  const char *entry = pkg_csv_entry(kind);

  *csv_index = SIZE_MAX;
  if (!b->sel->include_csv || !entry)
    return true;
  if (!b->csv && !(b->csv = pkg_csv_new()))
    return oom(error);
  if (!entry_push(b, entry, error) || !hashed_open(h, b, SPOOL_CSV, error))
    return false;
  *csv_index = b->n_entries - 1;
  b->csv_out = h;
  return pkg_csv_begin(b->csv, kind, hashed_sink, h, error);
}

static bool write_kind(build_t *b, fzip_kind_t kind, fzip_error_t *error) {
  const fzip_kind_info_t *info = fzip_kind_info(kind);
  char head[64];
  hashed_file_t h = {0}, csv = {0};
  size_t data_index = 0, csv_index = SIZE_MAX;
  pkgjson_writer_t *w = NULL;
  const pkg_source_ops_t *src = b->source->ops;
  void *cur = NULL;
  pkg_filter_t filter;
  const bson_t *doc;
  bool ok = false;

  if (!entry_push(b, info->data_file, error) || !hashed_open(&h, b, SPOOL_MAIN, error))
    goto done;
  data_index = b->n_entries - 1;
  if (!csv_open(b, &csv, &csv_index, kind, error))
    goto done;
  if (!(w = pkgjson_writer_new(hashed_sink, &h))) {
    oom(error);
    goto done;
  }
  set_phase(b, PKG_PHASE_DATA, info->data_file);
  if (!tick(b, true, error))
    goto done;
  plan_filter(&filter, &b->plan, b->sel, kind);
  if (!src->cursor_open(b->source->ctx, &cur, kind, &filter, error))
    goto done;
  snprintf(head, sizeof head, "{\"%s\":[", info->name);
  if (!pkgjson_write_raw(w, head, strlen(head), error))
    goto done;
  while (src->cursor_next(cur, &doc, error)) {
    if (!on_document(b, kind, w, doc, error))
      goto done;
  }
  if (fzip_error_is_set(error))
    goto done;
  if (!pkgjson_write_raw(w, b->res.counts[kind] ? "\n]}\n" : "]}\n",
                         b->res.counts[kind] ? 4 : 3, error) ||
      !pkgjson_flush(w, error))
    goto done;
  b->res.included[kind] = true;
  ok = true;
done:
  if (cur)
    src->cursor_close(cur);
  pkgjson_writer_destroy(w);
  b->csv_out = NULL;
  if (!hashed_close(&h, ok ? &b->entries[data_index] : NULL, error))
    ok = false;
  if (csv.hash && !hashed_close(&csv, ok ? &b->entries[csv_index] : NULL, error))
    ok = false;
  return ok;
}

/* ---- step 1b: deletions (increments) ---------------------------------- */

static bool write_deletion(build_t *b, pkgjson_writer_t *w, const char *kind, const char *id,
                           fzip_error_t *error) {
  bson_t d = BSON_INITIALIZER;
  bool ok;

  if (b->res.deletions >= PKG_ENTITIES_MAX)
    ok = fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_RESOURCE_EXHAUSTED,
                        "more than PKG_ENTITIES_MAX deletions");
  else
    ok = BSON_APPEND_UTF8(&d, "kind", kind) && BSON_APPEND_UTF8(&d, "id", id) &&
         pkgjson_write_raw(w, b->res.deletions ? ",\n" : "\n", b->res.deletions ? 2 : 1,
                           error) &&
         pkgjson_write_document(w, &d, error);
  bson_destroy(&d);
  if (!ok)
    return false;
  /* items_done does not move here, so a plain tick would never fire: a
   * large wipe-like increment reports and polls for cancel on its own. */
  if (++b->res.deletions % PKG_PROGRESS_EVERY_ITEMS == 0)
    return tick(b, true, error);
  return true;
}

/* A filtered kind's entities changed since the base that the selection
 * no longer takes (moved to another account, re-dated out of the range):
 * the base may hold them, a complete export of now would not, so they
 * are deletions too.  Two cursors over the changed entities, unfiltered
 * and filtered, walked together in id order; what only the first has
 * left the selection. */
typedef struct {
  build_t *b;
  fzip_kind_t kind;
  void *all, *sel;    /* NULL: the kind is not filtered, nothing leaves */
  const char *sel_id; /* the filtered cursor's current id (borrowed), NULL at its end */
  bool sel_started;
} left_t;

static bool left_open(left_t *l, build_t *b, fzip_kind_t kind, fzip_error_t *error) {
  const pkg_source_ops_t *src = b->source->ops;
  pkg_filter_t f;

  memset(l, 0, sizeof *l);
  l->b = b;
  l->kind = kind;
  if (!b->plan.filtered[kind])
    return true;
  plan_filter(&f, &b->plan, b->sel, kind);
  if (!src->cursor_open(b->source->ctx, &l->sel, kind, &f, error))
    return false;
  memset(&f, 0, sizeof f);
  f.changed_after = b->sel->incremental->base_change_seq;
  return src->cursor_open(b->source->ctx, &l->all, kind, &f, error);
}

static void left_close(left_t *l) {
  const pkg_source_ops_t *src = l->b->source->ops;
  if (l->sel)
    src->cursor_close(l->sel);
  if (l->all)
    src->cursor_close(l->all);
}

/* The filtered cursor's next id; NULL at its end (error unset) or on failure. */
static const char *left_sel_next(left_t *l, fzip_error_t *error) {
  const bson_t *doc;
  l->sel_started = true;
  if (!l->b->source->ops->cursor_next(l->sel, &doc, error))
    return NULL;
  return str_field(doc, fzip_kind_info(l->kind)->id_field);
}

/* true and *id (borrowed until the next call) for the next entity that
 * left the selection; false at the end (error unset) or on failure. */
static bool left_next(left_t *l, const char **id, fzip_error_t *error) {
  const char *field = fzip_kind_info(l->kind)->id_field;
  const bson_t *doc;

  if (!l->all)
    return false;
  if (!l->sel_started)
    l->sel_id = left_sel_next(l, error);
  while (!fzip_error_is_set(error) && l->b->source->ops->cursor_next(l->all, &doc, error)) {
    const char *a = str_field(doc, field);
    while (a && l->sel_id && strcmp(l->sel_id, a) < 0 && !fzip_error_is_set(error))
      l->sel_id = left_sel_next(l, error);
    if (!a || fzip_error_is_set(error))
      break;
    if (l->sel_id && strcmp(l->sel_id, a) == 0)
      continue; /* still selected: written in data/ */
    *id = a;
    return true;
  }
  return false;
}

/* data/deletions.json for one kind: the source's deletions since the base
 * merged in id order with what left the selection, each id once.  The two
 * lists can share an id: a deletion stays listed when the id is written
 * again after the mark (store.h, deletions_open), and the snapshot may see
 * that write take the entity out of the selection. */
static bool write_deletions_of(build_t *b, pkgjson_writer_t *w, fzip_kind_t kind,
                               fzip_error_t *error) {
  const pkg_source_ops_t *src = b->source->ops;
  const char *name = fzip_kind_info(kind)->name;
  void *cur = NULL;
  left_t l;
  const char *d = NULL, *g = NULL;
  bool ok = false, more_d, more_g;

  if (!left_open(&l, b, kind, error))
    goto done;
  if (!src->deletions_open(b->source->ctx, &cur, kind, b->sel->incremental->base_change_seq,
                           b->res.change_seq, error))
    goto done;
  more_d = src->deletions_next(cur, &d, error);
  more_g = !fzip_error_is_set(error) && left_next(&l, &g, error);
  while ((more_d || more_g) && !fzip_error_is_set(error)) {
    int order = more_d && more_g ? strcmp(d, g) : 0;
    if (order == 0 && more_d && more_g)
      more_g = left_next(&l, &g, error); /* the same id: written once, as d */
    if (fzip_error_is_set(error))
      break;
    if (more_d && (!more_g || order <= 0)) {
      if (!write_deletion(b, w, name, d, error))
        goto done;
      more_d = src->deletions_next(cur, &d, error);
    } else {
      if (!write_deletion(b, w, name, g, error))
        goto done;
      more_g = left_next(&l, &g, error);
    }
  }
  ok = !fzip_error_is_set(error);
done:
  if (cur)
    src->deletions_close(cur);
  left_close(&l);
  return ok;
}

static bool write_deletions(build_t *b, fzip_error_t *error) {
  hashed_file_t h = {0};
  pkgjson_writer_t *w = NULL;
  size_t index = 0;
  bool ok = false;

  if (!entry_push(b, PKG_DELETIONS_ENTRY, error) || !hashed_open(&h, b, SPOOL_MAIN, error))
    goto done;
  index = b->n_entries - 1;
  if (!(w = pkgjson_writer_new(hashed_sink, &h))) {
    oom(error);
    goto done;
  }
  set_phase(b, PKG_PHASE_DATA, PKG_DELETIONS_ENTRY);
  if (!pkgjson_write_raw(w, "[", 1, error))
    goto done;
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    if (b->plan.include[k] && !write_deletions_of(b, w, (fzip_kind_t)k, error))
      goto done;
  }
  if (!pkgjson_write_raw(w, b->res.deletions ? "\n]\n" : "]\n", b->res.deletions ? 3 : 2,
                         error) ||
      !pkgjson_flush(w, error))
    goto done;
  ok = true;
done:
  pkgjson_writer_destroy(w);
  if (h.hash && !hashed_close(&h, ok ? &b->entries[index] : NULL, error))
    ok = false;
  return ok;
}

/* The source's change mark, read inside its consistent view; an increment
 * cannot span a wipe (its deletions were dropped with it). */
static bool read_changes(build_t *b, fzip_error_t *error) {
  const pkg_source_ops_t *src = b->source->ops;
  const pkg_incremental_t *inc = b->sel->incremental;
  uint64_t wiped = 0;

  if (!src->changes) {
    if (!inc)
      return true;
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "the source has no change tracking for an increment");
  }
  if (!src->changes(b->source->ctx, &b->res.change_seq, &wiped, error))
    return false;
  if (inc && wiped > inc->base_change_seq)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_FAILED_PRECONDITION,
                          "data wiped since the base; make a complete export");
  if (inc && b->res.change_seq < inc->base_change_seq)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_FAILED_PRECONDITION,
                          "the user's data is older than the base (change %" PRIu64
                          " < %" PRIu64 "); make a complete export",
                          b->res.change_seq, inc->base_change_seq);
  return true;
}

/* ---- step 2: file bytes ---------------------------------------------- */

static bool copy_bytes(build_t *b, void *file, hashed_file_t *h, fzip_error_t *error) {
  char *buf = malloc(PKG_COPY_CHUNK);
  size_t n;
  bool ok = false;

  if (!buf)
    return oom(error);
  for (;;) {
    if (!b->source->ops->file_read(file, buf, PKG_COPY_CHUNK, &n, error))
      goto done;
    if (n == 0)
      break;
    if (!hashed_sink(h, buf, n, error))
      goto done;
    b->prog.bytes_done += n;
    if (!tick(b, false, error))
      goto done;
  }
  ok = true;
done:
  free(buf);
  return ok;
}

/* A transaction file's entry whose last block may still be compressing
 * on the pool (pkg_deflate_end_input) while the next file is read. */
typedef struct {
  hashed_file_t h;
  size_t entry;
  bool open;
} file_out_t;

/* Waits for the entry's last block and records it; `keep` false drops it. */
static bool file_close(build_t *b, file_out_t *o, bool keep, fzip_error_t *error) {
  if (!o->open)
    return true;
  o->open = false;
  if (!hashed_close(&o->h, keep ? &b->entries[o->entry] : NULL, error))
    return false;
  if (keep) {
    b->res.files_count++;
    b->res.files_bytes += b->entries[o->entry].size;
  }
  return true;
}

/* Copies f's bytes into a new entry through `o` (on spool `spool`) and
 * queues its last block; *written false for a file without bytes. */
static bool write_file(bool *written, build_t *b, const file_ref_t *f, file_out_t *o, int spool,
                       fzip_error_t *error) {
  char name[PKG_ENTRY_NAME_MAX + 1], clean[PKG_FILE_NAME_MAX + 1];
  void *file = NULL;
  bool ok = false;

  *written = false;
  if (f->blob_id && !b->source->ops->file_open(b->source->ctx, &file, f->blob_id, error))
    return fzip_error_prefix(error, "file %s", f->file_id);
  if (!file) {
    b->res.files_missing++; /* recorded in the manifest, not fatal: FORMAT.md */
    return id_add(&b->missing_files, f->file_id, error);
  }
  pkg_sanitize_file_name(clean, f->file_name, strlen(f->file_name));
  snprintf(name, sizeof name, "files/%s/%s", f->file_id, clean);
  if (!entry_push(b, name, error) || !hashed_open(&o->h, b, spool, error))
    goto done;
  o->entry = b->n_entries - 1;
  o->open = true;
  b->prog.entry = b->entries[o->entry].name;
  if (!copy_bytes(b, file, &o->h, error) || !pkg_deflate_end_input(o->h.z, error))
    goto done;
  *written = true;
  ok = true;
done:
  b->source->ops->file_close(file);
  if (!ok) {
    o->open = false;
    hashed_close(&o->h, NULL, error); /* drops the blocks; frees a part-opened h too */
  }
  return ok;
}

/* Most transaction files are one deflate block, which pkg_deflate_finish
 * would compress on this thread while the pool idles: SPOOL_COUNT entries
 * are in flight instead, one on each spool and its stream (the CSV spool
 * is idle by now), so the next files are read and hashed here while the
 * last ones' blocks are compressed on the pool, and this thread, when it
 * must wait for the oldest, compresses a queued block itself.  With two
 * in flight the pool's one worker on a two-core machine was the
 * bottleneck and this thread waited for it (~1.5 cores busy).  Entries
 * keep the files' order; each spool holds its entries whole. */
static bool write_files(build_t *b, fzip_error_t *error) {
  file_out_t out[SPOOL_COUNT];
  int k = 0;
  bool ok = false;

  memset(out, 0, sizeof out);
  set_phase(b, PKG_PHASE_FILES, NULL);
  for (size_t i = 0; i < b->n_files; i++) {
    bool written = false;
    if (!file_close(b, &out[k], true, error) ||
        !write_file(&written, b, &b->files[i], &out[k], k, error))
      goto done;
    if (written)
      k = (k + 1) % SPOOL_COUNT;
    b->prog.items_done++;
    if (!tick(b, false, error))
      goto done;
  }
  for (int n = 0; n < SPOOL_COUNT; n++, k = (k + 1) % SPOOL_COUNT) {
    if (!file_close(b, &out[k], true, error))
      goto done;
  }
  ok = true;
done:
  for (int n = 0; n < SPOOL_COUNT; n++)
    file_close(b, &out[n], false, NULL);
  return ok;
}

/* ---- step 3: the manifest -------------------------------------------- */

static void append_sorted_ids(bson_t *parent, const char *key, const pkg_strset_t *set,
                              const pkg_strset_t *exclude, uint64_t *count) {
  char **ids = calloc(set->n ? set->n : 1, sizeof *ids);
  size_t n = 0;
  bson_t arr;
  char idx[PKGJSON_INDEX_KEY_SIZE];
  const char *k;

  for (size_t i = 0; ids && i < set->cap; i++) {
    if (set->slots[i] && !(exclude && pkg_strset_has(exclude, set->slots[i])))
      ids[n++] = set->slots[i];
  }
  qsort(ids, n, sizeof *ids, cmp_str);
  bson_append_array_begin(parent, key, -1, &arr);
  for (size_t i = 0; i < n; i++) {
    bson_uint32_to_string((uint32_t)i, &k, idx, sizeof idx);
    bson_append_utf8(&arr, k, -1, ids[i], -1);
  }
  bson_append_array_end(parent, &arr);
  if (count)
    *count += n;
  free(ids);
}

static bool check_external_limits(build_t *b, fzip_error_t *error) {
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    const pkg_strset_t *refs = &b->referenced[k];
    size_t n = 0;
    for (size_t i = 0; i < refs->cap; i++)
      n += refs->slots[i] && !pkg_strset_has(&b->included[k], refs->slots[i]);
    if (n > PKG_EXTERNAL_REFS_MAX)
      return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_RESOURCE_EXHAUSTED,
                            "%zu external %s references exceed PKG_EXTERNAL_REFS_MAX (%d)", n,
                            fzip_kind_info((fzip_kind_t)k)->name, PKG_EXTERNAL_REFS_MAX);
  }
  return true;
}

static void append_filters(bson_t *m, const pkg_selection_t *sel) {
  bson_t f, arr;
  char idx[PKGJSON_INDEX_KEY_SIZE];
  const char *k;

  bson_append_document_begin(m, "filters", -1, &f);
  bson_append_array_begin(&f, "account_ids", -1, &arr);
  for (size_t i = 0; i < sel->n_account_ids; i++) {
    bson_uint32_to_string((uint32_t)i, &k, idx, sizeof idx);
    bson_append_utf8(&arr, k, -1, sel->account_ids[i], -1);
  }
  bson_append_array_end(&f, &arr);
  if (sel->has_date_from)
    BSON_APPEND_INT64(&f, "date_from", sel->date_from);
  else
    BSON_APPEND_NULL(&f, "date_from");
  if (sel->has_date_to)
    BSON_APPEND_INT64(&f, "date_to", sel->date_to);
  else
    BSON_APPEND_NULL(&f, "date_to");
  bson_append_document_end(m, &f);
}

static void append_summary(bson_t *m, const build_t *b) {
  static const char *count_keys[FZIP_KIND_COUNT] = {
      "accounts_count", "categories_count", "file_maps_count", "transaction_files_count",
      "transactions_count", "analytics_count"};
  static const fzip_kind_t order[] = {FZIP_KIND_ACCOUNT, FZIP_KIND_TRANSACTION,
                                      FZIP_KIND_CATEGORY, FZIP_KIND_FILE_MAP,
                                      FZIP_KIND_TRANSACTION_FILE, FZIP_KIND_ANALYTICS};
  bson_t s;

  bson_append_document_begin(m, "data_summary", -1, &s);
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
    BSON_APPEND_INT64(&s, count_keys[order[i]], (int64_t)b->res.counts[order[i]]);
  BSON_APPEND_BOOL(&s, "analytics_included", b->res.included[FZIP_KIND_ANALYTICS]);
  BSON_APPEND_INT64(&s, "files_count", (int64_t)b->res.files_count);
  BSON_APPEND_INT64(&s, "files_bytes", (int64_t)b->res.files_bytes);
  BSON_APPEND_INT64(&s, "files_missing_count", (int64_t)b->res.files_missing);
  bson_append_document_end(m, &s);
}

static void append_checksums(bson_t *m, const build_t *b) {
  bson_t c;
  char v[PKG_CHECKSUM_PREFIX_LEN + FZIP_SHA256_HEX_LEN + 1];

  bson_append_document_begin(m, "checksums", -1, &c);
  for (size_t i = 0; i < b->n_entries; i++) {
    snprintf(v, sizeof v, PKG_CHECKSUM_PREFIX "%s", b->entries[i].sha256);
    bson_append_utf8(&c, b->entries[i].name, -1, v, -1);
  }
  bson_append_document_end(m, &c);
}

static void append_refs(bson_t *m, build_t *b) {
  static const fzip_kind_t targets[] = {FZIP_KIND_ACCOUNT, FZIP_KIND_CATEGORY,
                                        FZIP_KIND_FILE_MAP, FZIP_KIND_TRANSACTION_FILE};
  bson_t r;

  bson_append_document_begin(m, "external_references", -1, &r);
  for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
    append_sorted_ids(&r, fzip_kind_info(targets[i])->name, &b->referenced[targets[i]],
                      &b->included[targets[i]], &b->res.external_refs);
  bson_append_document_end(m, &r);
}

/* FORMAT.md 15: what the increment holds the changes since. */
static void append_incremental(bson_t *m, const build_t *b) {
  const pkg_incremental_t *inc = b->sel->incremental;
  bson_t i;

  bson_append_document_begin(m, PKG_INCREMENTAL_KEY, -1, &i);
  BSON_APPEND_UTF8(&i, "base_export_id", inc->base_export_id); /* base_check */
  BSON_APPEND_UTF8(&i, "base_package_sha256", inc->base_package_sha256);
  BSON_APPEND_INT64(&i, "base_change_seq", (int64_t)inc->base_change_seq);
  BSON_APPEND_INT64(&i, "change_seq", (int64_t)b->res.change_seq);
  BSON_APPEND_INT32(&i, "chain_length", inc->chain_length);
  bson_append_document_end(m, &i);
}

static void iso8601(char out[32], int64_t ms) {
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static bson_t *manifest_build(build_t *b) {
  const char *app = b->opt->application_version ? b->opt->application_version : fzip_version();
  bson_t *m = bson_new();
  bson_t compat, arr;
  char when[32];

  iso8601(when, b->res.export_timestamp_ms);
  BSON_APPEND_UTF8(m, "export_format_version", PKG_FORMAT_VERSION);
  BSON_APPEND_UTF8(m, "package_format", PKG_PACKAGE_FORMAT);
  BSON_APPEND_UTF8(m, "export_timestamp", when);
  BSON_APPEND_INT64(m, "export_timestamp_ms", b->res.export_timestamp_ms);
  BSON_APPEND_UTF8(m, "user_id", b->user_id);
  BSON_APPEND_UTF8(m, "application_version", app);
  BSON_APPEND_UTF8(m, "housef3_version", app);
  BSON_APPEND_UTF8(m, "export_type", pkg_export_type_name(b->sel->export_type));
  append_filters(m, b->sel);
  append_summary(m, b);
  append_checksums(m, b);
  bson_append_document_begin(m, "compatibility", -1, &compat);
  BSON_APPEND_UTF8(&compat, "minimum_version", PKG_FORMAT_VERSION);
  bson_append_array_begin(&compat, "supported_versions", -1, &arr);
  BSON_APPEND_UTF8(&arr, "0", PKG_FORMAT_VERSION);
  bson_append_array_end(&compat, &arr);
  bson_append_document_end(m, &compat);
  append_refs(m, b);
  append_sorted_ids(m, "files_missing", &b->missing_files, NULL, NULL);
  if (b->sel->incremental)
    append_incremental(m, b);
  return m;
}

static bool write_manifest(build_t *b, fzip_error_t *error) {
  hashed_file_t h = {0};
  pkgjson_writer_t *w = NULL;
  bson_t *m = NULL;
  bool ok = false;

  if (!check_external_limits(b, error))
    return false;
  if (!hashed_open(&h, b, SPOOL_MAIN, error))
    goto done;
  if (!(m = manifest_build(b)) || !(w = pkgjson_writer_new(hashed_sink, &h))) {
    oom(error);
    goto done;
  }
  if (!pkgjson_write_document(w, m, error) || !pkgjson_write_raw(w, "\n", 1, error) ||
      !pkgjson_flush(w, error))
    goto done;
  ok = true;
done:
  pkgjson_writer_destroy(w);
  bson_destroy(m);
  if (!hashed_close(&h, ok ? &b->manifest : NULL, error))
    ok = false;
  return ok;
}

/* ---- step 4: the zip ------------------------------------------------- */

/* Where the package's bytes go, counted and hashed on their way
 * (res->package_size, package_sha256), with tick's progress and cancel
 * polls every PKG_PROGRESS_EVERY_BYTES; write_zip makes the first poll
 * come after the first write, once the sink holds part of the package. */
typedef struct {
  build_t *b;
  pkg_sink_fn sink;
  void *sink_ctx;
  fzip_sha256_t *hash; /* NULL: the sink's owner hashes (pkg_write_stream) */
  uint64_t expected;   /* about the package's size, for `fraction` */
} package_out_t;

static bool package_sink(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  package_out_t *o = ctx;
  build_t *b = o->b;

  if (o->hash)
    fzip_sha256_update(o->hash, data, len);
  if (!o->sink(o->sink_ctx, data, len, error))
    return false;
  b->prog.bytes_done += len;
  b->prog.fraction = o->expected ? (double)b->prog.bytes_done / (double)o->expected : 0;
  if (b->prog.fraction > 1)
    b->prog.fraction = 1;
  return tick(b, false, error);
}

/* pkgzo_read_fn over an entry's range of its spool (flushed by
 * write_zip); positioned reads, so the spool's file position does not
 * matter. */
typedef struct {
  FILE *spool;
  uint64_t offset;
} spool_range_t;

static bool spool_read(void *ctx, void *buf, size_t len, uint64_t at, fzip_error_t *error) {
  const spool_range_t *r = ctx;
  int fd = fileno(r->spool);
  size_t got = 0;

  while (got < len) {
    ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(r->offset + at + got));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL,
                            "reading the package spool: %s",
                            n < 0 ? strerror(errno) : "it is shorter than its entries");
    got += (size_t)n;
  }
  return true;
}

/* Archive entry i (< n_entries + 1): manifest.json first, then the
 * entries in the order they were written. */
static entry_t *archive_entry(build_t *b, size_t i, const char **name) {
  if (i == 0) {
    *name = PKG_MANIFEST_ENTRY;
    return &b->manifest;
  }
  *name = b->entries[i - 1].name;
  return &b->entries[i - 1];
}

static pkgzo_entry_t zip_entry(const entry_t *e, const char *name) {
  pkgzo_entry_t z = {.name = name, .crc32 = e->crc32, .size = e->size,
                     .comp_size = e->comp_size, .offset = e->zip_offset};
  return z;
}

static bool zip_local(pkgzo_t *z, build_t *b, size_t i, fzip_error_t *error) {
  const char *name = NULL;
  entry_t *e = archive_entry(b, i, &name);
  spool_range_t r = {.spool = b->spool[e->spool], .offset = e->offset};
  pkgzo_entry_t ze = zip_entry(e, name);

  if (!pkgzo_local(z, &ze, spool_read, &r, error))
    return fzip_error_prefix(error, "zip entry %s", name);
  e->zip_offset = ze.offset;
  return true;
}

static bool zip_central(pkgzo_t *z, build_t *b, size_t i, fzip_error_t *error) {
  const char *name = NULL;
  const entry_t *e = archive_entry(b, i, &name);
  pkgzo_entry_t ze = zip_entry(e, name);
  return pkgzo_central(z, &ze, error);
}

/* The package, front to back, from the spools (pkg_zipout: the entries'
 * deflated bytes copied as they are) into o's sink, in the fixed order of
 * FORMAT.md section 1 with manifest.json first. */
static bool write_zip(build_t *b, package_out_t *o, pkg_phase_t phase, const char *name,
                      fzip_error_t *error) {
  pkgzo_t *z = NULL;
  size_t n = b->n_entries + 1;
  bool ok = false;

  for (int i = 0; i < SPOOL_COUNT; i++) {
    if (b->spool[i] && fflush(b->spool[i]) != 0)
      return sys_error(error, "writing the spool in", b->dir);
  }
  o->expected = b->manifest.comp_size;
  for (size_t i = 0; i < b->n_entries; i++)
    o->expected += b->entries[i].comp_size;
  b->prog.bytes_done = 0;
  b->next_bytes = 0; /* tick polls at the first write */
  set_phase(b, phase, name);
  if (!pkgzo_new(&z, package_sink, o, error))
    return false;
  for (size_t i = 0; i < n; i++) {
    if (!zip_local(z, b, i, error))
      goto done;
  }
  for (size_t i = 0; i < n; i++) {
    if (!zip_central(z, b, i, error))
      goto done;
  }
  if (!pkgzo_end(z, error))
    goto done;
  b->res.entries = n;
  b->res.package_size = b->prog.bytes_done;
  if (o->hash)
    fzip_sha256_final_hex(o->hash, b->res.package_sha256);
  ok = true;
done:
  pkgzo_destroy(z);
  return ok;
}

/* ---- driver ---------------------------------------------------------- */

static const char *temp_root(const pkg_options_t *opt) { return fzip_tmp_root(opt->temp_dir); }

static void build_free(build_t *b) {
  char path[PATH_MAX];
  for (size_t i = 0; i < b->n_entries; i++)
    free(b->entries[i].name);
  for (int i = 0; i < SPOOL_COUNT; i++) {
    if (!b->spool[i])
      continue;
    fclose(b->spool[i]);
    b->spool[i] = NULL;
    spool_path(path, b, i);
    unlink(path);
  }
  if (b->dir[0])
    rmdir(b->dir);
  for (size_t i = 0; i < b->n_files; i++) {
    free(b->files[i].file_id);
    free(b->files[i].file_name);
    free(b->files[i].blob_id);
  }
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    pkg_strset_free(&b->included[k]);
    pkg_strset_free(&b->referenced[k]);
  }
  pkg_strset_free(&b->missing_files);
  pkg_csv_destroy(b->csv);
  free(b->entries);
  free(b->files);
}

/* Steps 1 to 3: every entry deflated into the spools, the manifest last. */
static bool build_run(build_t *b, fzip_error_t *error) {
  const char *root = temp_root(b->opt);
  uint64_t total = 0;

  if (!read_changes(b, error) || !pkg_count(&total, b->source, b->sel, error))
    return false;
  b->prog.items_total = total;
  if ((size_t)snprintf(b->dir, sizeof b->dir, "%s/fzip-pkg-XXXXXX", root) >= sizeof b->dir)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INVALID_ARGUMENT, "temp dir too long");
  if (!mkdtemp(b->dir)) {
    sys_error(error, "creating temp dir in", root);
    b->dir[0] = '\0';
    return false;
  }
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    if (b->plan.include[k] && !write_kind(b, (fzip_kind_t)k, error))
      return false;
  }
  if (b->sel->incremental && !write_deletions(b, error))
    return false;
  if (b->plan.files && !write_files(b, error))
    return false;
  return write_manifest(b, error);
}

/* The compression threads and the spools' streams; they outlive a build
 * that starts over, and are released by the caller.  A stream allocates
 * its blocks at its first entry: those only files use cost nothing in an
 * export without files. */
static bool deflate_open(pkg_deflate_pool_t **pool, build_t *b, fzip_error_t *error) {
  if (!pkg_deflate_pool_new(pool, b->opt->compress_threads, PKG_COMPRESSION_LEVEL, error))
    return false;
  for (int i = 0; i < SPOOL_COUNT; i++) {
    if (!pkg_deflate_new(&b->deflate[i], *pool, error))
      return false;
  }
  return true;
}

/* Builds from one consistent read of the source (read_begin/read_end):
 * a source that says its reads were not consistent makes the build start
 * over, at most PKG_READ_ATTEMPTS times.  Nothing has gone to the sink
 * yet: the zip is written only from a consistent build's spools. */
static bool build_consistent(build_t *b, fzip_error_t *error) {
  const pkg_source_ops_t *src = b->source->ops;
  const build_t fresh = *b; /* nothing allocated yet */

  for (int attempt = 1;; attempt++) {
    fzip_error_t end_err = {0};
    bool built;

    if (src->read_begin && !src->read_begin(b->source->ctx, error))
      return false;
    built = build_run(b, error);
    if (!src->read_end || src->read_end(b->source->ctx, &end_err) || !built)
      return built;
    if (end_err.code != FZIP_ERR_ABORTED) {
      *error = end_err;
      return false;
    }
    if (attempt >= PKG_READ_ATTEMPTS) {
      *error = end_err;
      return fzip_error_prefix(error, "no consistent read of the user's data after %d attempts",
                               attempt);
    }
    build_free(b);
    *b = fresh;
  }
}

/* Builds the package and writes it to `sink` in zip phase `phase`
 * (progress entry `name`); *result gets its size, and its sha256 if
 * `hash` (else the sha256 is empty). */
static bool write_package(pkg_result_t *result, const pkg_source_t *source, const char *user_id,
                          const pkg_selection_t *selection, const pkg_options_t *options,
                          pkg_sink_fn sink, void *sink_ctx, pkg_phase_t phase, const char *name,
                          bool hash, fzip_error_t *error) {
  static const pkg_options_t no_options;
  build_t *b = calloc(1, sizeof *b);
  pkg_deflate_pool_t *pool = NULL;
  package_out_t out = {.sink = sink, .sink_ctx = sink_ctx};
  bool ok = false;

  if (!b)
    return oom(error);
  out.b = b;
  b->source = source;
  b->user_id = user_id;
  b->sel = selection;
  b->opt = options ? options : &no_options;
  b->res.export_timestamp_ms = b->opt->export_timestamp_ms ? b->opt->export_timestamp_ms
                                                           : fzip_now_ms();
  if (!pkg_selection_check(selection, error) || !base_check(selection, error))
    goto done;
  if (hash && !(out.hash = fzip_sha256_new())) {
    oom(error);
    goto done;
  }
  plan_make(&b->plan, selection);
  if (!deflate_open(&pool, b, error) || !build_consistent(b, error) ||
      !write_zip(b, &out, phase, name, error))
    goto done;
  set_phase(b, PKG_PHASE_DONE, NULL);
  if (!tick(b, true, error))
    goto done;
  if (result)
    *result = b->res;
  ok = true;
done:
  build_free(b);
  for (int i = 0; i < SPOOL_COUNT; i++)
    pkg_deflate_destroy(b->deflate[i]);
  pkg_deflate_pool_destroy(pool);
  fzip_sha256_destroy(out.hash);
  free(b);
  return ok;
}

static bool file_sink(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  if (fwrite(data, 1, len, ctx) != len)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "writing the package: %s",
                          strerror(errno));
  return true;
}

/* Written to PATH.XXXXXX beside it and renamed over it once whole, so
 * that a failed write leaves an existing file as it was. */
bool pkg_write_file(pkg_result_t *result, const pkg_source_t *source, const char *user_id,
                    const pkg_selection_t *selection, const pkg_options_t *options,
                    const char *path, fzip_error_t *error) {
  char tmp[PATH_MAX];
  FILE *f = NULL;
  int fd;
  bool ok = false;

  if ((size_t)snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= sizeof tmp)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INVALID_ARGUMENT,
                          "package path too long");
  if ((fd = mkstemp(tmp)) < 0)
    return sys_error(error, "creating", tmp);
  if (fchmod(fd, 0644) != 0 || !(f = fdopen(fd, "wb"))) {
    sys_error(error, "opening", tmp);
    close(fd);
    goto done;
  }
  if (!write_package(result, source, user_id, selection, options, file_sink, f,
                     PKG_PHASE_COMPRESSING, path, true, error))
    goto done;
  if (fclose(f) != 0) {
    f = NULL;
    sys_error(error, "writing", tmp);
    goto done;
  }
  f = NULL;
  if (rename(tmp, path) != 0) {
    sys_error(error, "renaming the package to", path);
    goto done;
  }
  ok = true;
done:
  if (f)
    fclose(f);
  if (!ok)
    unlink(tmp);
  return ok;
}

bool pkg_write_stream(pkg_result_t *result, const pkg_source_t *source, const char *user_id,
                      const pkg_selection_t *selection, const pkg_options_t *options,
                      pkg_sink_fn sink, void *sink_ctx, const char *sink_name,
                      fzip_error_t *error) {
  return write_package(result, source, user_id, selection, options, sink, sink_ctx,
                       PKG_PHASE_UPLOADING, sink_name, false, error);
}
