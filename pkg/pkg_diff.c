/*
 * pkg_diff: see pkg_diff.h.
 *
 * Values are compared structurally rather than byte for byte: the JSON
 * reader and the backends do not agree on integer widths (a package's 3
 * may come back as an int32 where the store holds an int64), and that is
 * not a change.  Objects compare as sets of keys (order does not matter),
 * arrays item by item in order.
 */
#include "pkg_diff.h"

#include <stdio.h>
#include <string.h>

static const char *const FILE_BLOB_FIELD = "s3Key";   /* differs by design */
static const char *const UPDATED_FIELD = "updatedAt"; /* decides merge_fields */
static const char *const SHA_FIELD = "sha256";        /* what a file's bytes are */
static const char *const SIZE_FIELD = "fileSize";     /* ... where there is no sha256 */
static const char *const PACKAGE_BLOB = "package";    /* pkgd_file_as_restored's s3Key */

static bool too_big(fzip_error_t *error, fzip_kind_t kind) {
  return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_RESOURCE_EXHAUSTED,
                        "%s: the merged document does not fit in a BSON document",
                        fzip_kind_info(kind)->name);
}

/* ---- equality --------------------------------------------------------- */

static bool is_int(const bson_iter_t *it) {
  return BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it);
}

static bool iter_equal(const bson_iter_t *a, const bson_iter_t *b);

/* Objects: the same keys with equal values, in any order.  Arrays: the
 * same items in the same order. */
static bool children_equal(const bson_iter_t *a, const bson_iter_t *b, bool array) {
  bson_iter_t ca, cb;
  if (!bson_iter_recurse(a, &ca) || !bson_iter_recurse(b, &cb))
    return false;
  if (array) {
    bool more_a, more_b;
    for (;;) {
      more_a = bson_iter_next(&ca);
      more_b = bson_iter_next(&cb);
      if (!more_a || !more_b)
        return more_a == more_b;
      if (!iter_equal(&ca, &cb))
        return false;
    }
  }
  size_t na = 0, nb = 0;
  while (bson_iter_next(&ca)) {
    bson_iter_t f;
    na++;
    if (!bson_iter_recurse(b, &f) || !bson_iter_find(&f, bson_iter_key(&ca)) ||
        !iter_equal(&ca, &f))
      return false;
  }
  while (bson_iter_next(&cb))
    nb++;
  return na == nb;
}

/* Any other type: the same type and the same encoded value. */
static bool raw_equal(const bson_iter_t *a, const bson_iter_t *b) {
  bson_t da = BSON_INITIALIZER, db = BSON_INITIALIZER;
  bool eq = bson_append_iter(&da, "v", 1, a) && bson_append_iter(&db, "v", 1, b) &&
            da.len == db.len && memcmp(bson_get_data(&da), bson_get_data(&db), da.len) == 0;
  bson_destroy(&da);
  bson_destroy(&db);
  return eq;
}

static bool iter_equal(const bson_iter_t *a, const bson_iter_t *b) {
  if (is_int(a) && is_int(b))
    return bson_iter_as_int64(a) == bson_iter_as_int64(b);
  if (BSON_ITER_HOLDS_NUMBER(a) && BSON_ITER_HOLDS_NUMBER(b))
    return bson_iter_as_double(a) == bson_iter_as_double(b);
  if (bson_iter_type(a) != bson_iter_type(b))
    return false;
  switch (bson_iter_type(a)) {
  case BSON_TYPE_UTF8: {
    uint32_t la, lb;
    const char *sa = bson_iter_utf8(a, &la), *sb = bson_iter_utf8(b, &lb);
    return la == lb && memcmp(sa, sb, la) == 0;
  }
  case BSON_TYPE_BOOL: return bson_iter_bool(a) == bson_iter_bool(b);
  case BSON_TYPE_NULL: return true;
  case BSON_TYPE_DOCUMENT: return children_equal(a, b, false);
  case BSON_TYPE_ARRAY: return children_equal(a, b, true);
  default: return raw_equal(a, b);
  }
}

/* ---- the comparable form ---------------------------------------------- */

static bool comparable(bson_t *out, fzip_kind_t kind, const bson_t *doc, fzip_error_t *error) {
  bson_t known = BSON_INITIALIZER;
  bson_iter_t it;
  bool ok = pkgv_entity_sanitize(&known, kind, doc, error);

  if (ok && bson_iter_init(&it, &known)) {
    while (ok && bson_iter_next(&it)) {
      if (kind == FZIP_KIND_TRANSACTION_FILE && strcmp(bson_iter_key(&it), FILE_BLOB_FIELD) == 0)
        continue;
      ok = bson_append_iter(out, NULL, 0, &it) || too_big(error, kind);
    }
  }
  bson_destroy(&known);
  return ok;
}

static void add_field(pkgd_diff_t *d, const char *name) {
  if (d->n_fields < PKGD_FIELDS_MAX)
    snprintf(d->fields[d->n_fields], sizeof d->fields[d->n_fields], "%s", name);
  d->n_fields++;
}

/* The top-level fields of comparable forms a and b that differ. */
static void diff_fields(pkgd_diff_t *out, const bson_t *a, const bson_t *b) {
  bson_iter_t it, f;
  memset(out, 0, sizeof *out);
  if (bson_iter_init(&it, a)) {
    while (bson_iter_next(&it)) {
      if (!bson_iter_init_find(&f, b, bson_iter_key(&it)) || !iter_equal(&it, &f))
        add_field(out, bson_iter_key(&it));
    }
  }
  if (bson_iter_init(&it, b)) {
    while (bson_iter_next(&it)) {
      if (!bson_iter_init_find(&f, a, bson_iter_key(&it)))
        add_field(out, bson_iter_key(&it));
    }
  }
}

/* ---- merge_fields ------------------------------------------------------ */

static bool time_of(int64_t *out, const bson_t *doc, const char *field) {
  bson_iter_t it;
  if (!bson_iter_init_find(&it, doc, field) || !is_int(&it))
    return false;
  *out = bson_iter_as_int64(&it);
  return true;
}

static const char *str_of(const bson_t *doc, const char *field) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return NULL;
}

static bool incoming_is_newer(const bson_t *incoming, const bson_t *stored) {
  int64_t in = 0, st = 0;
  if (!time_of(&in, incoming, UPDATED_FIELD))
    return false;
  return !time_of(&st, stored, UPDATED_FIELD) || in > st;
}

/* Whether two records' values of `field` differ (either may lack it). */
static bool field_differs(const bson_t *a, const bson_t *b, const char *field) {
  bson_iter_t ia, ib;
  bool in_a = bson_iter_init_find(&ia, a, field), in_b = bson_iter_init_find(&ib, b, field);
  return in_a != in_b || (in_a && !iter_equal(&ia, &ib));
}

/* Whether the merged record `out` describes the package's bytes rather
 * than the stored ones: its sha256 is the package's and differs from the
 * stored one's, or, with no sha256 in the package's record (the HouseF3
 * app writes none), its fileSize is the package's and differs from the
 * stored one's. */
static bool describes_incoming_bytes(const bson_t *out, const bson_t *incoming,
                                     const bson_t *stored) {
  const char *in_sha = str_of(incoming, SHA_FIELD), *st_sha = str_of(stored, SHA_FIELD);
  const char *merged_sha = str_of(out, SHA_FIELD);
  if (in_sha)
    return merged_sha && strcmp(merged_sha, in_sha) == 0 &&
           (!st_sha || strcmp(st_sha, in_sha) != 0);
  return !field_differs(out, incoming, SIZE_FIELD) && field_differs(incoming, stored, SIZE_FIELD);
}

/* The blob a merged transaction file names: the package's when the package
 * holds bytes (an s3Key) and the stored record names none or the merged
 * record describes the package's bytes; otherwise the stored one. */
static bool merge_file_blob(bson_t *out, const bson_t *incoming, const bson_t *stored) {
  const char *in_key = str_of(incoming, FILE_BLOB_FIELD), *st_key = str_of(stored, FILE_BLOB_FIELD);
  bool take_incoming = in_key && (!st_key || describes_incoming_bytes(out, incoming, stored));
  const char *key = take_incoming ? in_key : st_key;
  return !key || bson_append_utf8(out, FILE_BLOB_FIELD, -1, key, -1);
}

bool pkgd_merge(bson_t *out, fzip_kind_t kind, const bson_t *incoming, const bson_t *stored,
                fzip_error_t *error) {
  const char *id_field = fzip_kind_info(kind)->id_field;
  bool newer = incoming_is_newer(incoming, stored), ok = true;
  bool is_file = kind == FZIP_KIND_TRANSACTION_FILE;
  bson_iter_t it, f;

  if (!bson_iter_init(&it, stored))
    return too_big(error, kind);
  while (ok && bson_iter_next(&it)) {
    const char *key = bson_iter_key(&it);
    if (is_file && strcmp(key, FILE_BLOB_FIELD) == 0)
      continue;
    if (newer && strcmp(key, id_field) != 0 && bson_iter_init_find(&f, incoming, key))
      ok = bson_append_iter(out, key, -1, &f);
    else
      ok = bson_append_iter(out, NULL, 0, &it);
  }
  if (ok && bson_iter_init(&it, incoming)) {
    while (ok && bson_iter_next(&it)) {
      const char *key = bson_iter_key(&it);
      if ((is_file && strcmp(key, FILE_BLOB_FIELD) == 0) || bson_iter_init_find(&f, stored, key))
        continue;
      ok = bson_append_iter(out, NULL, 0, &it);
    }
  }
  if (ok && is_file)
    ok = merge_file_blob(out, incoming, stored);
  return ok || too_big(error, kind);
}

/* ---- judging and counting ---------------------------------------------- */

/* A transaction file whose bytes the user lacks (the stored record names
 * no blob: missing at an earlier import) and the package holds: a change
 * of its own, field s3Key, even when every other field is equal. */
static bool bytes_arrive(fzip_kind_t kind, const bson_t *incoming, const bson_t *stored) {
  return kind == FZIP_KIND_TRANSACTION_FILE && str_of(incoming, FILE_BLOB_FIELD) &&
         !str_of(stored, FILE_BLOB_FIELD);
}

/* Whether the merge of incoming into stored changes stored's comparable
 * form `cs`; *merged keeps the merged document when it does. */
static bool judge_merge(pkgd_verdict_t *out, bson_t **merged, fzip_kind_t kind,
                        const bson_t *incoming, const bson_t *stored, const bson_t *cs,
                        fzip_error_t *error) {
  bson_t *m = bson_new();
  bson_t cm = BSON_INITIALIZER;
  pkgd_diff_t md;
  bool ok = pkgd_merge(m, kind, incoming, stored, error) && comparable(&cm, kind, m, error);

  if (ok) {
    diff_fields(&md, &cm, cs);
    out->merged = md.n_fields > 0 || bytes_arrive(kind, incoming, stored);
  }
  if (ok && out->merged && merged) {
    *merged = m;
    m = NULL;
  }
  bson_destroy(m);
  bson_destroy(&cm);
  return ok;
}

bool pkgd_judge(pkgd_verdict_t *out, bson_t **merged, fzip_kind_t kind,
                pkgv_strategy_t strategy, const bson_t *incoming, const bson_t *stored,
                fzip_error_t *error) {
  bson_t ci = BSON_INITIALIZER, cs = BSON_INITIALIZER;
  bool ok = false;

  memset(out, 0, sizeof *out);
  if (merged)
    *merged = NULL;
  if (!comparable(&ci, kind, incoming, error) || !comparable(&cs, kind, stored, error))
    goto done;
  diff_fields(&out->diff, &ci, &cs);
  if (bytes_arrive(kind, incoming, stored))
    add_field(&out->diff, FILE_BLOB_FIELD);
  out->identical = out->diff.n_fields == 0;
  if (!out->identical && strategy == PKGV_MERGE_FIELDS &&
      !judge_merge(out, merged, kind, incoming, stored, &cs, error))
    goto done;
  ok = true;
done:
  bson_destroy(&ci);
  bson_destroy(&cs);
  return ok;
}

void pkgd_count(pkgv_counts_t *c, pkgv_strategy_t strategy, const pkgd_verdict_t *v) {
  if (v->identical)
    c->identical++;
  else
    c->changed++;
  switch (strategy) {
  case PKGV_SKIP_EXISTING:
    c->skipped++;
    break;
  case PKGV_OVERWRITE:
    if (!v->identical)
      c->overwritten++;
    break;
  case PKGV_MERGE_FIELDS:
    if (v->merged)
      c->merged++;
    else if (!v->identical)
      c->skipped++;
    break;
  default:
    break;
  }
}

void pkgd_keep(pkgv_diff_t *diffs, size_t *n_diffs, fzip_kind_t kind, const char *id,
               const pkgd_diff_t *d) {
  size_t of_kind = 0;
  pkgv_diff_t *o;

  for (size_t i = 0; i < *n_diffs; i++)
    of_kind += diffs[i].kind == (int)kind;
  if (of_kind >= PKGV_DIFFS_PER_KIND)
    return;
  o = &diffs[(*n_diffs)++];
  o->kind = (int)kind;
  snprintf(o->entity_id, sizeof o->entity_id, "%s", id);
  o->n_fields = d->n_fields;
  memcpy(o->fields, d->fields, sizeof o->fields);
}

bool pkgd_file_as_restored(bson_t *out, const bson_t *doc, bool has_bytes, fzip_error_t *error) {
  bson_iter_t it;
  bool ok = bson_iter_init(&it, doc);

  while (ok && bson_iter_next(&it)) {
    if (strcmp(bson_iter_key(&it), FILE_BLOB_FIELD) != 0)
      ok = bson_append_iter(out, NULL, 0, &it);
  }
  if (ok && has_bytes)
    ok = bson_append_utf8(out, FILE_BLOB_FIELD, -1, PACKAGE_BLOB, -1);
  return ok || too_big(error, FZIP_KIND_TRANSACTION_FILE);
}
