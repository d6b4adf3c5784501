/*
 * pkg_apply: see pkg_apply.h.
 *
 * The chain becomes a pkg_source_t for pkg_write_file: the writer asks for
 * each kind's entities in id order and gets them from a merge cursor over
 * every package's stream of that kind and every increment's deletions of
 * it; for a transaction file record, the cursor adds an s3Key naming the
 * package that holds its bytes ("<index>/<fileId>"), which the writer
 * passes back to file_open and strips from what it writes, as it does a
 * store's.  The writer therefore composes manifest, data entries and files
 * exactly as a complete export does.
 */
#include "pkg_apply.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fzip_entity.h"
#include "pkg_reader.h"

/* "<package index>/<fileId>": the location a merged transaction file
 * record carries to file_open. */
#define PKGA_LOCATION_MAX (16 + FZIP_ID_MAX)

typedef struct {
  const pkga_input_t *in;
  size_t n;
  pkgr_t **r;
  pkga_result_t *res;
  char first_issue[512]; /* the first error pkgr_open reported, for the message */
} chain_t;

static const char *input_name(const pkga_input_t *in) {
  return in->name ? in->name : in->path;
}

/* A chain that does not hold together: nothing is written. */
#define REFUSE(error, ...)                                                                         \
  fzip_error_set(error, FZIP_DOMAIN_VALIDATION, FZIP_ERR_FAILED_PRECONDITION, __VA_ARGS__)

/* ---- opening and checking the chain ----------------------------------- */

static void on_issue(void *ctx, const pkgr_issue_t *issue) {
  chain_t *c = ctx;
  if (issue->severity == PKGR_SEVERITY_ERROR && !c->first_issue[0])
    snprintf(c->first_issue, sizeof c->first_issue, "%s%s%s: %s", issue->rule,
             issue->entry ? " " : "", issue->entry ? issue->entry : "",
             issue->reason ? issue->reason : "");
}

static bool open_all(chain_t *c, fzip_error_t *error) {
  for (size_t i = 0; i < c->n; i++) {
    c->first_issue[0] = '\0';
    if (!pkgr_open(&c->r[i], c->in[i].path, NULL, on_issue, c, error)) {
      if (c->first_issue[0])
        fzip_error_prefix(error, "%s (%s)", input_name(&c->in[i]), c->first_issue);
      else
        fzip_error_prefix(error, "%s", input_name(&c->in[i]));
      return false;
    }
    if (strcmp(pkgr_info(c->r[i])->flavour, PKGR_FLAVOUR_FZIP) != 0 ||
        pkgr_info(c->r[i])->design_flavour)
      return REFUSE(error, "%s: not a package fzip wrote (%s)", input_name(&c->in[i]),
                    "only fzip's complete and incremental packages make a chain");
  }
  return true;
}

/* The manifest's `key` as a BSON value, for equality between packages. */
static bool manifest_value(bson_iter_t *it, const pkgr_t *r, const char *key) {
  return bson_iter_init(it, pkgr_manifest(r)) && bson_iter_find_descendant(it, key, it);
}

static bool same_value(const pkgr_t *a, const pkgr_t *b, const char *key) {
  bson_iter_t ia, ib;
  bool ha = manifest_value(&ia, a, key), hb = manifest_value(&ib, b, key);
  if (!ha || !hb)
    return ha == hb;
  const bson_value_t *va = bson_iter_value(&ia), *vb = bson_iter_value(&ib);
  if (va->value_type != vb->value_type)
    return false;
  switch (va->value_type) {
  case BSON_TYPE_UTF8:
    return strcmp(va->value.v_utf8.str, vb->value.v_utf8.str) == 0;
  case BSON_TYPE_BOOL:
    return va->value.v_bool == vb->value.v_bool;
  case BSON_TYPE_DOCUMENT:
    return va->value.v_doc.data_len == vb->value.v_doc.data_len &&
           memcmp(va->value.v_doc.data, vb->value.v_doc.data, va->value.v_doc.data_len) == 0;
  default:
    return false;
  }
}

/* What every package of the chain must agree on (FORMAT.md 15). */
static const char *const agreed_keys[] = {"user_id", "export_type", "filters",
                                          "data_summary.analytics_included"};

static bool check_link(chain_t *c, size_t i, fzip_error_t *error) {
  const pkgr_info_t *info = pkgr_info(c->r[i]), *prev = pkgr_info(c->r[i - 1]);
  const char *name = input_name(&c->in[i]), *prev_name = input_name(&c->in[i - 1]);

  if (!info->incremental)
    return REFUSE(error, "%s is a complete package, not an increment of %s", name, prev_name);
  if (strcmp(info->base_package_sha256, c->in[i - 1].sha256) != 0)
    return REFUSE(error, "%s is not an increment of %s (its base is another package: "
                         "apply the packages in their order, none missing)",
                  name, prev_name);
  if (info->chain_length != (int64_t)i)
    return REFUSE(error, "%s: chain_length is %lld, not %zu (its place in the chain)", name,
                  (long long)info->chain_length, i);
  if (i >= 2 && info->base_change_seq != prev->change_seq)
    return REFUSE(error, "%s: base_change_seq is not %s's change_seq", name, prev_name);
  for (size_t k = 0; k < sizeof agreed_keys / sizeof agreed_keys[0]; k++) {
    if (!same_value(c->r[0], c->r[i], agreed_keys[k]))
      return REFUSE(error, "%s: %s differs from the base %s's", name, agreed_keys[k],
                            input_name(&c->in[0]));
  }
  return true;
}

static bool check_chain(chain_t *c, fzip_error_t *error) {
  if (pkgr_info(c->r[0])->incremental)
    return REFUSE(error, "%s is an increment: the first package must be %s", input_name(&c->in[0]),
                  "a complete one, its chain's base");
  for (size_t i = 1; i < c->n; i++) {
    if (!check_link(c, i, error))
      return false;
  }
  return true;
}

/* ---- the selection a complete export of the same moment had ---------- */

typedef struct {
  pkg_selection_t sel;
  const char *account_ids[PKG_FILTER_IDS_MAX];
  const char *user_id;
  const char *application_version;
} target_t;

static bool target_type(pkg_export_type_t *out, const char *name) {
  for (int t = PKG_EXPORT_COMPLETE; t <= PKG_EXPORT_SELECTIVE; t++) {
    if (strcmp(pkg_export_type_name((pkg_export_type_t)t), name) == 0) {
      *out = (pkg_export_type_t)t;
      return true;
    }
  }
  return false;
}

static const char *manifest_str(const pkgr_t *r, const char *key) {
  bson_iter_t it;
  return manifest_value(&it, r, key) && BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL)
                                                                  : NULL;
}

/* filters.date_from / date_to: an integer, or null (no bound). */
static void target_date(bool *has, int64_t *v, const pkgr_t *r, const char *key) {
  bson_iter_t it;
  *has = manifest_value(&it, r, key) && BSON_ITER_HOLDS_INT64(&it);
  *v = *has ? bson_iter_int64(&it) : 0;
}

/* Strings borrowed from the last package's manifest, which outlives the
 * write (the chain agrees on all but the version). */
static bool target_make(target_t *t, const chain_t *c, fzip_error_t *error) {
  const pkgr_t *last = c->r[c->n - 1];
  const char *name = input_name(&c->in[c->n - 1]);
  bson_iter_t it, arr;

  memset(t, 0, sizeof *t);
  t->user_id = manifest_str(last, "user_id");
  t->application_version = manifest_str(last, "application_version");
  if (!t->user_id || !t->application_version || pkgr_info(last)->export_timestamp_ms <= 0 ||
      !target_type(&t->sel.export_type, pkgr_info(last)->export_type))
    return REFUSE(error, "%s: %s", name,
                  "the manifest lacks user_id, application_version, export_timestamp_ms or a "
                  "known export_type");
  t->sel.include_analytics =
      manifest_value(&it, last, "data_summary.analytics_included") && BSON_ITER_HOLDS_BOOL(&it) &&
      bson_iter_bool(&it);
  if (manifest_value(&it, last, "filters.account_ids") && BSON_ITER_HOLDS_ARRAY(&it) &&
      bson_iter_recurse(&it, &arr)) {
    while (bson_iter_next(&arr)) {
      if (!BSON_ITER_HOLDS_UTF8(&arr) || t->sel.n_account_ids >= PKG_FILTER_IDS_MAX)
        return REFUSE(error, "%s: %s", name, "filters.account_ids is not a list of ids");
      t->account_ids[t->sel.n_account_ids++] = bson_iter_utf8(&arr, NULL);
    }
  }
  t->sel.account_ids = t->account_ids;
  target_date(&t->sel.has_date_from, &t->sel.date_from, last, "filters.date_from");
  target_date(&t->sel.has_date_to, &t->sel.date_to, last, "filters.date_to");
  if (!pkg_selection_check(&t->sel, error))
    return fzip_error_prefix(error, "%s: filters", name);
  return true;
}

/* ---- the merge cursor ------------------------------------------------- */

typedef struct {
  chain_t *c;
  fzip_kind_t kind;
  const char *id_field;
  pkgr_entities_t **ent;   /* per package */
  const bson_t **head;     /* its current entity, NULL once ended */
  const char **head_ids;   /* that entity's id (borrowed from it), NULL once ended */
  char (*last)[FZIP_ID_MAX + 1]; /* the id before it, for the order check */
  pkgr_deletions_t **del;  /* per package (NULL for the base) */
  const char **del_head;   /* its current deletion of this kind, NULL once past */
  size_t pending;          /* the stream whose head was returned: advanced next time */
  bson_t *out;             /* a transaction file record with its location */
} cursor_t;

static const char *head_id(const cursor_t *cur, size_t i) {
  return cur->head_ids[i];
}

static const char *doc_id(const bson_t *doc, const char *field) {
  bson_iter_t it;
  if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_UTF8(&it))
    return NULL;
  return bson_iter_utf8(&it, NULL);
}

/* Moves package i's stream to its next entity, checking id order. */
static bool advance(cursor_t *cur, size_t i, fzip_error_t *error) {
  const char *id;
  cur->head_ids[i] = NULL;
  if (!pkgr_entities_next(cur->ent[i], &cur->head[i], error)) {
    cur->head[i] = NULL;
    if (fzip_error_is_set(error) || !pkgr_entities_finish(NULL, cur->ent[i], error))
      return fzip_error_prefix(error, "%s", input_name(&cur->c->in[i]));
    return true;
  }
  id = doc_id(cur->head[i], cur->id_field);
  if (!id || !fzip_id_is_valid(id) || strcmp(id, cur->last[i]) <= 0)
    return fzip_error_set(error, FZIP_DOMAIN_VALIDATION, FZIP_ERR_FAILED_PRECONDITION,
                          "%s: %s after %s %s: %s", input_name(&cur->c->in[i]),
                          fzip_kind_info(cur->kind)->name, cur->last[i][0] ? "id" : "the start",
                          cur->last[i], "entities are not in ascending id order with valid ids");
  snprintf(cur->last[i], sizeof cur->last[i], "%s", id);
  cur->head_ids[i] = id;
  return true;
}

/* Moves increment i's deletions to its next one of the cursor's kind; past
 * the kind, the rest is read (unused) so that the checksum is verified. */
static bool advance_del(cursor_t *cur, size_t i, fzip_error_t *error) {
  fzip_kind_t kind;
  const char *id;
  cur->del_head[i] = NULL;
  while (pkgr_deletions_next(cur->del[i], &kind, &id, error)) {
    if (kind == cur->kind) {
      cur->del_head[i] = id;
      return true;
    }
  }
  if (fzip_error_is_set(error) || !pkgr_deletions_finish(NULL, cur->del[i], error))
    return fzip_error_prefix(error, "%s", input_name(&cur->c->in[i]));
  return true;
}

static void cursor_close(void *p) {
  cursor_t *cur = p;
  if (!cur)
    return;
  for (size_t i = 0; cur->ent && i < cur->c->n; i++)
    pkgr_entities_destroy(cur->ent[i]);
  for (size_t i = 0; cur->del && i < cur->c->n; i++)
    pkgr_deletions_destroy(cur->del[i]);
  if (cur->out)
    bson_destroy(cur->out);
  free(cur->ent);
  free(cur->head);
  free(cur->head_ids);
  free(cur->last);
  free(cur->del);
  free(cur->del_head);
  free(cur);
}

/* The filter is the packages' own: each holds only what it selects. */
static bool cursor_open(void *ctx, void **out, fzip_kind_t kind, const pkg_filter_t *filter,
                        fzip_error_t *error) {
  chain_t *c = ctx;
  cursor_t *cur = calloc(1, sizeof *cur);
  *out = NULL;
  if (!cur)
    return fzip_error_oom(error, "apply cursor");
  cur->c = c;
  cur->kind = kind;
  cur->id_field = fzip_kind_info(kind)->id_field;
  cur->pending = SIZE_MAX;
  if (!(cur->ent = calloc(c->n, sizeof *cur->ent)) ||
      !(cur->head = calloc(c->n, sizeof *cur->head)) ||
      !(cur->head_ids = calloc(c->n, sizeof *cur->head_ids)) ||
      !(cur->last = calloc(c->n, sizeof *cur->last)) ||
      !(cur->del = calloc(c->n, sizeof *cur->del)) ||
      !(cur->del_head = calloc(c->n, sizeof *cur->del_head)) || !(cur->out = bson_new())) {
    cursor_close(cur);
    return fzip_error_oom(error, "apply cursor");
  }
  for (size_t i = 0; i < c->n; i++) {
    bool opened = pkgr_entities_open(&cur->ent[i], c->r[i], kind, error) &&
                  (i == 0 || pkgr_deletions_open(&cur->del[i], c->r[i], error));
    if (!opened)
      fzip_error_prefix(error, "%s", input_name(&c->in[i]));
    if (!opened || !advance(cur, i, error) || (i > 0 && !advance_del(cur, i, error))) {
      cursor_close(cur);
      return false;
    }
  }
  *out = cur;
  return true;
}

/* The package whose files/ entry has file_id's bytes for the record package
 * `win` holds, or SIZE_MAX (missing): `win` itself, or when it neither has
 * them nor lists them as missing, the newest older package that has them. */
static size_t bytes_holder(const chain_t *c, size_t win, const char *file_id) {
  if (pkgr_file_find(c->r[win], file_id))
    return win;
  if (pkgr_file_listed_missing(c->r[win], file_id))
    return SIZE_MAX;
  for (size_t i = win; i-- > 0;) {
    if (pkgr_file_find(c->r[i], file_id))
      return i;
  }
  return SIZE_MAX;
}

/* A transaction file record gets the location of its bytes as s3Key. */
static bool with_location(const bson_t **doc, cursor_t *cur, size_t win, fzip_error_t *error) {
  const char *file_id = head_id(cur, win);
  size_t holder = bytes_holder(cur->c, win, file_id);
  char loc[PKGA_LOCATION_MAX];

  bson_reinit(cur->out);
  bson_copy_to_excluding_noinit(cur->head[win], cur->out, "s3Key", NULL);
  if (holder != SIZE_MAX) {
    snprintf(loc, sizeof loc, "%zu/%s", holder, file_id);
    if (!BSON_APPEND_UTF8(cur->out, "s3Key", loc))
      return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_RESOURCE_EXHAUSTED,
                            "transaction file %s: record too large", file_id);
  }
  *doc = cur->out;
  return true;
}

/* The smallest id at any entity or deletion head, copied to key; false
 * when every stream has ended. */
static bool smallest(char key[FZIP_ID_MAX + 1], const cursor_t *cur) {
  const char *min = NULL;
  for (size_t i = 0; i < cur->c->n; i++) {
    const char *id = head_id(cur, i);
    if (id && (!min || strcmp(id, min) < 0))
      min = id;
    if (cur->del_head[i] && (!min || strcmp(cur->del_head[i], min) < 0))
      min = cur->del_head[i];
  }
  if (min)
    snprintf(key, FZIP_ID_MAX + 1, "%s", min);
  return min != NULL;
}

static bool cursor_next(void *p, const bson_t **doc, fzip_error_t *error) {
  cursor_t *cur = p;
  char key[FZIP_ID_MAX + 1];

  if (cur->pending != SIZE_MAX && !advance(cur, cur->pending, error))
    return false;
  cur->pending = SIZE_MAX;
  while (smallest(key, cur)) {
    size_t win = SIZE_MAX, gone = SIZE_MAX; /* the newest entity and deletion of key */
    bool older = false;                      /* an older package has key too */
    for (size_t i = 0; i < cur->c->n; i++) {
      const char *id = head_id(cur, i);
      if (id && strcmp(id, key) == 0) {
        older = older || win != SIZE_MAX;
        win = i;
      }
      if (cur->del_head[i] && strcmp(cur->del_head[i], key) == 0)
        gone = i;
    }
    for (size_t i = 0; win != SIZE_MAX && i < win; i++) { /* older versions of the winner */
      const char *id = head_id(cur, i);
      if (id && strcmp(id, key) == 0 && !advance(cur, i, error))
        return false;
    }
    for (size_t i = 1; i < cur->c->n; i++) {
      if (cur->del_head[i] && strcmp(cur->del_head[i], key) == 0 && !advance_del(cur, i, error))
        return false;
    }
    /* Within one increment deletions apply first, so its entity wins. */
    if (win != SIZE_MAX && (gone == SIZE_MAX || win >= gone)) {
      cur->c->res->entities_replaced += older;
      cur->pending = win;
      *doc = cur->head[win];
      return cur->kind != FZIP_KIND_TRANSACTION_FILE || with_location(doc, cur, win, error);
    }
    if (win == SIZE_MAX)
      continue; /* a deletion of something no package of the chain holds */
    cur->c->res->entities_deleted++;
    if (!advance(cur, win, error))
      return false;
  }
  return false;
}

/* An estimate (the writer's progress total): every package's count. */
static bool count(void *ctx, uint64_t *n, fzip_kind_t kind, const pkg_filter_t *filter,
                  fzip_error_t *error) {
  chain_t *c = ctx;
  *n = 0;
  for (size_t i = 0; i < c->n; i++)
    *n += pkgr_info(c->r[i])->count[kind];
  return true;
}

/* ---- file bytes ------------------------------------------------------- */

/* One transaction file's bytes and the name of the package they come from. */
typedef struct {
  pkgr_file_t *f;
  const char *name; /* borrowed from the chain's input */
} chain_file_t;

static bool file_open(void *ctx, void **out, const char *location, fzip_error_t *error) {
  chain_t *c = ctx;
  char *slash = NULL;
  unsigned long long i = strtoull(location, &slash, 10);
  chain_file_t *f;
  *out = NULL;
  if (!slash || *slash != '/' || i >= c->n)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INTERNAL, "bad location %s",
                          location);
  if (!(f = calloc(1, sizeof *f)))
    return fzip_error_oom(error, "package file");
  f->name = input_name(&c->in[i]);
  if (!pkgr_file_open(&f->f, c->r[i], slash + 1, error)) {
    free(f);
    return fzip_error_prefix(error, "%s", input_name(&c->in[i]));
  }
  *out = f;
  return true;
}

/* A damaged entry (checksum, inflate) names the package it is in. */
static bool file_read(void *file, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  chain_file_t *f = file;
  if (pkgr_file_read(f->f, buf, cap, n, error))
    return true;
  return fzip_error_prefix(error, "%s", f->name);
}

static void file_close(void *file) {
  chain_file_t *f = file;
  if (!f)
    return;
  pkgr_file_destroy(f->f);
  free(f);
}

static const pkg_source_ops_t chain_ops = {
    .count = count,
    .cursor_open = cursor_open,
    .cursor_next = cursor_next,
    .cursor_close = cursor_close,
    .file_open = file_open,
    .file_read = file_read,
    .file_close = file_close,
};

/* ---- driver ------------------------------------------------------------ */

/* <output's directory>/.<output's name>.XXXXXX, created empty. */
static bool temp_beside(char out[PATH_MAX], const char *output, fzip_error_t *error) {
  const char *slash = strrchr(output, '/');
  int dir_len = slash ? (int)(slash - output + 1) : 0;
  int fd;
  if (snprintf(out, PATH_MAX, "%.*s.%s.XXXXXX", dir_len, output, slash ? slash + 1 : output) >=
      PATH_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INVALID_ARGUMENT,
                          "output path too long");
  if ((fd = mkstemp(out)) < 0)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "creating %s: %s", out,
                          strerror(errno));
  close(fd);
  return true;
}

static bool write_output(chain_t *c, const char *output, const pkga_options_t *opt,
                         fzip_error_t *error) {
  pkg_source_t source = {&chain_ops, c};
  pkg_options_t wopt = {0};
  target_t *t = malloc(sizeof *t);
  char tmp[PATH_MAX];
  bool ok = false;

  if (!t)
    return fzip_error_oom(error, "apply target");
  if (!target_make(t, c, error) || !temp_beside(tmp, output, error))
    goto done;
  wopt.export_timestamp_ms = pkgr_info(c->r[c->n - 1])->export_timestamp_ms;
  wopt.application_version = t->application_version;
  wopt.temp_dir = opt ? opt->temp_dir : NULL;
  if (!pkg_write_file(&c->res->package, &source, t->user_id, &t->sel, &wopt, tmp, error)) {
    unlink(tmp);
    goto done;
  }
  if (rename(tmp, output) != 0) {
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "renaming %s to %s: %s", tmp,
                   output, strerror(errno));
    unlink(tmp);
    goto done;
  }
  ok = true;
done:
  free(t);
  return ok;
}

bool pkga_apply(pkga_result_t *result, const pkga_input_t *inputs, size_t n_inputs,
                const char *output, const pkga_options_t *options, fzip_error_t *error) {
  pkga_result_t res = {0};
  chain_t c = {.in = inputs, .n = n_inputs, .res = &res};
  bool ok = false;

  if (n_inputs < 2 || n_inputs > PKGA_CHAIN_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "apply takes a base and 1 to %d increments (%zu package(s) given)",
                          PKGA_CHAIN_MAX - 1, n_inputs);
  for (size_t i = 0; i < n_inputs; i++) {
    if (!inputs[i].path || !inputs[i].sha256)
      return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                            "package #%zu has no path or sha256", i + 1);
  }
  if (!(c.r = calloc(n_inputs, sizeof *c.r)))
    return fzip_error_oom(error, "apply chain");
  if (open_all(&c, error) && check_chain(&c, error) && write_output(&c, output, options, error))
    ok = true;
  for (size_t i = 0; i < n_inputs; i++)
    pkgr_destroy(c.r[i]);
  free(c.r);
  if (ok && result)
    *result = res;
  return ok;
}
