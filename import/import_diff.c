/*
 * import_diff: see import_diff.h.
 */
#include "import_diff.h"

#include <stdlib.h>
#include <string.h>

#include "job_body.h"
#include "pkg_diff.h"

struct import_diff {
  store_t *store;
  const char *user_id;
  pkgv_strategy_t strategy;
  pkgv_counts_t counts[FZIP_KIND_COUNT];
  pkgv_diff_t diffs[PKGV_DIFFS_PER_KIND * FZIP_KIND_COUNT];
  size_t n_diffs;
  size_t batches; /* store round trips (store_entity_get_many calls) */
};

bool import_diff_new(import_diff_t **out, store_t *store, const char *user_id,
                     pkgv_strategy_t strategy, fzip_error_t *error) {
  import_diff_t *d = calloc(1, sizeof *d);
  *out = NULL;
  if (!d)
    return fzip_error_oom(error, "import diff");
  d->store = store;
  d->user_id = user_id;
  d->strategy = strategy;
  *out = d;
  return true;
}

void import_diff_destroy(import_diff_t *d) { free(d); }

static const char *doc_str(const bson_t *doc, const char *field) {
  bson_iter_t it;
  if (doc && bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return NULL;
}

/* The stored blob whose bytes a merged transaction file keeps (it names
 * the stored version's blob), when that blob is the user's own (a blob of
 * an earlier import); NULL otherwise. */
static const char *kept_own_blob(const import_diff_t *d, fzip_kind_t kind, const bson_t *doc,
                                 const bson_t *stored) {
  const char *key = doc_str(doc, "s3Key"), *old = doc_str(stored, "s3Key");
  size_t ulen = strlen(d->user_id);
  if (kind != FZIP_KIND_TRANSACTION_FILE || !key || !old || strcmp(key, old) != 0)
    return NULL;
  return strncmp(old, d->user_id, ulen) == 0 && old[ulen] == '/' ? old : NULL;
}

/* Whether docs[i] is written, and as what (*doc may become the merged
 * document, the old one destroyed). */
static bool judge_one(import_diff_t *d, fzip_kind_t kind, bson_t **doc, const bson_t *stored,
                      const char *id, bool *keep, fzip_error_t *error) {
  pkgd_verdict_t v;
  bson_t *merged = NULL;

  *keep = true;
  if (!stored)
    return true; /* new: created */
  if (!pkgd_judge(&v, d->strategy == PKGV_MERGE_FIELDS ? &merged : NULL, kind, d->strategy,
                  *doc, stored, error))
    return false;
  pkgd_count(&d->counts[kind], d->strategy, &v);
  if (!v.identical)
    pkgd_keep(d->diffs, &d->n_diffs, kind, id, &v.diff);
  if (d->strategy == PKGV_SKIP_EXISTING)
    return true; /* the store skips it and counts it */
  if (v.identical || (d->strategy == PKGV_MERGE_FIELDS && !merged)) {
    *keep = false;
    return true;
  }
  if (merged) {
    bson_destroy(*doc);
    *doc = merged;
  }
  return true;
}

bool import_diff_batch(import_diff_t *d, fzip_kind_t kind, bson_t **docs, char **side,
                       char **bytes_from, size_t *n, fzip_error_t *error) {
  const char *field = fzip_kind_info(kind)->id_field;
  const char *ids[STORE_BATCH_MAX];
  char id[FZIP_ID_MAX + 1];
  bson_t *stored[STORE_BATCH_MAX];
  bool keep[STORE_BATCH_MAX];
  char *from[STORE_BATCH_MAX];
  size_t n0 = *n, left = 0;
  bool ok = false;

  memset(bytes_from, 0, n0 * sizeof *bytes_from);
  memset(from, 0, sizeof from);
  if (d->strategy == PKGV_FAIL_ON_CONFLICT || n0 == 0)
    return true;
  for (size_t i = 0; i < n0; i++)
    ids[i] = doc_str(docs[i], field);
  if (!store_entity_get_many(stored, d->store, d->user_id, kind, ids, n0, NULL, error))
    return fzip_error_prefix(error, "reading the existing %s", fzip_kind_info(kind)->name);
  d->batches++;
  for (size_t i = 0; i < n0; i++) {
    const char *kept;
    /* ids[i] points into docs[i], which judge_one may replace. */
    snprintf(id, sizeof id, "%s", ids[i]);
    if (!judge_one(d, kind, &docs[i], stored[i], id, &keep[i], error))
      goto done;
    kept = keep[i] && stored[i] ? kept_own_blob(d, kind, docs[i], stored[i]) : NULL;
    if (kept && !(from[i] = strdup(kept))) {
      fzip_error_oom(error, "import diff");
      goto done;
    }
  }
  for (size_t i = 0; i < n0; i++) {
    if (!keep[i]) {
      bson_destroy(docs[i]);
      if (side)
        free(side[i]);
      continue;
    }
    bytes_from[left] = from[i];
    from[i] = NULL;
    if (side)
      side[left] = side[i];
    docs[left++] = docs[i];
  }
  for (size_t i = left; side && i < n0; i++)
    side[i] = NULL;
  *n = left;
  ok = true;
done:
  for (size_t i = 0; i < n0; i++) {
    bson_destroy(stored[i]);
    free(from[i]);
  }
  return ok;
}

size_t import_diff_batches(const import_diff_t *d) { return d->batches; }

bool import_diff_messages(Fzip__V1__EntityDiff ***out, size_t *n, const pkgv_diff_t *diffs,
                          size_t n_diffs) {
  Fzip__V1__EntityDiff **arr = calloc(n_diffs ? n_diffs : 1, sizeof *arr);
  size_t made = 0;

  if (!arr)
    return false;
  for (; made < n_diffs; made++) {
    const pkgv_diff_t *src = &diffs[made];
    size_t nf = src->n_fields < PKGV_DIFF_FIELDS_MAX ? src->n_fields : PKGV_DIFF_FIELDS_MAX;
    Fzip__V1__EntityDiff *e = calloc(1, sizeof *e);
    if (!e)
      goto fail;
    fzip__v1__entity_diff__init(e);
    arr[made] = e;
    e->kind = (Fzip__V1__EntityKind)(src->kind + 1);
    if (!job_msg_set_str(&e->entity_id, src->entity_id) ||
        !(e->fields = calloc(nf ? nf : 1, sizeof *e->fields)))
      goto fail;
    for (; e->n_fields < nf; e->n_fields++) {
      if (!job_msg_set_str(&e->fields[e->n_fields], src->fields[e->n_fields]))
        goto fail;
    }
  }
  *out = arr;
  *n = made;
  return true;
fail:
  for (size_t i = 0; i <= made && i < n_diffs; i++) {
    if (arr[i])
      fzip__v1__entity_diff__free_unpacked(arr[i], NULL);
  }
  free(arr);
  return false;
}

static void free_diffs(Fzip__V1__ImportResult *res) {
  for (size_t i = 0; i < res->n_diffs; i++)
    fzip__v1__entity_diff__free_unpacked(res->diffs[i], NULL);
  free(res->diffs);
  res->diffs = NULL;
  res->n_diffs = 0;
}

bool import_diff_fill(const import_diff_t *d, Fzip__V1__ImportResult *res) {
  for (size_t i = 0; i < res->n_counts; i++) {
    Fzip__V1__EntityCounts *c = res->counts[i];
    int k = (int)c->kind - 1;
    if (k < 0 || k >= FZIP_KIND_COUNT)
      continue;
    c->identical = (int64_t)d->counts[k].identical;
    c->changed = (int64_t)d->counts[k].changed;
    c->merged = (int64_t)d->counts[k].merged;
    if (d->strategy != PKGV_FAIL_ON_CONFLICT) {
      c->overwritten = (int64_t)d->counts[k].overwritten;
      c->skipped = (int64_t)d->counts[k].skipped;
    }
  }
  free_diffs(res);
  return import_diff_messages(&res->diffs, &res->n_diffs, d->diffs, d->n_diffs);
}
