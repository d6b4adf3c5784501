/*
 * test_pkg_apply: pkg_apply (`fzip package apply`) on packages the real
 * pkg_writer writes from a source of the test's own.
 *
 * The test keeps one user's data as a small in-memory state that it
 * changes step by step.  A complete package is the writer's output over
 * the whole state; an increment is the writer's output over what changed
 * since the previous package, made incremental the way FORMAT.md 15 says
 * (the manifest's "incremental" object, data/deletions.json and its
 * checksum) by rewriting the manifest with libzip.  The oracle is a
 * complete package of the final state with the last increment's
 * timestamp: apply(base, chain) must equal it byte for byte.  Refusals
 * must leave an existing output untouched and no temporary file behind.
 */
#include "pkg_apply.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

#include "fzip_test.h"
#include "pkg_json.h"
#include "pkg_jsonread.h"
#include "pkg_reader.h"
#include "pkg_writer.h"

#define USER "apply-user"
#define T0 1700000000000LL
#define DAY_MS 86400000LL
#define RECS_MAX 64
#define BUF_MAX (1024 * 1024)

static char tmpdir[256];

/* ---- the user's data ---------------------------------------------------- */

typedef struct {
  fzip_kind_t kind;
  char id[64];
  bson_t *doc;       /* with s3Key when bytes is set (transaction files) */
  const char *bytes; /* a transaction file's bytes, NULL: none stored */
  bool present;      /* false: deleted */
  bool changed;      /* since the last package */
} rec_t;

typedef struct {
  rec_t recs[RECS_MAX];
  size_t n;
} state_t;

static int rec_cmp(const void *a, const void *b) {
  const rec_t *x = a, *y = b;
  return x->kind != y->kind ? (int)x->kind - (int)y->kind : strcmp(x->id, y->id);
}

static rec_t *rec_find(state_t *s, fzip_kind_t kind, const char *id) {
  for (size_t i = 0; i < s->n; i++) {
    if (s->recs[i].kind == kind && strcmp(s->recs[i].id, id) == 0)
      return &s->recs[i];
  }
  return NULL;
}

/* Adds or rewrites an entity; `body` is the JSON members after its id. */
static void put(state_t *s, fzip_kind_t kind, const char *id, const char *body,
                const char *bytes) {
  const fzip_kind_info_t *info = fzip_kind_info(kind);
  char json[1024];
  bson_error_t be;
  rec_t *r = rec_find(s, kind, id);
  if (!r) {
    r = &s->recs[s->n++];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    snprintf(r->id, sizeof r->id, "%s", id);
  }
  if (r->doc)
    bson_destroy(r->doc);
  snprintf(json, sizeof json, "{\"%s\":\"%s\",\"userId\":\"" USER "\"%s%s%s%s%s}", info->id_field,
           id, body[0] ? "," : "", body, bytes ? ",\"s3Key\":\"blob/" : "", bytes ? id : "",
           bytes ? "\"" : "");
  r->doc = bson_new_from_json((const uint8_t *)json, -1, &be);
  if (!r->doc) {
    fprintf(stderr, "bad fixture JSON %s: %s\n", json, be.message);
    abort();
  }
  r->bytes = bytes;
  r->present = r->changed = true;
  qsort(s->recs, s->n, sizeof s->recs[0], rec_cmp);
}

static void del(state_t *s, fzip_kind_t kind, const char *id) {
  rec_t *r = rec_find(s, kind, id);
  if (r) {
    r->present = false;
    r->changed = true;
  }
}

static void settle(state_t *s) {
  for (size_t i = 0; i < s->n; i++)
    s->recs[i].changed = false;
}

static void state_free(state_t *s) {
  for (size_t i = 0; i < s->n; i++)
    bson_destroy(s->recs[i].doc);
  s->n = 0;
}

/* ---- the state as a pkg_source_t --------------------------------------- */

typedef struct {
  state_t *s;
  bool changed_only;
  bool reversed; /* entities in descending id order: a broken package */
} view_t;

typedef struct {
  view_t *v;
  fzip_kind_t kind;
  size_t next;
} view_cursor_t;

typedef struct {
  const char *bytes;
  size_t off;
} view_file_t;

static bool view_has(const view_t *v, const rec_t *r) {
  return r->present && (!v->changed_only || r->changed);
}

static bool view_count(void *ctx, uint64_t *n, fzip_kind_t kind, const pkg_filter_t *filter,
                       fzip_error_t *error) {
  view_t *v = ctx;
  *n = 0;
  for (size_t i = 0; i < v->s->n; i++)
    *n += v->s->recs[i].kind == kind && view_has(v, &v->s->recs[i]);
  return true;
}

static bool view_cursor_open(void *ctx, void **cursor, fzip_kind_t kind,
                             const pkg_filter_t *filter, fzip_error_t *error) {
  view_cursor_t *c = calloc(1, sizeof *c);
  if (!c)
    return fzip_error_oom(error, "test cursor");
  c->v = ctx;
  c->kind = kind;
  *cursor = c;
  return true;
}

static bool view_cursor_next(void *cursor, const bson_t **doc, fzip_error_t *error) {
  view_cursor_t *c = cursor;
  const state_t *s = c->v->s;
  for (; c->next < s->n; c->next++) {
    const rec_t *r = &s->recs[c->v->reversed ? s->n - 1 - c->next : c->next];
    if (r->kind == c->kind && view_has(c->v, r)) {
      c->next++;
      *doc = r->doc;
      return true;
    }
  }
  return false;
}

static void view_close(void *handle) {
  free(handle);
}

static bool view_file_open(void *ctx, void **file, const char *location, fzip_error_t *error) {
  view_t *v = ctx;
  rec_t *r = rec_find(v->s, FZIP_KIND_TRANSACTION_FILE, location + strlen("blob/"));
  view_file_t *f;
  *file = NULL;
  if (!r || !r->bytes)
    return true;
  if (!(f = calloc(1, sizeof *f)))
    return fzip_error_oom(error, "test file");
  f->bytes = r->bytes;
  *file = f;
  return true;
}

static bool view_file_read(void *file, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  view_file_t *f = file;
  size_t left = strlen(f->bytes + f->off);
  *n = left < cap ? left : cap;
  memcpy(buf, f->bytes + f->off, *n);
  f->off += *n;
  return true;
}

static const pkg_source_ops_t view_ops = {
    .count = view_count,
    .cursor_open = view_cursor_open,
    .cursor_next = view_cursor_next,
    .cursor_close = view_close,
    .file_open = view_file_open,
    .file_read = view_file_read,
    .file_close = view_close,
};

static const pkg_selection_t with_analytics = {.export_type = PKG_EXPORT_COMPLETE,
                                               .include_analytics = true};

static void path_of(char out[512], const char *name) {
  snprintf(out, 512, "%s/%s", tmpdir, name);
}

/* A complete package of the whole state at `ts`; sha256 to *sha. */
static bool write_complete(char sha[FZIP_SHA256_HEX_LEN + 1], state_t *s, int64_t ts,
                           const char *name, fzip_error_t *error) {
  view_t v = {s, false, false};
  pkg_source_t src = {&view_ops, &v};
  pkg_options_t opt = {.export_timestamp_ms = ts, .temp_dir = tmpdir};
  pkg_result_t res;
  char path[512];
  path_of(path, name);
  if (!pkg_write_file(&res, &src, USER, &with_analytics, &opt, path, error))
    return false;
  memcpy(sha, res.package_sha256, FZIP_SHA256_HEX_LEN + 1);
  return true;
}

/* ---- increments --------------------------------------------------------- */

typedef struct {
  const char *base_sha;
  int64_t chain_length, base_seq, seq;
  bool unsorted_deletions; /* write deletions.json out of order */
  bool no_deletions;       /* leave data/deletions.json out */
  bool no_analytics;       /* a selection that differs from the base's */
  bool reversed;           /* entities out of id order */
  const char *also_delete; /* list this changed, present id as deleted too */
} inc_opts_t;

typedef struct {
  char *data;
  size_t len;
} buf_t;

static bool buf_sink(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  buf_t *b = ctx;
  if (b->len + len > BUF_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_RESOURCE_EXHAUSTED, "test buffer");
  memcpy(b->data + b->len, data, len);
  b->len += len;
  return true;
}

static bool buf_read(void *ctx, void *out, size_t cap, size_t *n, fzip_error_t *error) {
  buf_t *b = ctx;
  *n = b->len < cap ? b->len : cap;
  memcpy(out, b->data, *n);
  b->data += *n;
  b->len -= *n;
  return true;
}

/* data/deletions.json of what was deleted since the last package. */
static void deletions_json(buf_t *out, const state_t *s, const inc_opts_t *o) {
  out->len = 0;
  buf_sink(out, "[", 1, NULL);
  for (size_t k = 0; k < s->n; k++) {
    size_t i = o->unsorted_deletions ? s->n - 1 - k : k;
    const rec_t *r = &s->recs[i];
    char line[160];
    bool also = o->also_delete && strcmp(r->id, o->also_delete) == 0;
    if (!r->changed || (r->present && !also))
      continue;
    snprintf(line, sizeof line, "%s{\"kind\":\"%s\",\"id\":\"%s\"}", out->len > 1 ? "," : "",
             fzip_kind_info(r->kind)->name, r->id);
    buf_sink(out, line, strlen(line), NULL);
  }
  buf_sink(out, "]\n", 2, NULL);
}

/* The manifest with the "incremental" object and the deletions checksum. */
static bool manifest_incremental(buf_t *out, buf_t in, const char *del_sha, const inc_opts_t *o,
                                 fzip_error_t *error) {
  pkgjr_reader_t *jr = pkgjr_reader_new(buf_read, &in, NULL);
  pkgjson_writer_t *w = pkgjson_writer_new(buf_sink, out);
  bson_t *m = bson_new(), *n = bson_new(), sub, inc;
  bson_iter_t it, c;
  char v[80];
  bool ok = false;

  if (!jr || !w || !pkgjr_read_document(m, jr, error))
    goto done;
  bson_iter_init(&it, m);
  while (bson_iter_next(&it)) {
    if (strcmp(bson_iter_key(&it), "checksums") != 0 || o->no_deletions) {
      bson_append_iter(n, NULL, 0, &it);
      continue;
    }
    bson_append_document_begin(n, "checksums", -1, &sub);
    bson_iter_recurse(&it, &c);
    while (bson_iter_next(&c))
      bson_append_iter(&sub, NULL, 0, &c);
    snprintf(v, sizeof v, "sha256:%s", del_sha);
    BSON_APPEND_UTF8(&sub, PKG_DELETIONS_ENTRY, v);
    bson_append_document_end(n, &sub);
  }
  bson_append_document_begin(n, PKG_INCREMENTAL_KEY, -1, &inc);
  BSON_APPEND_UTF8(&inc, "base_export_id", "base-export");
  BSON_APPEND_UTF8(&inc, "base_package_sha256", o->base_sha);
  BSON_APPEND_INT64(&inc, "base_change_seq", o->base_seq);
  BSON_APPEND_INT64(&inc, "change_seq", o->seq);
  BSON_APPEND_INT64(&inc, "chain_length", o->chain_length);
  bson_append_document_end(n, &inc);
  ok = pkgjson_write_document(w, n, error) && pkgjson_write_raw(w, "\n", 1, error) &&
       pkgjson_flush(w, error);
done:
  pkgjr_reader_destroy(jr);
  pkgjson_writer_destroy(w);
  bson_destroy(m);
  bson_destroy(n);
  return ok;
}

static bool zip_entry(buf_t *out, zip_t *za, const char *name) {
  zip_stat_t st;
  zip_file_t *f;
  bool ok;
  if (zip_stat(za, name, 0, &st) != 0 || st.size > BUF_MAX || !(f = zip_fopen(za, name, 0)))
    return false;
  ok = zip_fread(f, out->data, st.size) == (zip_int64_t)st.size;
  out->len = (size_t)st.size;
  zip_fclose(f);
  return ok;
}

/* Replaces or adds `name` with a copy of buf. */
static bool zip_put(zip_t *za, const char *name, const buf_t *b) {
  void *copy = malloc(b->len ? b->len : 1);
  zip_source_t *src;
  memcpy(copy, b->data, b->len);
  if (!(src = zip_source_buffer(za, copy, b->len, 1))) {
    free(copy);
    return false;
  }
  if (zip_file_add(za, name, src, ZIP_FL_OVERWRITE | ZIP_FL_ENC_UTF_8) < 0) {
    zip_source_free(src);
    return false;
  }
  return true;
}

static bool file_sha(char sha[FZIP_SHA256_HEX_LEN + 1], const char *path) {
  FILE *f = fopen(path, "rb");
  fzip_sha256_t *h = fzip_sha256_new();
  char chunk[4096];
  size_t n;
  if (!f || !h) {
    if (f)
      fclose(f);
    fzip_sha256_destroy(h);
    return false;
  }
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    fzip_sha256_update(h, chunk, n);
  fclose(f);
  fzip_sha256_final_hex(h, sha);
  fzip_sha256_destroy(h);
  return true;
}

/* An increment of what changed in the state since the last package, at
 * `ts`; the state is then settled.  sha256 of the file to *sha. */
static bool write_increment(char sha[FZIP_SHA256_HEX_LEN + 1], state_t *s, int64_t ts,
                            const char *name, const inc_opts_t *o, fzip_error_t *error) {
  view_t v = {s, true, o->reversed};
  pkg_source_t src = {&view_ops, &v};
  pkg_options_t opt = {.export_timestamp_ms = ts, .temp_dir = tmpdir};
  pkg_selection_t sel = with_analytics;
  buf_t man = {malloc(BUF_MAX), 0}, dels = {malloc(BUF_MAX), 0}, out = {malloc(BUF_MAX), 0};
  char path[512], del_sha[FZIP_SHA256_HEX_LEN + 1];
  zip_t *za = NULL;
  bool ok = false;

  path_of(path, name);
  sel.include_analytics = !o->no_analytics;
  if (!pkg_write_file(NULL, &src, USER, &sel, &opt, path, error))
    goto done;
  deletions_json(&dels, s, o);
  fzip_sha256_hex(del_sha, dels.data, dels.len);
  if (!(za = zip_open(path, 0, NULL)) || !zip_entry(&man, za, PKG_MANIFEST_ENTRY) ||
      !manifest_incremental(&out, man, del_sha, o, error) ||
      !zip_put(za, PKG_MANIFEST_ENTRY, &out) ||
      (!o->no_deletions && !zip_put(za, PKG_DELETIONS_ENTRY, &dels))) {
    if (!fzip_error_is_set(error))
      fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INTERNAL, "making %s", name);
    goto done;
  }
  ok = zip_close(za) == 0 && file_sha(sha, path);
  za = NULL;
  settle(s);
done:
  if (za)
    zip_discard(za);
  free(man.data);
  free(dels.data);
  free(out.data);
  return ok;
}

/* ---- the chain used by most tests --------------------------------------- */

typedef struct {
  char base[FZIP_SHA256_HEX_LEN + 1], inc1[FZIP_SHA256_HEX_LEN + 1],
      inc2[FZIP_SHA256_HEX_LEN + 1], full1[FZIP_SHA256_HEX_LEN + 1],
      full2[FZIP_SHA256_HEX_LEN + 1];
} chain_shas_t;

#define TX "\"accountId\":\"acc-1\",\"amount\":\"%s\",\"date\":%d" /* a literal, checked by -Wformat */

static void put_tx(state_t *s, const char *id, const char *amount, int date) {
  char body[256];
  snprintf(body, sizeof body, TX, amount, date);
  put(s, FZIP_KIND_TRANSACTION, id, body, NULL);
}

/* base.fzip (T0), inc1.fzip (T0 + 1 day), inc2.fzip (T0 + 2 days) and the
 * oracles full1.fzip / full2.fzip: complete packages of the state at the
 * increments' moments with their timestamps. */
static bool make_chain(chain_shas_t *c, fzip_error_t *error) {
  state_t s = {0};
  inc_opts_t o1 = {.chain_length = 1, .base_seq = 10, .seq = 20};
  inc_opts_t o2 = {.chain_length = 2, .base_seq = 20, .seq = 30};
  bool ok = false;

  put(&s, FZIP_KIND_ACCOUNT, "acc-1", "\"accountName\":\"Checking\"", NULL);
  put(&s, FZIP_KIND_ACCOUNT, "acc-2", "\"accountName\":\"Savings\"", NULL);
  put(&s, FZIP_KIND_CATEGORY, "cat-1", "\"name\":\"Food\"", NULL);
  put(&s, FZIP_KIND_TRANSACTION_FILE, "file-1", "\"accountId\":\"acc-1\",\"fileName\":\"a.csv\"",
      "old bytes of file 1\n");
  put(&s, FZIP_KIND_TRANSACTION_FILE, "file-2", "\"accountId\":\"acc-1\",\"fileName\":\"b.ofx\"",
      "bytes of file 2, never changed\n");
  put(&s, FZIP_KIND_TRANSACTION_FILE, "file-4", "\"accountId\":\"acc-2\",\"fileName\":\"d.csv\"",
      "bytes of file 4, deleted later\n");
  for (int i = 1; i <= 5; i++) {
    char id[16];
    snprintf(id, sizeof id, "tx-%d", i);
    put_tx(&s, id, "10.00", 20240100 + i);
  }
  put(&s, FZIP_KIND_ANALYTICS, "an-1", "\"accountId\":\"acc-1\",\"value\":1", NULL);
  if (!write_complete(c->base, &s, T0, "base.fzip", error))
    goto done;
  settle(&s);

  /* inc1: changes, an addition, deletions (one of an account), new bytes */
  put_tx(&s, "tx-2", "-22.50", 20240102);
  put_tx(&s, "tx-6", "6.00", 20240106);
  del(&s, FZIP_KIND_TRANSACTION, "tx-3");
  del(&s, FZIP_KIND_ACCOUNT, "acc-2");
  del(&s, FZIP_KIND_TRANSACTION_FILE, "file-4");
  put(&s, FZIP_KIND_TRANSACTION_FILE, "file-1", "\"accountId\":\"acc-1\",\"fileName\":\"a2.csv\"",
      "new bytes of file 1\n");
  if (!write_complete(c->full1, &s, T0 + DAY_MS, "full1.fzip", error))
    goto done;
  o1.base_sha = c->base;
  if (!write_increment(c->inc1, &s, T0 + DAY_MS, "inc1.fzip", &o1, error))
    goto done;

  /* inc2: a deleted id comes back, an added one goes, a file without bytes */
  put_tx(&s, "tx-3", "33.00", 20240103);
  del(&s, FZIP_KIND_TRANSACTION, "tx-6");
  put_tx(&s, "tx-2", "-23.00", 20240102);
  put(&s, FZIP_KIND_TRANSACTION_FILE, "file-3", "\"accountId\":\"acc-1\",\"fileName\":\"c.csv\"",
      NULL);
  put(&s, FZIP_KIND_ANALYTICS, "an-2", "\"accountId\":\"acc-1\",\"value\":2", NULL);
  if (!write_complete(c->full2, &s, T0 + 2 * DAY_MS, "full2.fzip", error))
    goto done;
  o2.base_sha = c->inc1;
  if (!write_increment(c->inc2, &s, T0 + 2 * DAY_MS, "inc2.fzip", &o2, error))
    goto done;
  ok = true;
done:
  state_free(&s);
  return ok;
}

static chain_shas_t chain;

/* Applies the named packages of tmpdir (each with its true sha256 unless
 * `shas` gives them) to `out`. */
static bool apply(pkga_result_t *res, const char *out, const char *const *names, size_t n,
                  const char *const *shas, fzip_error_t *error) {
  char paths[8][512], real[8][FZIP_SHA256_HEX_LEN + 1], out_path[512];
  pkga_input_t in[8];
  pkga_options_t opt = {.temp_dir = tmpdir};
  for (size_t i = 0; i < n; i++) {
    path_of(paths[i], names[i]);
    if (!file_sha(real[i], paths[i]))
      return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_NOT_FOUND, "no %s", names[i]);
    in[i] = (pkga_input_t){paths[i], names[i], shas && shas[i] ? shas[i] : real[i]};
  }
  path_of(out_path, out);
  return pkga_apply(res, in, n, out_path, &opt, error);
}

static bool out_sha_is(const char *out, const char *want) {
  char path[512], sha[FZIP_SHA256_HEX_LEN + 1];
  path_of(path, out);
  return file_sha(sha, path) && strcmp(sha, want) == 0;
}

/* ---- tests --------------------------------------------------------------- */

static void test_chain_applies_to_the_complete_export_of_its_moment(void) {
  fzip_error_t err = {0};
  pkga_result_t res;
  const char *const two[] = {"base.fzip", "inc1.fzip", "inc2.fzip"};
  const char *const one[] = {"base.fzip", "inc1.fzip"};

  CHECK_OK(apply(&res, "applied2.fzip", two, 3, NULL, &err), err);
  CHECK(out_sha_is("applied2.fzip", chain.full2));
  CHECK(strcmp(res.package.package_sha256, chain.full2) == 0);
  CHECK(res.package.files_count == 2 && res.package.files_missing == 1);
  CHECK(res.package.counts[FZIP_KIND_TRANSACTION] == 5 && res.package.counts[FZIP_KIND_ACCOUNT] == 1);
  CHECK(res.entities_deleted == 3); /* acc-2, file-4, tx-6 (tx-3 came back) */
  CHECK_OK(apply(&res, "applied1.fzip", one, 2, NULL, &err), err);
  CHECK(out_sha_is("applied1.fzip", chain.full1));
}

static void test_applied_package_is_a_base_for_nothing_else(void) {
  /* The applied file is a new complete package: inc2 names inc1 as its
   * base, so applied1 + inc2 does not link. */
  fzip_error_t err = {0};
  const char *const names[] = {"applied1.fzip", "inc2.fzip"};
  CHECK_FAILS(apply(NULL, "x.fzip", names, 2, NULL, &err), err, FZIP_ERR_FAILED_PRECONDITION);
  CHECK(strstr(err.message, "inc2.fzip is not an increment of applied1.fzip"));
}

static bool file_is(const char *name, const char *content) {
  char path[512], got[64] = {0};
  FILE *f;
  path_of(path, name);
  if (!(f = fopen(path, "rb")))
    return false;
  size_t n = fread(got, 1, sizeof got - 1, f);
  fclose(f);
  return n == strlen(content) && memcmp(got, content, n) == 0;
}

/* Nothing but the test's own files: no ".out.fzip.XXXXXX" left over. */
static bool no_temp_left(void) {
  DIR *d = opendir(tmpdir);
  struct dirent *e;
  bool clean = true;
  while (d && (e = readdir(d)))
    clean = clean && strncmp(e->d_name, ".out.fzip.", 10) != 0;
  if (d)
    closedir(d);
  return clean;
}

/* Runs a refused apply onto out.fzip, which holds "old" before and after. */
static bool refused(const char *const *names, size_t n, const char *const *shas, int want_code,
                    const char *want_text) {
  fzip_error_t err = {0};
  char path[512];
  FILE *f;
  path_of(path, "out.fzip");
  if (!(f = fopen(path, "wb")) || fputs("old", f) < 0 || fclose(f) != 0)
    return false;
  if (apply(NULL, "out.fzip", names, n, shas, &err)) {
    fprintf(stderr, "  apply unexpectedly succeeded\n");
    return false;
  }
  if (err.code != (uint32_t)want_code || !strstr(err.message, want_text)) {
    fprintf(stderr, "  got [%s] %s\n", fzip_code_name((fzip_code_t)err.code), err.message);
    return false;
  }
  return file_is("out.fzip", "old") && no_temp_left();
}

static void test_refuses_an_increment_alone_or_first(void) {
  const char *const alone[] = {"inc1.fzip"};
  const char *const first[] = {"inc1.fzip", "inc2.fzip"};
  CHECK(refused(alone, 1, NULL, FZIP_ERR_INVALID_ARGUMENT, "(1 package(s) given)"));
  CHECK(refused(first, 2, NULL, FZIP_ERR_FAILED_PRECONDITION,
                "inc1.fzip is an increment: the first package must be a complete one"));
}

static void test_refuses_wrong_order_and_missing_link(void) {
  const char *const order[] = {"base.fzip", "inc2.fzip", "inc1.fzip"};
  const char *const gap[] = {"base.fzip", "inc2.fzip"};
  const char *const twice[] = {"base.fzip", "base.fzip"};
  CHECK(refused(order, 3, NULL, FZIP_ERR_FAILED_PRECONDITION,
                "inc2.fzip is not an increment of base.fzip"));
  CHECK(refused(gap, 2, NULL, FZIP_ERR_FAILED_PRECONDITION,
                "inc2.fzip is not an increment of base.fzip"));
  CHECK(refused(twice, 2, NULL, FZIP_ERR_FAILED_PRECONDITION,
                "base.fzip is a complete package, not an increment of base.fzip"));
}

static void test_refuses_a_base_whose_sha256_differs(void) {
  /* As if the user gave another file by the base's name: the chain checks
   * the sha256 of the file as given, not what its manifest claims. */
  const char *const names[] = {"base.fzip", "inc1.fzip"};
  const char *const shas[] = {chain.full1, NULL};
  CHECK(refused(names, 2, shas, FZIP_ERR_FAILED_PRECONDITION,
                "inc1.fzip is not an increment of base.fzip"));
}

/* Copies inc1.fzip to `name` with `find` in `entry` rewritten to `repl`
 * (same length; same manifest, so its checksum no longer matches). */
static bool tamper(const char *name, const char *entry, const char *find, const char *repl) {
  char src[512], dst[512], cmd[1200];
  zip_t *za;
  buf_t b = {malloc(BUF_MAX), 0};
  bool ok;
  path_of(src, "inc1.fzip");
  path_of(dst, name);
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, dst);
  if (system(cmd) != 0 || !(za = zip_open(dst, 0, NULL))) {
    free(b.data);
    return false;
  }
  ok = zip_entry(&b, za, entry) && b.len < BUF_MAX;
  if (ok) {
    char *hit;
    b.data[b.len] = '\0';
    if ((hit = strstr(b.data, find)))
      memcpy(hit, repl, strlen(repl));
    ok = hit && strlen(repl) == strlen(find) && zip_put(za, entry, &b);
  }
  ok = zip_close(za) == 0 && ok;
  free(b.data);
  return ok;
}

static void test_refuses_a_tampered_increment(void) {
  const char *const names[] = {"base.fzip", "tampered.fzip"};
  CHECK(tamper("tampered.fzip", "data/transactions.json", "-22.50", "-92.50"));
  CHECK(refused(names, 2, NULL, FZIP_ERR_DATA_LOSS, "tampered.fzip"));
}

/* A transaction file's bytes are checked as they are copied: the error
 * names the package, not only the entry. */
static void test_refuses_an_increment_with_tampered_file_bytes(void) {
  const char *const names[] = {"base.fzip", "tampered-file.fzip"};
  CHECK(tamper("tampered-file.fzip", "files/file-1/a2.csv", "new bytes", "NEW bytes"));
  CHECK(refused(names, 2, NULL, FZIP_ERR_DATA_LOSS, "tampered-file.fzip: files/file-1/a2.csv"));
}

static void test_refuses_increments_that_break_the_format(void) {
  fzip_error_t err = {0};
  state_t s = {0};
  char base[FZIP_SHA256_HEX_LEN + 1], sha[FZIP_SHA256_HEX_LEN + 1];
  inc_opts_t o = {.chain_length = 1, .base_seq = 1, .seq = 2};
  const char *const unsorted[] = {"b.fzip", "unsorted.fzip"};
  const char *const nodel[] = {"b.fzip", "nodel.fzip"};
  const char *const other[] = {"b.fzip", "other.fzip"};
  const char *const len2[] = {"b.fzip", "len2.fzip"};

  put_tx(&s, "tx-1", "1.00", 1);
  put_tx(&s, "tx-2", "2.00", 2);
  put(&s, FZIP_KIND_CATEGORY, "cat-1", "\"name\":\"x\"", NULL);
  CHECK_OK(write_complete(base, &s, T0, "b.fzip", &err), err);
  settle(&s);
  o.base_sha = base;
  del(&s, FZIP_KIND_TRANSACTION, "tx-1");
  del(&s, FZIP_KIND_TRANSACTION, "tx-2");
  del(&s, FZIP_KIND_CATEGORY, "cat-1");
  o.unsorted_deletions = true;
  CHECK_OK(write_increment(sha, &s, T0 + 1, "unsorted.fzip", &o, &err), err);
  o.unsorted_deletions = false;
  CHECK(refused(unsorted, 2, NULL, FZIP_ERR_INVALID_ARGUMENT, "out of order"));

  del(&s, FZIP_KIND_TRANSACTION, "tx-1");
  o.no_deletions = true;
  CHECK_OK(write_increment(sha, &s, T0 + 1, "nodel.fzip", &o, &err), err);
  o.no_deletions = false;
  CHECK(refused(nodel, 2, NULL, FZIP_ERR_INVALID_ARGUMENT, "manifest.incremental"));

  del(&s, FZIP_KIND_TRANSACTION, "tx-1");
  o.no_analytics = true;
  CHECK_OK(write_increment(sha, &s, T0 + 1, "other.fzip", &o, &err), err);
  o.no_analytics = false;
  CHECK(refused(other, 2, NULL, FZIP_ERR_FAILED_PRECONDITION,
                "data_summary.analytics_included differs"));

  del(&s, FZIP_KIND_TRANSACTION, "tx-1");
  o.chain_length = 2;
  CHECK_OK(write_increment(sha, &s, T0 + 1, "len2.fzip", &o, &err), err);
  CHECK(refused(len2, 2, NULL, FZIP_ERR_FAILED_PRECONDITION, "chain_length is 2, not 1"));
  state_free(&s);
}

static void test_an_increment_keeps_what_it_both_deletes_and_holds(void) {
  /* Deletions apply first within one increment: an id it lists as
   * deleted and also holds (deleted, then written again) is kept. */
  fzip_error_t err = {0};
  state_t s = {0};
  char base[FZIP_SHA256_HEX_LEN + 1], sha[FZIP_SHA256_HEX_LEN + 1], full[FZIP_SHA256_HEX_LEN + 1];
  inc_opts_t o = {.chain_length = 1, .base_seq = 1, .seq = 2, .also_delete = "tx-2"};
  const char *const names[] = {"kb.fzip", "kinc.fzip"};
  pkga_result_t res;

  put_tx(&s, "tx-1", "1.00", 1);
  put_tx(&s, "tx-2", "2.00", 2);
  CHECK_OK(write_complete(base, &s, T0, "kb.fzip", &err), err);
  settle(&s);
  o.base_sha = base;
  put_tx(&s, "tx-2", "2.50", 2);
  CHECK_OK(write_complete(full, &s, T0 + 1, "kfull.fzip", &err), err);
  CHECK_OK(write_increment(sha, &s, T0 + 1, "kinc.fzip", &o, &err), err);
  CHECK_OK(apply(&res, "kout.fzip", names, 2, NULL, &err), err);
  CHECK(out_sha_is("kout.fzip", full) && res.entities_deleted == 0 &&
        res.entities_replaced == 1);
  state_free(&s);
}

static void test_refuses_entities_out_of_id_order(void) {
  fzip_error_t err = {0};
  state_t s = {0};
  char base[FZIP_SHA256_HEX_LEN + 1], sha[FZIP_SHA256_HEX_LEN + 1];
  inc_opts_t o = {.chain_length = 1, .base_seq = 1, .seq = 2, .reversed = true};
  const char *const names[] = {"ob.fzip", "oinc.fzip"};

  put_tx(&s, "tx-1", "1.00", 1);
  CHECK_OK(write_complete(base, &s, T0, "ob.fzip", &err), err);
  settle(&s);
  o.base_sha = base;
  put_tx(&s, "tx-2", "2.00", 2);
  put_tx(&s, "tx-3", "3.00", 3);
  CHECK_OK(write_increment(sha, &s, T0 + 1, "oinc.fzip", &o, &err), err);
  CHECK(refused(names, 2, NULL, FZIP_ERR_FAILED_PRECONDITION,
                "oinc.fzip: transactions after id tx-3"));
  state_free(&s);
}

static void test_reader_keeps_deletions_to_increments(void) {
  /* A complete package with data/deletions.json is two formats mixed. */
  fzip_error_t err = {0};
  char path[512];
  zip_t *za;
  char empty[] = "[]\n";
  buf_t b = {empty, 3};
  pkgr_t *r = NULL;
  path_of(path, "full1.fzip");
  char cmd[1200], dst[512];
  path_of(dst, "mixed.fzip");
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, dst);
  CHECK(system(cmd) == 0 && (za = zip_open(dst, 0, NULL)));
  CHECK(zip_put(za, PKG_DELETIONS_ENTRY, &b) && zip_close(za) == 0);
  CHECK_FAILS(pkgr_open(&r, dst, NULL, NULL, NULL, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  path_of(path, "inc2.fzip");
  CHECK_OK(pkgr_open(&r, path, NULL, NULL, NULL, &err), err);
  CHECK(pkgr_info(r)->incremental && pkgr_info(r)->chain_length == 2 &&
        pkgr_info(r)->base_change_seq == 20 && pkgr_info(r)->change_seq == 30 &&
        strcmp(pkgr_info(r)->base_package_sha256, chain.inc1) == 0);
  pkgr_destroy(r);
}

int main(void) {
  fzip_error_t err = {0};
  char cmd[300];
  snprintf(tmpdir, sizeof tmpdir, "/tmp/test_pkg_apply.XXXXXX");
  if (!mkdtemp(tmpdir))
    return 1;
  if (!make_chain(&chain, &err)) {
    fprintf(stderr, "making the chain: %s\n", err.message);
    return 1;
  }
  RUN(test_chain_applies_to_the_complete_export_of_its_moment);
  RUN(test_applied_package_is_a_base_for_nothing_else);
  RUN(test_refuses_an_increment_alone_or_first);
  RUN(test_refuses_wrong_order_and_missing_link);
  RUN(test_refuses_a_base_whose_sha256_differs);
  RUN(test_refuses_a_tampered_increment);
  RUN(test_refuses_an_increment_with_tampered_file_bytes);
  RUN(test_refuses_increments_that_break_the_format);
  RUN(test_an_increment_keeps_what_it_both_deletes_and_holds);
  RUN(test_refuses_entities_out_of_id_order);
  RUN(test_reader_keeps_deletions_to_increments);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmpdir);
  return fzip_test_summary();
}
