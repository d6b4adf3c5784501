/*
 * store: the front end of the storage interface.
 *
 * store_open picks a backend from the URI scheme; every other public call
 * checks what all backends would check alike (NULLs, id syntax, kinds,
 * batch and page limits, document shape) and then goes through the vtable,
 * so backends only ever see valid input and behave the same on bad input.
 * The job record helpers and the generic reaper live here too: the reaper
 * needs nothing beyond the interface itself.
 */
#include "store.h"

#include "fzip_failpoint.h"
#include "fzip_metrics.h"
#include "fzip_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_backend.h"

#define SQLITE_SCHEME "sqlite:"
#define MONGO_SCHEME "mongodb://"
#define MONGO_SRV_SCHEME "mongodb+srv://"

static bool invalid(fzip_error_t *error, const char *what) {
  return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INVALID_ARGUMENT, "store: %s", what);
}

/* A store that may be written: not NULL, and not a snapshot view (those
 * read only, store_snapshot_begin). */
static bool writable(const store_t *store, fzip_error_t *error) {
  if (!store)
    return invalid(error, "store is NULL");
  if (store->read_only)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_FAILED_PRECONDITION,
                          "store: a snapshot view is read-only");
  return true;
}

/* ---- metrics ------------------------------------------------------------- */

/* Failures that are an answer, not a fault: absent, taken, a lost race,
 * bad input, a wrong state, a cancelled call.  Anything else (unreachable,
 * internal, corrupt data...) is a store error. */
static bool is_store_fault(uint32_t code) {
  switch (code) {
  case FZIP_OK:
  case FZIP_ERR_NOT_FOUND:
  case FZIP_ERR_ALREADY_EXISTS:
  case FZIP_ERR_ABORTED:
  case FZIP_ERR_INVALID_ARGUMENT:
  case FZIP_ERR_FAILED_PRECONDITION:
  case FZIP_ERR_OUT_OF_RANGE:
  case FZIP_ERR_CANCELLED:
    return false;
  default:
    return true;
  }
}

/* Passes a backend call's result through, counting a fault in
 * fzip_store_errors_total{backend, op}; op is the vtable member's name,
 * so the label set is fixed.  `vt` is the store's, a cursor's, a blob
 * transfer's or a snapshot's (each names its backend).  (A NULL error says
 * nothing to count.) */
static bool counted(const store_vtable_t *vt, const char *op, bool ok,
                    const fzip_error_t *error) {
  if (!ok && error && is_store_fault(error->code))
    fzip_metric_add(FZIP_METRIC_STORE_ERRORS, (const char *[]){vt->name, op}, 1);
  return ok;
}

/* ---- argument checks ----------------------------------------------------- */

/* A name of 1..max bytes; limit is max's name, for the message. */
static bool check_name(const char *name, size_t max, const char *what, const char *limit,
                       fzip_error_t *error) {
  size_t n;
  if (!name)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INVALID_ARGUMENT,
                          "store: %s is NULL", what);
  n = strnlen(name, max + 1);
  if (n == 0 || n > max)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INVALID_ARGUMENT,
                          "store: %s is empty or longer than %s", what, limit);
  return true;
}

static bool check_user(const char *user_id, fzip_error_t *error) {
  return check_name(user_id, FZIP_USER_ID_MAX, "user id", "FZIP_USER_ID_MAX", error);
}

static bool check_kind(fzip_kind_t kind, fzip_error_t *error) {
  if ((unsigned)kind >= FZIP_KIND_COUNT)
    return invalid(error, "entity kind out of range");
  return true;
}

static bool check_job_kind(store_job_kind_t kind, fzip_error_t *error) {
  if (kind != STORE_JOB_EXPORT && kind != STORE_JOB_IMPORT && kind != STORE_JOB_SCHEDULE)
    return invalid(error, "job kind out of range");
  return true;
}

static bool check_bucket(store_bucket_t bucket, fzip_error_t *error) {
  if (bucket != STORE_BUCKET_PACKAGES && bucket != STORE_BUCKET_FILES)
    return invalid(error, "blob bucket out of range");
  return true;
}

static bool check_id(const char *id, const char *what, fzip_error_t *error) {
  if (!fzip_id_is_valid(id))
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INVALID_ARGUMENT,
                          "store: %s is not a valid id", what);
  return true;
}

static bool check_owner(const char *owner, fzip_error_t *error) {
  return check_name(owner, STORE_OWNER_MAX, "lease owner", "STORE_OWNER_MAX", error);
}

static bool check_blob_id(const char *blob_id, fzip_error_t *error) {
  size_t n = 0;
  if (!blob_id || !*blob_id)
    return invalid(error, "blob id is NULL or empty");
  for (const unsigned char *p = (const unsigned char *)blob_id; *p; p++, n++) {
    if (n >= STORE_BLOB_ID_MAX)
      return invalid(error, "blob id longer than STORE_BLOB_ID_MAX");
    if (*p < 0x20 || *p > 0x7e)
      return invalid(error, "blob id is not printable ASCII");
  }
  return true;
}

static bool check_ids(const char *const *ids, size_t n, fzip_error_t *error) {
  if (n > STORE_BATCH_MAX)
    return invalid(error, "more ids than STORE_BATCH_MAX");
  if (n > 0 && !ids)
    return invalid(error, "ids is NULL");
  for (size_t i = 0; i < n; i++) {
    if (!check_id(ids[i], "entity id", error))
      return false;
  }
  return true;
}

static bool check_filter(const store_filter_t *filter, fzip_kind_t kind, fzip_error_t *error) {
  const fzip_kind_info_t *info = fzip_kind_info(kind);
  if (!filter)
    return true;
  if (filter->n_account_ids > 0) {
    if (!info->account_field)
      return invalid(error, "account filter on a kind without an account field");
    if (filter->n_account_ids > STORE_FILTER_IDS_MAX)
      return invalid(error, "more account ids than STORE_FILTER_IDS_MAX");
    if (!filter->account_ids)
      return invalid(error, "account ids is NULL");
    for (size_t i = 0; i < filter->n_account_ids; i++) {
      if (!check_id(filter->account_ids[i], "account id", error))
        return false;
    }
  }
  if ((filter->has_date_from || filter->has_date_to) && !info->date_field)
    return invalid(error, "date filter on a kind without a date field");
  if (filter->after_id && !check_id(filter->after_id, "after_id", error))
    return false;
  return true;
}

static bool check_job_record(const store_job_t *job, fzip_error_t *error) {
  if (!job || !job->body)
    return invalid(error, "job or job body is NULL");
  if (!check_id(job->job_id, "job id", error) || !check_user(job->user_id, error) ||
      !check_job_kind(job->kind, error))
    return false;
  if (strnlen(job->lease_owner, sizeof job->lease_owner) == sizeof job->lease_owner)
    return invalid(error, "job lease owner is not terminated");
  if (strnlen(job->request_id, sizeof job->request_id) == sizeof job->request_id ||
      strnlen(job->request_digest, sizeof job->request_digest) == sizeof job->request_digest ||
      strnlen(job->trace_id, sizeof job->trace_id) == sizeof job->trace_id)
    return invalid(error, "job request fields are not terminated");
  return true;
}

static bool check_request_id(const char *request_id, fzip_error_t *error) {
  return check_name(request_id, STORE_REQUEST_ID_MAX, "request id", "STORE_REQUEST_ID_MAX",
                    error);
}

static int compare_ids(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Pulls the kind's id field out of each document and rejects what no backend
 * could store: missing or invalid ids, oversized documents, duplicates
 * (n <= STORE_BATCH_MAX, checked by the caller). */
static bool extract_ids(const char **ids, const bson_t *const *docs, size_t n, fzip_kind_t kind,
                        fzip_error_t *error) {
  const char *field = fzip_kind_info(kind)->id_field;
  const char *sorted[STORE_BATCH_MAX];

  for (size_t i = 0; i < n; i++) {
    bson_iter_t it;
    if (!docs[i])
      return invalid(error, "document is NULL");
    if (docs[i]->len > STORE_DOC_MAX)
      return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INVALID_ARGUMENT,
                            "store: document %zu is larger than STORE_DOC_MAX", i);
    if (!bson_iter_init_find(&it, docs[i], field) || !BSON_ITER_HOLDS_UTF8(&it))
      return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INVALID_ARGUMENT,
                            "store: document %zu has no string field %s", i, field);
    ids[i] = bson_iter_utf8(&it, NULL);
    if (!check_id(ids[i], field, error))
      return false;
  }
  /* Sorted, a repeated id sits next to its twin: n log n compares (n for
   * a batch in id order, as an import's is) where a scan of every pair was
   * 500k per full batch, 2% of an import's CPU. */
  memcpy(sorted, ids, n * sizeof *ids);
  qsort(sorted, n, sizeof *sorted, compare_ids);
  for (size_t i = 1; i < n; i++) {
    if (strcmp(sorted[i], sorted[i - 1]) == 0)
      return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INVALID_ARGUMENT,
                            "store: id %s appears twice in one batch", sorted[i]);
  }
  return true;
}

/* ---- opening ------------------------------------------------------------- */

bool store_open(store_t **out, const store_options_t *options, fzip_error_t *error) {
  store_options_t opts = {0};
  const char *uri;

  if (!out)
    return invalid(error, "out is NULL");
  *out = NULL;
  if (options)
    opts = *options;
  if (opts.retry_budget_ms < 0)
    return invalid(error, "retry_budget_ms is negative");
  if (opts.retry_budget_ms == 0)
    opts.retry_budget_ms = 10000;
  uri = opts.uri ? opts.uri : STORE_DEFAULT_SQLITE_URI;
  opts.uri = uri;
  if (strncmp(uri, SQLITE_SCHEME, strlen(SQLITE_SCHEME)) == 0) {
    const char *path = uri + strlen(SQLITE_SCHEME);
    if (!*path)
      return invalid(error, "sqlite URI has no path (want sqlite:PATH)");
    return store_sqlite_open(out, &opts, path, error);
  }
  if (strncmp(uri, MONGO_SCHEME, strlen(MONGO_SCHEME)) == 0 ||
      strncmp(uri, MONGO_SRV_SCHEME, strlen(MONGO_SRV_SCHEME)) == 0)
    return store_mongo_open(out, &opts, error);
  return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                        "store: unknown store URI scheme in \"%.100s\" "
                        "(want sqlite:PATH or mongodb://...)",
                        uri);
}

void store_destroy(store_t *store) {
  if (store)
    store->vt->destroy(store);
}

const char *store_backend_name(const store_t *store) { return store ? store->vt->name : NULL; }

bool store_ping(store_t *store, int timeout_ms, fzip_error_t *error) {
  if (timeout_ms <= 0)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INVALID_ARGUMENT,
                          "ping timeout must be positive, got %d ms", timeout_ms);
  return counted(store->vt, "ping", store->vt->ping(store, timeout_ms, error), error);
}

void store_release_memory(store_t *store) {
  if (store && store->vt->release_memory)
    store->vt->release_memory(store);
  fzip_release_memory();
}

/* ---- what readers see: pending imports hidden ----------------------------- */

/* The user's pending import tags, as one reader learned them. */
typedef struct {
  char tags[STORE_PENDING_MAX][STORE_TAG_MAX + 1];
  size_t n;
} pending_t;

/* Loads the pending set, leaving out `see_tag` (a reader that is that
 * import itself sees its own writes). */
static bool pending_load(pending_t *p, store_t *store, const char *user_id, const char *see_tag,
                         fzip_error_t *error) {
  p->n = 0;
  if (!store->vt->import_pending)
    return true;
  if (!counted(store->vt, "import_pending",
               store->vt->import_pending(p->tags, &p->n, store, user_id, error), error))
    return false;
  for (size_t i = 0; see_tag && i < p->n; i++) {
    if (strcmp(p->tags[i], see_tag) == 0) {
      memcpy(p->tags[i], p->tags[--p->n], sizeof p->tags[i]);
      break;
    }
  }
  return true;
}

static bool pending_has(const pending_t *p, const char *tag) {
  for (size_t i = 0; tag && *tag && i < p->n; i++) {
    if (strcmp(p->tags[i], tag) == 0)
      return true;
  }
  return false;
}

static void pending_drop(pending_t *p, const char *tag) {
  for (size_t i = 0; i < p->n; i++) {
    if (strcmp(p->tags[i], tag) == 0) {
      memcpy(p->tags[i], p->tags[--p->n], sizeof p->tags[i]);
      return;
    }
  }
}

/* The version of one document a reader sees: the live one, or, when its
 * tag is pending, the version stashed before the import (*out NULL: the
 * import created it, so it does not exist yet).  *owned is set when *out
 * must be destroyed by the caller; then *stash_seq (stash_seq may be NULL)
 * is the stashed version's change seq. */
static bool visible_version(const bson_t **out, bson_t **owned, uint64_t *stash_seq,
                            pending_t *p, store_t *store, const char *user_id, fzip_kind_t kind,
                            const char *id, const bson_t *live, const char *tag,
                            fzip_error_t *error) {
  fzip_error_t err = {0};
  pending_t now;
  bson_t *prev = NULL;
  uint64_t seq = 0;

  *owned = NULL;
  *out = live;
  if (!id || !pending_has(p, tag))
    return true;
  if (counted(store->vt, "stash_get",
              store->vt->stash_get(&prev, &seq, store, user_id, tag, kind, id, &err), &err)) {
    *out = *owned = prev;
    if (stash_seq)
      *stash_seq = seq;
    return true;
  }
  if (err.code != FZIP_ERR_NOT_FOUND) {
    *error = err;
    return false;
  }
  /* No stash entry: the import created the document -- unless it was
   * committed after this reader loaded the pending set (the commit forgets
   * the stash right after the flip).  Ask again. */
  if (!pending_load(&now, store, user_id, NULL, error))
    return false;
  if (pending_has(&now, tag))
    *out = NULL;
  else
    pending_drop(p, tag);
  return true;
}

static bool date_value(int64_t *out, bson_iter_t *it) {
  if (BSON_ITER_HOLDS_DATE_TIME(it))
    *out = bson_iter_date_time(it);
  else if (BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it))
    *out = bson_iter_as_int64(it);
  else
    return false;
  return true;
}

/* The filter's account and date conditions, evaluated on a document (the
 * backends evaluate them in their queries; a stashed version has to be
 * checked here).  Same semantics: docs/STORAGE.md. */
static bool filter_match(const bson_t *doc, fzip_kind_t kind, const store_filter_t *f) {
  const fzip_kind_info_t *info = fzip_kind_info(kind);
  bson_iter_t it;
  int64_t date = 0;
  bool found = false;

  if (f->n_account_ids > 0) {
    const char *acc = NULL;
    if (!bson_iter_init_find(&it, doc, info->account_field) || !BSON_ITER_HOLDS_UTF8(&it))
      return false;
    acc = bson_iter_utf8(&it, NULL);
    for (size_t i = 0; !found && i < f->n_account_ids; i++)
      found = strcmp(acc, f->account_ids[i]) == 0;
    if (!found)
      return false;
  }
  if (f->has_date_from || f->has_date_to) {
    if (!bson_iter_init_find(&it, doc, info->date_field) || !date_value(&date, &it))
      return false;
    if ((f->has_date_from && date < f->date_from) || (f->has_date_to && date > f->date_to))
      return false;
  }
  return true;
}

static const char *doc_id(const bson_t *doc, fzip_kind_t kind) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, fzip_kind_info(kind)->id_field) && BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return NULL;
}

/* The cursor taken while the user has a pending import: the backend's
 * documents (from after_id on), each replaced by its visible version, then
 * filtered and limited here.  It reads the backend in keyset pages of
 * PCURSOR_PAGE that it copies and closes before looking anything up: a
 * backend cursor left open across the lookups would hold a read open on
 * the server (FerretDB makes every write wait for it, the import's
 * included). */
#define PCURSOR_PAGE 100
/* A page also stops once it holds this many bytes: 100 documents of up to
 * STORE_DOC_MAX each would be 400 MiB. */
#define PCURSOR_PAGE_BYTES (8u * 1024 * 1024)

typedef struct {
  store_cursor_t base;
  store_t *store;
  store_pager_t pg;
  pending_t pending;
  bson_t *owned; /* the stashed version last returned */
} pcursor_t;

static void pcursor_destroy(store_cursor_t *cursor) {
  pcursor_t *c = (pcursor_t *)cursor;
  store_pager_fini(&c->pg);
  bson_destroy(c->owned);
  bson_free(c);
}

/* Reads the next page of live documents and closes the backend cursor. */
static bool pcursor_fill(pcursor_t *c, fzip_error_t *error) {
  /* changed_after on the live documents: a stashed version is older than
   * the live one that replaced it, so none is lost (pcursor_next checks
   * the stashed one's own number). */
  store_filter_t f = {.after_id = c->pg.has_after ? c->pg.after_id : NULL,
                      .limit = PCURSOR_PAGE,
                      .changed_after = c->pg.filter.changed_after};
  store_cursor_t *inner = NULL;
  const bson_t *doc = NULL;
  const char *tag = NULL;
  fzip_error_t err;
  size_t bytes = 0;
  bool ended = false; /* the backend had nothing more */
  bool ok = false;

  store_pager_clear(&c->pg);
  if (!counted(c->store->vt, "cursor_new",
               c->store->vt->cursor_new(&inner, c->store, c->pg.user_id, c->pg.kind, &f, error),
               error))
    return false;
  fzip_error_clear(&err);
  while (c->pg.n < PCURSOR_PAGE && bytes < PCURSOR_PAGE_BYTES) {
    if (!counted(inner->vt, "cursor_next", inner->vt->cursor_next(inner, &doc, &tag, &err),
                 &err)) {
      ended = true;
      break;
    }
    store_pager_add(&c->pg, bson_copy(doc), tag);
    bytes += doc->len;
  }
  if (fzip_error_is_set(&err)) {
    *error = err;
    goto done;
  }
  c->pg.exhausted = ended;
  store_pager_advance(&c->pg);
  ok = true;
done:
  store_cursor_destroy(inner);
  return ok;
}

static bool pcursor_next(store_cursor_t *cursor, const bson_t **doc, const char **tag,
                         fzip_error_t *error) {
  pcursor_t *c = (pcursor_t *)cursor;
  store_pager_t *pg = &c->pg;

  bson_destroy(c->owned);
  c->owned = NULL;
  if (tag)
    *tag = NULL;
  if (pg->has_limit && pg->remaining == 0)
    return false;
  for (;;) {
    const bson_t *live = NULL, *v = NULL;
    const char *live_tag = NULL;
    uint64_t stash_seq = 0;
    if (pg->pos == pg->n) {
      if (pg->exhausted || !pcursor_fill(c, error) || pg->n == 0)
        return false;
    }
    live = store_pager_next(pg, &live_tag);
    if (!visible_version(&v, &c->owned, &stash_seq, &c->pending, c->store, pg->user_id,
                         pg->kind, doc_id(live, pg->kind), live, live_tag, error))
      return false;
    if (v && v == c->owned && pg->filter.changed_after > 0 &&
        stash_seq <= pg->filter.changed_after)
      v = NULL; /* the stashed version has not changed since */
    if (v && filter_match(v, pg->kind, &pg->filter)) {
      if (pg->has_limit)
        pg->remaining--;
      *doc = v;
      return true;
    }
    bson_destroy(c->owned);
    c->owned = NULL;
  }
}

static const store_vtable_t pcursor_vtable = {
    .name = "pending-aware cursor",
    .cursor_next = pcursor_next,
    .cursor_destroy = pcursor_destroy,
};

static bool pcursor_new(store_cursor_t **out, store_t *store, const char *user_id,
                        fzip_kind_t kind, const store_filter_t *filter, const pending_t *pending,
                        fzip_error_t *error) {
  pcursor_t *c = bson_malloc0(sizeof *c);

  (void)error;
  c->base.vt = &pcursor_vtable;
  c->store = store;
  store_pager_init(&c->pg, user_id, kind, filter, PCURSOR_PAGE);
  c->pending = *pending;
  *out = &c->base;
  return true;
}

/* ---- paging cursors (store_backend.h) ------------------------------------ */

void store_pager_init(store_pager_t *p, const char *user_id, fzip_kind_t kind,
                      const store_filter_t *filter, size_t cap) {
  memset(p, 0, sizeof *p);
  snprintf(p->user_id, sizeof p->user_id, "%s", user_id);
  p->kind = kind;
  if (filter) {
    p->filter = *filter;
    p->filter.after_id = NULL;
    p->filter.see_tag = NULL;
    p->has_limit = filter->limit > 0;
    p->remaining = filter->limit;
    if (filter->n_account_ids > 0) {
      p->account_ids = bson_malloc0(filter->n_account_ids * sizeof *p->account_ids);
      for (size_t i = 0; i < filter->n_account_ids; i++)
        p->account_ids[i] = bson_strdup(filter->account_ids[i]);
      p->filter.account_ids = (const char *const *)p->account_ids;
    }
    if (filter->after_id) {
      snprintf(p->after_id, sizeof p->after_id, "%s", filter->after_id);
      p->has_after = true;
    }
  }
  p->cap = cap;
  p->docs = bson_malloc0(cap * sizeof *p->docs);
  p->tags = bson_malloc0(cap * sizeof *p->tags);
}

void store_pager_add(store_pager_t *p, bson_t *doc, const char *tag) {
  snprintf(p->tags[p->n], sizeof p->tags[p->n], "%s", tag ? tag : "");
  p->docs[p->n++] = doc;
}

const bson_t *store_pager_next(store_pager_t *p, const char **tag) {
  if (p->pos == p->n)
    return NULL;
  if (tag)
    *tag = p->tags[p->pos][0] ? p->tags[p->pos] : NULL;
  return p->docs[p->pos++];
}

void store_pager_advance(store_pager_t *p) {
  const char *last = p->n > 0 ? doc_id(p->docs[p->n - 1], p->kind) : NULL;
  if (last) {
    snprintf(p->after_id, sizeof p->after_id, "%s", last);
    p->has_after = true;
  }
}

void store_pager_clear(store_pager_t *p) {
  for (size_t i = 0; i < p->n; i++)
    bson_destroy(p->docs[i]);
  p->n = 0;
  p->pos = 0;
}

void store_pager_fini(store_pager_t *p) {
  store_pager_clear(p);
  bson_free(p->docs);
  bson_free(p->tags);
  for (size_t i = 0; i < p->filter.n_account_ids; i++)
    bson_free(p->account_ids[i]);
  bson_free(p->account_ids);
}

/* ---- entities ------------------------------------------------------------ */

/* The checks of a filtered read, then the pending set as that reader sees
 * it: *pending is the caller's to bson_free (set even when this fails). */
static bool read_begin(pending_t **pending, store_t *store, const char *user_id,
                       fzip_kind_t kind, const store_filter_t *filter, fzip_error_t *error) {
  *pending = NULL;
  if (!check_user(user_id, error) || !check_kind(kind, error) ||
      !check_filter(filter, kind, error))
    return false;
  *pending = bson_malloc0(sizeof **pending);
  return pending_load(*pending, store, user_id, filter ? filter->see_tag : NULL, error);
}

bool store_cursor_new(store_cursor_t **out, store_t *store, const char *user_id,
                      fzip_kind_t kind, const store_filter_t *filter, fzip_error_t *error) {
  pending_t *pending = NULL;
  bool ok = false;

  if (!out || !store)
    return invalid(error, "out or store is NULL");
  *out = NULL;
  if (!read_begin(&pending, store, user_id, kind, filter, error))
    goto done;
  /* The plain path when nothing is pending: the backend filters itself. */
  if (pending->n == 0)
    ok = counted(store->vt, "cursor_new",
                 store->vt->cursor_new(out, store, user_id, kind, filter, error), error);
  else
    ok = pcursor_new(out, store, user_id, kind, filter, pending, error);
done:
  bson_free(pending);
  return ok;
}

bool store_cursor_next(store_cursor_t *cursor, const bson_t **doc, fzip_error_t *error) {
  if (!cursor || !doc)
    return invalid(error, "cursor or doc is NULL");
  /* At the end the backend leaves the error untouched: a local one, so a
   * caller's uninitialised struct is never read as a fault. */
  fzip_error_t err = {0};
  if (counted(cursor->vt, "cursor_next", cursor->vt->cursor_next(cursor, doc, NULL, &err), &err))
    return true;
  if (fzip_error_is_set(&err) && error)
    *error = err;
  return false;
}

void store_cursor_destroy(store_cursor_t *cursor) {
  if (cursor)
    cursor->vt->cursor_destroy(cursor);
}

bool store_entity_count(uint64_t *out, store_t *store, const char *user_id, fzip_kind_t kind,
                        const store_filter_t *filter, fzip_error_t *error) {
  pending_t *pending = NULL;
  store_cursor_t *cur = NULL;
  const bson_t *doc = NULL;
  fzip_error_t err;
  uint64_t n = 0;
  bool ok = false;

  if (!out || !store)
    return invalid(error, "out or store is NULL");
  if (!read_begin(&pending, store, user_id, kind, filter, error))
    goto done;
  if (pending->n == 0) {
    ok = counted(store->vt, "entity_count",
                 store->vt->entity_count(out, store, user_id, kind, filter, error), error);
    goto done;
  }
  /* Rare (an import is running): count what a cursor shows, streaming. */
  if (!pcursor_new(&cur, store, user_id, kind, filter, pending, error))
    goto done;
  fzip_error_clear(&err);
  while (store_cursor_next(cur, &doc, &err))
    n++;
  if (fzip_error_is_set(&err)) {
    *error = err;
    goto done;
  }
  *out = n;
  ok = true;
done:
  store_cursor_destroy(cur);
  bson_free(pending);
  return ok;
}

/* store_entity_get without argument checks; also used by exists_many. */
static bool get_visible(bson_t **out, store_t *store, const char *user_id, fzip_kind_t kind,
                        const char *id, fzip_error_t *error) {
  char tag[STORE_TAG_MAX + 1] = "";
  pending_t *pending = NULL;
  bson_t *live = NULL, *owned = NULL;
  const bson_t *v = NULL;
  bool ok = false;

  if (!counted(store->vt, "entity_get",
               store->vt->entity_get(&live, tag, store, user_id, kind, id, error), error))
    return false;
  if (!tag[0] || !store->vt->import_pending) {
    *out = live;
    return true;
  }
  pending = bson_malloc0(sizeof *pending);
  if (!pending_load(pending, store, user_id, NULL, error) ||
      !visible_version(&v, &owned, NULL, pending, store, user_id, kind, id, live, tag, error))
    goto done;
  if (!v) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, "entity %s not found", id);
    goto done;
  }
  *out = v == live ? live : owned;
  if (v == live)
    live = NULL;
  else
    owned = NULL;
  ok = true;
done:
  bson_destroy(live);
  bson_destroy(owned);
  bson_free(pending);
  return ok;
}

bool store_entity_get(bson_t **out, store_t *store, const char *user_id, fzip_kind_t kind,
                      const char *id, fzip_error_t *error) {
  if (!out || !store)
    return invalid(error, "out or store is NULL");
  *out = NULL;
  if (!check_user(user_id, error) || !check_kind(kind, error) ||
      !check_id(id, "entity id", error))
    return false;
  return get_visible(out, store, user_id, kind, id, error);
}

/* What plain and tagged batch writes check alike (the store, user and kind
 * are checked by the caller); ids[i] gets docs[i]'s id. */
static bool check_batch(const char **ids, const bson_t *const *docs, size_t n, fzip_kind_t kind,
                        store_write_mode_t mode, fzip_error_t *error) {
  if (mode != STORE_WRITE_INSERT && mode != STORE_WRITE_REPLACE &&
      mode != STORE_WRITE_SKIP_EXISTING)
    return invalid(error, "write mode out of range");
  if (n > STORE_BATCH_MAX)
    return invalid(error, "more documents than STORE_BATCH_MAX");
  if (n > 0 && !docs)
    return invalid(error, "docs is NULL");
  return extract_ids(ids, docs, n, kind, error);
}

bool store_entity_put_batch(store_t *store, const char *user_id, fzip_kind_t kind,
                            const bson_t *const *docs, size_t n, store_write_mode_t mode,
                            store_write_result_t *result, fzip_error_t *error) {
  const char *ids[STORE_BATCH_MAX];
  if (!writable(store, error) || !check_user(user_id, error) || !check_kind(kind, error) ||
      !check_batch(ids, docs, n, kind, mode, error))
    return false;
  if (n == 0)
    return true;
  return counted(store->vt, "entity_put_batch",
                 store->vt->entity_put_batch(store, user_id, kind, docs, ids, n, mode, result,
                                             error),
                 error);
}

bool store_entity_exists_many(bool *exists, store_t *store, const char *user_id,
                              fzip_kind_t kind, const char *const *ids, size_t n,
                              fzip_error_t *error) {
  pending_t *pending = NULL;
  bool ok = false;

  if (!store || (n > 0 && !exists))
    return invalid(error, "store or exists is NULL");
  if (!check_user(user_id, error) || !check_kind(kind, error) || !check_ids(ids, n, error))
    return false;
  if (n == 0)
    return true;
  if (!fzip_failpoint("store.entity_exists_many", error)) /* tests count the calls */
    return false;
  pending = bson_malloc0(sizeof *pending);
  if (!pending_load(pending, store, user_id, NULL, error))
    goto done;
  if (pending->n == 0) {
    ok = counted(store->vt, "entity_exists_many",
                 store->vt->entity_exists_many(exists, store, user_id, kind, ids, n, error), error);
    goto done;
  }
  /* Rare (an import is running): one visible get per id. */
  for (size_t i = 0; i < n; i++) {
    bson_t *doc = NULL;
    fzip_error_t err = {0};
    exists[i] = get_visible(&doc, store, user_id, kind, ids[i], &err);
    bson_destroy(doc);
    if (!exists[i] && err.code != FZIP_ERR_NOT_FOUND) {
      *error = err;
      goto done;
    }
  }
  ok = true;
done:
  bson_free(pending);
  return ok;
}

static void docs_clear(bson_t **docs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    bson_destroy(docs[i]);
    docs[i] = NULL;
  }
}

/* Puts the visible version in place of each live document whose tag is
 * pending for this reader (the stashed one, or NULL: the import made it). */
static bool get_many_visible(bson_t **docs, const char (*tags)[STORE_TAG_MAX + 1],
                             pending_t *pending, store_t *store, const char *user_id,
                             fzip_kind_t kind, const char *const *ids, size_t n,
                             fzip_error_t *error) {
  for (size_t i = 0; i < n; i++) {
    const bson_t *v = NULL;
    bson_t *owned = NULL;
    if (!docs[i] || !pending_has(pending, tags[i]))
      continue;
    if (!visible_version(&v, &owned, NULL, pending, store, user_id, kind, ids[i], docs[i],
                         tags[i], error))
      return false;
    if (v != docs[i]) {
      bson_destroy(docs[i]);
      docs[i] = owned;
    }
  }
  return true;
}

bool store_entity_get_many(bson_t **docs, store_t *store, const char *user_id, fzip_kind_t kind,
                           const char *const *ids, size_t n, const char *see_tag,
                           fzip_error_t *error) {
  char(*tags)[STORE_TAG_MAX + 1] = NULL;
  pending_t *pending = NULL;
  bool ok = false;

  if (!store || (n > 0 && !docs))
    return invalid(error, "store or docs is NULL");
  if (n > 0)
    memset(docs, 0, n * sizeof *docs);
  if (!check_user(user_id, error) || !check_kind(kind, error) || !check_ids(ids, n, error))
    return false;
  if (n == 0)
    return true;
  if (!store->vt->entity_get_many)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_UNIMPLEMENTED,
                          "store: %s has no entity_get_many", store->vt->name);
  tags = bson_malloc0(n * sizeof *tags);
  pending = bson_malloc0(sizeof *pending);
  /* The pending set first, as exists_many: a commit in between is seen by
   * visible_version (no stash entry left), which asks again. */
  if (!pending_load(pending, store, user_id, see_tag, error) ||
      !counted(store->vt, "entity_get_many",
               store->vt->entity_get_many(docs, tags, store, user_id, kind, ids, n, error),
               error))
    goto done;
  ok = pending->n == 0 ||
       get_many_visible(docs, (const char(*)[STORE_TAG_MAX + 1])tags, pending, store, user_id,
                        kind, ids, n, error);
done:
  if (!ok)
    docs_clear(docs, n);
  bson_free(tags);
  bson_free(pending);
  return ok;
}

bool store_entity_delete_many(uint64_t *deleted, store_t *store, const char *user_id,
                              fzip_kind_t kind, const char *const *ids, size_t n,
                              fzip_error_t *error) {
  if (!writable(store, error) || !check_user(user_id, error) || !check_kind(kind, error) ||
      !check_ids(ids, n, error))
    return false;
  if (n == 0) {
    if (deleted)
      *deleted = 0;
    return true;
  }
  return counted(store->vt, "entity_delete_many",
                 store->vt->entity_delete_many(deleted, store, user_id, kind, ids, n, error),
                 error);
}

bool store_entity_delete_all(uint64_t *deleted, store_t *store, const char *user_id,
                             fzip_kind_t kind, fzip_error_t *error) {
  if (!writable(store, error) || !check_user(user_id, error) || !check_kind(kind, error))
    return false;
  return counted(store->vt, "entity_delete_all",
                 store->vt->entity_delete_all(deleted, store, user_id, kind, error), error);
}

/* ---- jobs ---------------------------------------------------------------- */

store_job_t *store_job_new(void) {
  store_job_t *job = bson_malloc0(sizeof *job);
  job->body = bson_new();
  return job;
}

void store_job_destroy(store_job_t *job) {
  if (!job)
    return;
  bson_destroy(job->body);
  bson_free(job);
}

void store_job_list_free(store_job_t **jobs, size_t n_jobs) {
  if (!jobs)
    return;
  for (size_t i = 0; i < n_jobs; i++)
    store_job_destroy(jobs[i]);
  bson_free(jobs);
}

bool store_job_create(store_t *store, store_job_t *job, fzip_error_t *error) {
  if (!writable(store, error) || !check_job_record(job, error))
    return false;
  return counted(store->vt, "job_create", store->vt->job_create(store, job, error), error);
}

bool store_job_get(store_job_t **out, store_t *store, store_job_kind_t kind, const char *user_id,
                   const char *job_id, fzip_error_t *error) {
  if (!out || !store)
    return invalid(error, "out or store is NULL");
  *out = NULL;
  if (!check_job_kind(kind, error) || (user_id && !check_user(user_id, error)) ||
      !check_id(job_id, "job id", error))
    return false;
  return counted(store->vt, "job_get",
                 store->vt->job_get(out, store, kind, user_id, job_id, error), error);
}

bool store_job_update(store_t *store, store_job_t *job, const char *owner, fzip_error_t *error) {
  if (!writable(store, error) || !check_job_record(job, error) ||
      (owner && !check_owner(owner, error)))
    return false;
  return counted(store->vt, "job_update", store->vt->job_update(store, job, owner, error), error);
}

bool store_job_list(store_job_t ***jobs, size_t *n_jobs, char **next_token, store_t *store,
                    store_job_kind_t kind, const char *user_id, size_t page_size,
                    const char *page_token, fzip_error_t *error) {
  if (!jobs || !n_jobs || !next_token || !store)
    return invalid(error, "jobs, n_jobs, next_token or store is NULL");
  *jobs = NULL;
  *n_jobs = 0;
  *next_token = NULL;
  if (!check_job_kind(kind, error) || !check_user(user_id, error))
    return false;
  if (page_size > STORE_PAGE_MAX)
    return invalid(error, "page size larger than STORE_PAGE_MAX");
  if (page_size == 0)
    page_size = STORE_PAGE_DEFAULT;
  if (page_token && strnlen(page_token, STORE_BLOB_ID_MAX + 1) > STORE_BLOB_ID_MAX)
    return invalid(error, "page token too long");
  if (page_token && !*page_token)
    page_token = NULL;
  return counted(store->vt, "job_list",
                 store->vt->job_list(jobs, n_jobs, next_token, store, kind, user_id, page_size,
                                     page_token, error), error);
}

bool store_job_delete(store_t *store, store_job_kind_t kind, const char *user_id,
                      const char *job_id, fzip_error_t *error) {
  if (!writable(store, error) || !check_job_kind(kind, error) ||
      (user_id && !check_user(user_id, error)) || !check_id(job_id, "job id", error))
    return false;
  return counted(store->vt, "job_delete",
                 store->vt->job_delete(store, kind, user_id, job_id, error), error);
}

bool store_job_claim(store_job_t **out, store_t *store, store_job_kind_t kind, const char *owner,
                     int64_t now_ms, int64_t lease_ms, fzip_error_t *error) {
  if (!writable(store, error))
    return false;
  if (!out || !store)
    return invalid(error, "out or store is NULL");
  *out = NULL;
  if (!check_job_kind(kind, error) || !check_owner(owner, error))
    return false;
  if (lease_ms <= 0)
    return invalid(error, "lease_ms must be positive");
  return counted(store->vt, "job_claim",
                 store->vt->job_claim(out, store, kind, owner, now_ms, lease_ms, error), error);
}

bool store_job_renew(store_t *store, store_job_t *job, const char *owner, int64_t now_ms,
                     int64_t lease_ms, fzip_error_t *error) {
  if (!writable(store, error) || !check_job_record(job, error) || !check_owner(owner, error))
    return false;
  if (lease_ms <= 0)
    return invalid(error, "lease_ms must be positive");
  return counted(store->vt, "job_renew",
                 store->vt->job_renew(store, job, owner, now_ms, lease_ms, error), error);
}

void store_job_idem_key(char out[STORE_IDEM_KEY_SIZE], const char *request_id,
                        const char *job_id) {
  if (request_id && request_id[0])
    snprintf(out, STORE_IDEM_KEY_SIZE, "r:%s", request_id);
  else
    snprintf(out, STORE_IDEM_KEY_SIZE, "j:%s", job_id);
}

bool store_job_find_request(store_job_t **out, store_t *store, store_job_kind_t kind,
                            const char *user_id, const char *request_id, fzip_error_t *error) {
  if (!out || !store)
    return invalid(error, "out or store is NULL");
  *out = NULL;
  if (!check_job_kind(kind, error) || !check_user(user_id, error) ||
      !check_request_id(request_id, error))
    return false;
  return counted(store->vt, "job_find_request",
                 store->vt->job_find_request(out, store, kind, user_id, request_id, error), error);
}

bool store_job_release_request(store_t *store, store_job_kind_t kind, const char *user_id,
                               const char *job_id, fzip_error_t *error) {
  if (!writable(store, error) || !check_job_kind(kind, error) || !check_user(user_id, error) ||
      !check_id(job_id, "job id", error))
    return false;
  return counted(store->vt, "job_release_request",
                 store->vt->job_release_request(store, kind, user_id, job_id, error), error);
}

bool store_job_count_queued(uint64_t *out, store_t *store, store_job_kind_t kind, int64_t now_ms,
                            fzip_error_t *error) {
  if (!out || !store)
    return invalid(error, "out or store is NULL");
  *out = 0;
  if (!check_job_kind(kind, error))
    return false;
  return counted(store->vt, "job_count_queued",
                 store->vt->job_count_queued(out, store, kind, now_ms, error), error);
}

bool store_job_count_runnable(uint64_t *out, store_t *store, const char *user_id,
                              fzip_error_t *error) {
  if (!out || !store)
    return invalid(error, "out or store is NULL");
  *out = 0;
  if (!check_user(user_id, error))
    return false;
  return counted(store->vt, "job_count_runnable",
                 store->vt->job_count_runnable(out, store, user_id, error), error);
}

/* Hands an error met on the way up to the caller; returns false. */
static bool pass_error(fzip_error_t *error, const fzip_error_t *met) {
  if (error)
    *error = *met;
  return false;
}

/* One round of store_job_create_once after a refused create: the key's
 * holder, if recent, is the answer (*done); an old one gives the key up. */
static bool take_request_holder(store_job_t **existing, bool *done, store_t *store,
                                const store_job_t *job, int64_t window_ms, fzip_error_t *error) {
  store_job_t *holder = NULL;
  fzip_error_t ferr;

  *done = false;
  fzip_error_clear(&ferr);
  if (!store_job_find_request(&holder, store, job->kind, job->user_id, job->request_id, &ferr))
    /* Deleted or given up between the create and the find: try again. */
    return ferr.code == FZIP_ERR_NOT_FOUND || pass_error(error, &ferr);
  if (holder->created_at > job->created_at - window_ms) {
    *existing = holder;
    *done = true;
    return true;
  }
  bool ok = store_job_release_request(store, job->kind, job->user_id, holder->job_id, error);
  store_job_destroy(holder);
  return ok;
}

bool store_job_create_once(store_job_t **existing, store_t *store, store_job_t *job,
                           int64_t window_ms, fzip_error_t *error) {
  fzip_error_t cerr;
  bool done = false;

  if (!existing)
    return invalid(error, "existing is NULL");
  *existing = NULL;
  if (!job || !job->request_id[0])
    return store_job_create(store, job, error);
  if (!check_request_id(job->request_id, error))
    return false;
  if (window_ms < 0)
    return invalid(error, "request window is negative");
  for (int attempt = 0; attempt < STORE_REQUEST_RETRIES; attempt++) {
    fzip_error_clear(&cerr);
    if (store_job_create(store, job, &cerr))
      return true;
    if (cerr.code != FZIP_ERR_ALREADY_EXISTS)
      return pass_error(error, &cerr);
    if (!take_request_holder(existing, &done, store, job, window_ms, error))
      return false;
    if (done)
      return true;
  }
  return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ALREADY_EXISTS,
                        "store: request id of job %s kept changing hands; try again",
                        job->job_id);
}

bool store_job_list_expired(store_job_t ***jobs, size_t *n_jobs, store_t *store, int64_t now_ms,
                            size_t max, fzip_error_t *error) {
  if (!jobs || !n_jobs || !store)
    return invalid(error, "jobs, n_jobs or store is NULL");
  *jobs = NULL;
  *n_jobs = 0;
  if (max == 0 || max > STORE_PAGE_MAX)
    return invalid(error, "max must be in 1..STORE_PAGE_MAX");
  return counted(store->vt, "job_list_expired",
                 store->vt->job_list_expired(jobs, n_jobs, store, now_ms, max, error), error);
}

/* ---- blobs --------------------------------------------------------------- */

/* The public writer: chunking and hashing happen here, once for every
 * backend, which only stores numbered chunks (store_backend.h).  Memory is
 * one buffer of STORE_BLOB_BATCH bytes whatever the blob's size.  On a
 * backend with blob_put the upload starts only when the buffer first
 * fills: a blob that never does is stored by its commit in one write. */
struct store_blob_writer {
  store_t *store;
  store_bucket_t bucket;
  store_blob_upload_t *upload; /* NULL until started (upload_start) */
  char blob_id[STORE_BLOB_ID_MAX + 1];
  uint8_t *buf; /* the chunks being filled, STORE_BLOB_BATCH bytes */
  size_t buf_len;
  int64_t next_chunk;
  uint64_t size;
  fzip_sha256_t *sha;
  bool hashed; /* info holds the final size and sha256 */
  store_blob_info_t info;
  bool committed;
  bool failed; /* a chunk was not stored: size and sha256 no longer match the bytes */
};

/* The backend's blob_put, behind the failpoint a flushed chunk passes (a
 * test that fails chunk writes fails whole blobs too; *failed then). */
static bool backend_put(store_t *store, store_bucket_t bucket, const store_blob_part_t *blobs,
                        const store_blob_info_t *infos, size_t n, bool *failed,
                        fzip_error_t *error) {
  if (!fzip_failpoint("store.blob_chunk", error)) {
    *failed = true;
    return false;
  }
  return counted(store->vt, "blob_put", store->vt->blob_put(store, bucket, blobs, infos, n, error),
                 error);
}

static bool upload_start(store_blob_writer_t *w, fzip_error_t *error) {
  const store_vtable_t *vt = w->store->vt;
  return counted(vt, "blob_upload_new",
                 vt->blob_upload_new(&w->upload, w->store, w->bucket, w->blob_id, error), error);
}

/* A deferred upload's early answer: ALREADY_EXISTS now rather than after
 * the caller has streamed the bytes (the commit checks again). */
static bool check_blob_absent(const store_blob_writer_t *w, fzip_error_t *error) {
  store_blob_info_t info;
  fzip_error_t stat_error = {0};

  if (counted(w->store->vt, "blob_stat",
              w->store->vt->blob_stat(&info, w->store, w->bucket, w->blob_id, &stat_error),
              &stat_error))
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ALREADY_EXISTS,
                          "blob %s already exists", w->blob_id);
  if (stat_error.code == FZIP_ERR_NOT_FOUND)
    return true;
  *error = stat_error;
  return false;
}

bool store_blob_writer_new(store_blob_writer_t **out, store_t *store, store_bucket_t bucket,
                           const char *blob_id, fzip_error_t *error) {
  store_blob_writer_t *w = NULL;

  if (!writable(store, error))
    return false;
  if (!out || !store)
    return invalid(error, "out or store is NULL");
  *out = NULL;
  if (!check_bucket(bucket, error) || !check_blob_id(blob_id, error))
    return false;
  w = bson_malloc0(sizeof *w);
  w->store = store;
  w->bucket = bucket;
  snprintf(w->blob_id, sizeof w->blob_id, "%s", blob_id);
  w->buf = bson_malloc(STORE_BLOB_BATCH);
  w->sha = fzip_sha256_new();
  if (!w->sha) {
    store_blob_writer_destroy(w);
    return fzip_error_oom(error, "sha256");
  }
  if (!(store->vt->blob_put ? check_blob_absent(w, error) : upload_start(w, error))) {
    store_blob_writer_destroy(w);
    return false;
  }
  *out = w;
  return true;
}

/* A writer takes bytes only while it is neither committed nor broken: after
 * a failed chunk its size and sha256 count bytes the backend never stored,
 * so neither more bytes nor a commit may follow (only destroy). */
static bool not_committed(const store_blob_writer_t *w, fzip_error_t *error) {
  if (w->committed)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_FAILED_PRECONDITION,
                          "blob %s is already committed", w->blob_id);
  if (w->failed)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_FAILED_PRECONDITION,
                          "blob %s: an earlier write failed; the writer can only be destroyed",
                          w->blob_id);
  return true;
}

/* Hands the buffered chunks (if any) to the backend in one call. */
static bool writer_flush(store_blob_writer_t *w, fzip_error_t *error) {
  if (w->buf_len == 0)
    return true;
  if (!w->upload && !upload_start(w, error)) {
    w->failed = true;
    return false;
  }
  if (!fzip_failpoint("store.blob_chunk", error) ||
      !counted(w->upload->vt, "blob_upload_chunks",
               w->upload->vt->blob_upload_chunks(w->upload, w->next_chunk, w->buf, w->buf_len,
                                                 error),
               error)) {
    w->failed = true;
    return false;
  }
  w->next_chunk += (int64_t)((w->buf_len + STORE_BLOB_CHUNK - 1) / STORE_BLOB_CHUNK);
  w->buf_len = 0;
  return true;
}

bool store_blob_writer_write(store_blob_writer_t *w, const void *data, size_t len,
                             fzip_error_t *error) {
  const uint8_t *p = data;

  if (!w || (len > 0 && !data))
    return invalid(error, "writer or data is NULL");
  if (len == 0)
    return true;
  if (!not_committed(w, error))
    return false;
  fzip_sha256_update(w->sha, data, len);
  w->size += len;
  while (len > 0) {
    size_t take;
    /* A full buffer goes to the backend only when more bytes come: a blob
     * of exactly STORE_BLOB_BATCH bytes is still the commit's one write. */
    if (w->buf_len == STORE_BLOB_BATCH && !writer_flush(w, error))
      return false;
    take = STORE_BLOB_BATCH - w->buf_len;
    if (take > len)
      take = len;
    memcpy(w->buf + w->buf_len, p, take);
    w->buf_len += take;
    p += take;
    len -= take;
  }
  return true;
}

bool store_blob_writer_commit(store_blob_writer_t *w, store_blob_info_t *info,
                              fzip_error_t *error) {
  if (!w)
    return invalid(error, "writer is NULL");
  if (!not_committed(w, error))
    return false;
  /* Finalised once, so a commit retried after a failed one keeps the hash. */
  if (!w->hashed) {
    w->info.size = w->size;
    fzip_sha256_final_hex(w->sha, w->info.sha256);
    w->hashed = true;
  }
  if (!w->upload) {
    /* The whole blob is in buf: one write stores and commits it. */
    store_blob_part_t part = {w->blob_id, w->buf, w->buf_len};
    if (!backend_put(w->store, w->bucket, &part, &w->info, 1, &w->failed, error))
      return false;
    w->buf_len = 0;
  } else if (!writer_flush(w, error) ||
             !counted(w->upload->vt, "blob_upload_commit",
                      w->upload->vt->blob_upload_commit(w->upload, &w->info, error), error)) {
    return false;
  }
  w->committed = true;
  if (info)
    *info = w->info;
  return true;
}

void store_blob_writer_destroy(store_blob_writer_t *w) {
  if (!w)
    return;
  if (w->upload)
    w->upload->vt->blob_upload_destroy(w->upload);
  fzip_sha256_destroy(w->sha);
  bson_free(w->buf);
  bson_free(w);
}

/* One blob through a writer of its own (a backend without blob_put). */
static bool put_one(store_t *store, store_bucket_t bucket, const store_blob_part_t *b,
                    fzip_error_t *error) {
  store_blob_writer_t *w = NULL;
  bool ok = store_blob_writer_new(&w, store, bucket, b->blob_id, error) &&
            store_blob_writer_write(w, b->data, b->len, error) &&
            store_blob_writer_commit(w, NULL, error);
  store_blob_writer_destroy(w);
  return ok;
}

static bool check_parts(const store_blob_part_t *blobs, size_t n, fzip_error_t *error) {
  size_t total = 0;

  if (n == 0 || n > STORE_BLOB_PUT_MAX)
    return invalid(error, "blob count must be 1..STORE_BLOB_PUT_MAX");
  for (size_t i = 0; i < n; i++) {
    if (!check_blob_id(blobs[i].blob_id, error))
      return false;
    if (blobs[i].len > 0 && !blobs[i].data)
      return invalid(error, "blob data is NULL");
    if (blobs[i].len > STORE_BLOB_BATCH - total)
      return invalid(error, "blobs of more than STORE_BLOB_BATCH bytes in all");
    total += blobs[i].len;
    for (size_t j = 0; j < i; j++)
      if (strcmp(blobs[j].blob_id, blobs[i].blob_id) == 0)
        return invalid(error, "blob id given twice");
  }
  return true;
}

bool store_blob_put_many(store_t *store, store_bucket_t bucket, const store_blob_part_t *blobs,
                         size_t n, fzip_error_t *error) {
  store_blob_info_t infos[STORE_BLOB_PUT_MAX];
  fzip_sha256_t *sha = NULL;
  bool failed = false; /* nothing to mark: the call holds no writer */

  if (!writable(store, error))
    return false;
  if (!blobs)
    return invalid(error, "blobs is NULL");
  if (!check_bucket(bucket, error) || !check_parts(blobs, n, error))
    return false;
  if (!store->vt->blob_put) {
    for (size_t i = 0; i < n; i++)
      if (!put_one(store, bucket, &blobs[i], error))
        return false;
    return true;
  }
  sha = fzip_sha256_new();
  if (!sha)
    return fzip_error_oom(error, "sha256");
  for (size_t i = 0; i < n; i++) {
    fzip_sha256_reset(sha);
    if (blobs[i].len > 0)
      fzip_sha256_update(sha, blobs[i].data, blobs[i].len);
    infos[i].size = blobs[i].len;
    fzip_sha256_final_hex(sha, infos[i].sha256);
  }
  fzip_sha256_destroy(sha);
  return backend_put(store, bucket, blobs, infos, n, &failed, error);
}

struct store_blob_pack {
  store_t *store;
  store_bucket_t bucket;
  uint8_t *buf; /* STORE_BLOB_BATCH bytes */
  size_t used;
  size_t n;
  store_blob_part_t parts[STORE_BLOB_PUT_MAX];
  char ids[STORE_BLOB_PUT_MAX][STORE_BLOB_ID_MAX + 1];
};

bool store_blob_pack_new(store_blob_pack_t **out, store_t *store, store_bucket_t bucket,
                         fzip_error_t *error) {
  store_blob_pack_t *p;

  if (!out || !store)
    return invalid(error, "out or store is NULL");
  *out = NULL;
  if (!check_bucket(bucket, error))
    return false;
  p = bson_malloc0(sizeof *p);
  p->store = store;
  p->bucket = bucket;
  p->buf = bson_malloc(STORE_BLOB_BATCH);
  *out = p;
  return true;
}

void store_blob_pack_destroy(store_blob_pack_t *pack) {
  if (!pack)
    return;
  bson_free(pack->buf);
  bson_free(pack);
}

bool store_blob_pack_fits(const store_blob_pack_t *pack, size_t len) {
  return pack->n < STORE_BLOB_PUT_MAX && len <= STORE_BLOB_BATCH - pack->used;
}

uint8_t *store_blob_pack_space(store_blob_pack_t *pack) {
  return pack->buf + pack->used;
}

bool store_blob_pack_add(store_blob_pack_t *pack, const char *blob_id, size_t len,
                         fzip_error_t *error) {
  if (!store_blob_pack_fits(pack, len))
    return invalid(error, "the blob does not fit in the pack: flush it first");
  if (!check_blob_id(blob_id, error))
    return false;
  snprintf(pack->ids[pack->n], sizeof pack->ids[pack->n], "%s", blob_id);
  pack->parts[pack->n] =
      (store_blob_part_t){pack->ids[pack->n], pack->buf + pack->used, len};
  pack->used += len;
  pack->n++;
  return true;
}

bool store_blob_pack_flush(store_blob_pack_t *pack, size_t *n, uint64_t *bytes,
                           fzip_error_t *error) {
  size_t count = pack->n;
  uint64_t used = pack->used;
  bool ok = count == 0 ||
            store_blob_put_many(pack->store, pack->bucket, pack->parts, count, error);

  pack->n = 0;
  pack->used = 0;
  if (n)
    *n = ok ? count : 0;
  if (bytes)
    *bytes = ok ? used : 0;
  return ok;
}

/* The public reader: like the writer, it does the chunk arithmetic once
 * for every backend; the backend only fetches chunks in order.  A chunk
 * the caller's buffer holds whole is fetched straight into it; the others
 * (the first one of an offset inside a chunk, the last ones of a short
 * buffer) into the reader's own chunk buffer, allocated when first needed
 * and copied out from.  Memory: at most that one chunk. */
struct store_blob_reader {
  store_blob_download_t *download;
  uint64_t size;
  uint64_t chunk_size;
  uint64_t pos;    /* offset of the next byte to return */
  uint8_t *buf;    /* chunk chunk_n (chunk_size bytes; NULL until needed) */
  size_t buf_len;  /* its bytes */
  int64_t chunk_n; /* the chunk in buf; -1 if none */
};

bool store_blob_reader_new(store_blob_reader_t **out, store_t *store, store_bucket_t bucket,
                           const char *blob_id, uint64_t offset, fzip_error_t *error) {
  store_blob_reader_t *r = NULL;
  store_blob_info_t info;

  if (!out || !store)
    return invalid(error, "out or store is NULL");
  *out = NULL;
  if (!check_bucket(bucket, error) || !check_blob_id(blob_id, error))
    return false;
  r = bson_malloc0(sizeof *r);
  r->chunk_n = -1;
  if (!counted(store->vt, "blob_download_new",
               store->vt->blob_download_new(&r->download, &info, &r->chunk_size, store, bucket,
                                            blob_id, error),
               error)) {
    store_blob_reader_destroy(r);
    return false;
  }
  /* A backend reports what its blob records; the reader divides by it. */
  if (r->chunk_size == 0 || r->chunk_size > STORE_BLOB_CHUNK_MAX) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                   "blob %s has chunks of %llu bytes; readers take 1 to %d", blob_id,
                   (unsigned long long)r->chunk_size, STORE_BLOB_CHUNK_MAX);
    store_blob_reader_destroy(r);
    return false;
  }
  if (offset > info.size) {
    store_blob_reader_destroy(r);
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_OUT_OF_RANGE,
                          "offset %llu is beyond the end of blob %s (%llu bytes)",
                          (unsigned long long)offset, blob_id, (unsigned long long)info.size);
  }
  r->size = info.size;
  r->pos = offset;
  *out = r;
  return true;
}

/* The length of chunk n (the last one may be short). */
static size_t reader_chunk_len(const store_blob_reader_t *r, int64_t n) {
  return store_chunk_len_of((size_t)r->size, (size_t)((uint64_t)n * r->chunk_size), r->chunk_size);
}

/* The number of the blob's last chunk (-1 for an empty blob). */
static int64_t reader_last_chunk(const store_blob_reader_t *r) {
  return (int64_t)((r->size + r->chunk_size - 1) / r->chunk_size) - 1;
}

/* Has the backend copy chunks n, n + 1, ... (len bytes, ending at a
 * chunk's end) into dst. */
static bool reader_fetch(store_blob_reader_t *r, int64_t n, size_t len, uint8_t *dst,
                         fzip_error_t *error) {
  return counted(r->download->vt, "blob_download_chunks",
                 r->download->vt->blob_download_chunks(r->download, n, len, dst, error), error);
}

/* The bytes of the run of whole chunks from chunk n on that fits in room
 * (at most STORE_BLOB_READ_CHUNKS chunks); 0 if not even chunk n does. */
static size_t reader_run_len(const store_blob_reader_t *r, int64_t n, size_t room) {
  const int64_t last = reader_last_chunk(r);
  size_t len = 0;
  for (int k = 0; k < STORE_BLOB_READ_CHUNKS && n + k <= last; k++) {
    size_t next = reader_chunk_len(r, n + k);
    if (next > room - len)
      break;
    len += next;
  }
  return len;
}

/* Makes chunk n the one in the reader's buffer. */
static bool reader_load(store_blob_reader_t *r, int64_t n, fzip_error_t *error) {
  size_t want = reader_chunk_len(r, n);

  if (!r->buf)
    r->buf = bson_malloc((size_t)r->chunk_size);
  r->chunk_n = -1;
  if (!reader_fetch(r, n, want, r->buf, error))
    return false;
  r->buf_len = want;
  r->chunk_n = n;
  return true;
}

bool store_blob_reader_read(store_blob_reader_t *r, void *buf, size_t len, size_t *n,
                            fzip_error_t *error) {
  uint8_t *out = buf;

  if (!r || !n || (len > 0 && !buf))
    return invalid(error, "reader, buf or n is NULL");
  *n = 0;
  while (*n < len && r->pos < r->size) {
    int64_t chunk = (int64_t)(r->pos / r->chunk_size);
    size_t at = (size_t)(r->pos % r->chunk_size);
    size_t take;

    if (chunk != r->chunk_n) {
      size_t run = at == 0 ? reader_run_len(r, chunk, len - *n) : 0;
      if (run > 0) {
        if (!reader_fetch(r, chunk, run, out + *n, error))
          return false;
        *n += run;
        r->pos += run;
        continue;
      }
      if (!reader_load(r, chunk, error))
        return false;
    }
    take = r->buf_len - at;
    if (take > len - *n)
      take = len - *n;
    memcpy(out + *n, r->buf + at, take);
    *n += take;
    r->pos += take;
  }
  return true;
}

size_t store_blob_reader_fit(const store_blob_reader_t *r, size_t len) {
  uint64_t end, border;

  if (!r || r->pos >= r->size || r->chunk_size == 0)
    return len;
  end = r->pos + len < r->size ? r->pos + len : r->size;
  if (end == r->size)
    return (size_t)(end - r->pos);
  border = end / r->chunk_size * r->chunk_size;
  return border > r->pos ? (size_t)(border - r->pos) : len;
}

void store_blob_reader_destroy(store_blob_reader_t *r) {
  if (!r)
    return;
  if (r->download)
    r->download->vt->blob_download_destroy(r->download);
  bson_free(r->buf);
  bson_free(r);
}

bool store_blob_stat(store_blob_info_t *info, store_t *store, store_bucket_t bucket,
                     const char *blob_id, fzip_error_t *error) {
  if (!info || !store)
    return invalid(error, "info or store is NULL");
  if (!check_bucket(bucket, error) || !check_blob_id(blob_id, error))
    return false;
  return counted(store->vt, "blob_stat",
                 store->vt->blob_stat(info, store, bucket, blob_id, error), error);
}

bool store_blob_delete(store_t *store, store_bucket_t bucket, const char *blob_id,
                       fzip_error_t *error) {
  if (!writable(store, error) || !check_bucket(bucket, error) || !check_blob_id(blob_id, error))
    return false;
  return counted(store->vt, "blob_delete",
                 store->vt->blob_delete(store, bucket, blob_id, error), error);
}

bool store_blob_reap_uncommitted(uint64_t *deleted, store_t *store, int64_t older_than_ms,
                                 fzip_error_t *error) {
  if (!writable(store, error))
    return false;
  return counted(store->vt, "blob_reap_uncommitted",
                 store->vt->blob_reap_uncommitted(deleted, store, older_than_ms, error), error);
}

/* ---- reaper -------------------------------------------------------------- */

/* Deletes one expired job, its package blob first.  A job another replica
 * reaped meanwhile (NOT_FOUND) counts as done. */
static bool reap_job(store_reap_stats_t *stats, store_t *store, const store_job_t *job,
                     fzip_error_t *error) {
  bson_iter_t it;
  fzip_error_t local = {0};

  if (bson_iter_init_find(&it, job->body, STORE_JOB_PACKAGE_BLOB_FIELD) &&
      BSON_ITER_HOLDS_UTF8(&it)) {
    const char *blob_id = bson_iter_utf8(&it, NULL);
    if (check_blob_id(blob_id, &local)) {
      if (!store_blob_delete(store, STORE_BUCKET_PACKAGES, blob_id, error))
        return fzip_error_prefix(error, "reaping package of job %s", job->job_id);
      stats->package_blobs++;
    }
  }
  if (!store_job_delete(store, job->kind, NULL, job->job_id, &local)) {
    if (local.code != FZIP_ERR_NOT_FOUND) {
      *error = local;
      return fzip_error_prefix(error, "reaping job %s", job->job_id);
    }
    return true;
  }
  stats->jobs++;
  return true;
}

bool store_reap(store_reap_stats_t *stats, store_t *store, int64_t now_ms,
                int64_t uncommitted_older_than_ms, store_reap_hook_fn hook, void *hook_ctx,
                fzip_error_t *error) {
  store_reap_stats_t local_stats = {0};
  store_job_t **jobs = NULL;
  size_t n_jobs = 0;
  uint64_t uncommitted = 0;
  bool ok = false;
  if (!writable(store, error))
    return false;
  if (uncommitted_older_than_ms < 0)
    return invalid(error, "uncommitted_older_than_ms must not be negative");
  if (!stats)
    stats = &local_stats;
  /* Each pass deletes (or the hook moves on) what it listed, so the next
   * pass sees the next batch; a pass shorter than the batch means nothing
   * expired is left.  The pass bound keeps a misbehaving hook from looping
   * forever: what is left waits for the next run. */
  for (int pass = 0; pass < STORE_REAP_PASSES_MAX; pass++) {
    if (!store_job_list_expired(&jobs, &n_jobs, store, now_ms, STORE_REAP_BATCH, error))
      goto done;
    for (size_t i = 0; i < n_jobs; i++) {
      bool handled = false;
      if (hook && !hook(hook_ctx, jobs[i], now_ms, &handled, error))
        goto done;
      if (handled) {
        stats->hooked++;
        continue;
      }
      if (!reap_job(stats, store, jobs[i], error))
        goto done;
    }
    store_job_list_free(jobs, n_jobs);
    jobs = NULL;
    if (n_jobs < STORE_REAP_BATCH)
      break;
  }
  if (!store_blob_reap_uncommitted(&uncommitted, store, now_ms - uncommitted_older_than_ms,
                                   error))
    goto done;
  stats->uncommitted_blobs += uncommitted;
  ok = true;
done:
  store_job_list_free(jobs, n_jobs);
  return ok;
}

/* ---- import tags --------------------------------------------------------- */

static bool unimplemented(const store_t *store, const char *what, fzip_error_t *error) {
  return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_UNIMPLEMENTED,
                        "store: the %s backend has no %s", store->vt->name, what);
}

bool store_entity_put_batch_tagged(store_t *store, const char *user_id, fzip_kind_t kind,
                                   const bson_t *const *docs, size_t n, store_write_mode_t mode,
                                   const char *tag, store_write_result_t *result,
                                   fzip_error_t *error) {
  const char *ids[STORE_BATCH_MAX];
  if (!writable(store, error) || !check_user(user_id, error) || !check_kind(kind, error) ||
      !check_id(tag, "import tag", error) || !check_batch(ids, docs, n, kind, mode, error))
    return false;
  if (!store->vt->entity_put_batch_tagged)
    return unimplemented(store, "tagged writes", error);
  if (n == 0)
    return true;
  /* Tests inject a store failure or a slow store mid-import here. */
  if (!fzip_failpoint("store.put_tagged", error))
    return false;
  return counted(store->vt, "entity_put_batch_tagged",
                 store->vt->entity_put_batch_tagged(store, user_id, kind, docs, ids, n, mode, tag,
                                                    result, error), error);
}

static bool check_import(const store_t *store, const char *user_id, const char *tag,
                         fzip_error_t *error) {
  if (!writable(store, error) || !check_user(user_id, error) ||
      !check_id(tag, "import tag", error))
    return false;
  if (!store->vt->import_rollback || !store->vt->import_commit || !store->vt->import_begin ||
      !store->vt->import_end || !store->vt->import_pending || !store->vt->stash_get)
    return unimplemented(store, "import tags", error);
  return true;
}

bool store_import_begin(store_t *store, const char *user_id, const char *tag,
                        fzip_error_t *error) {
  pending_t *pending = NULL;
  bool ok = false;

  if (!check_import(store, user_id, tag, error))
    return false;
  pending = bson_malloc0(sizeof *pending);
  if (!pending_load(pending, store, user_id, NULL, error))
    goto done;
  if (pending_has(pending, tag)) {
    ok = true;
    goto done;
  }
  if (pending->n >= STORE_PENDING_MAX) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_RESOURCE_EXHAUSTED,
                   "store: user already has STORE_PENDING_MAX (%d) imports pending",
                   STORE_PENDING_MAX);
    goto done;
  }
  ok = counted(store->vt, "import_begin", store->vt->import_begin(store, user_id, tag, error), error);
done:
  bson_free(pending);
  return ok;
}

bool store_import_is_pending(bool *pending, store_t *store, const char *user_id,
                             const char *tag, fzip_error_t *error) {
  pending_t *p = NULL;
  bool ok = false;

  if (!pending || !store)
    return invalid(error, "pending or store is NULL");
  if (!check_user(user_id, error) || !check_id(tag, "import tag", error))
    return false;
  p = bson_malloc0(sizeof *p);
  ok = pending_load(p, store, user_id, NULL, error);
  if (ok)
    *pending = pending_has(p, tag);
  bson_free(p);
  return ok;
}

/* Gives back the space the import set aside at begin (a backend without
 * a reserve has nothing to give back). */
static bool release_reserve(store_t *store, const char *user_id, const char *tag,
                            fzip_error_t *error) {
  return !store->vt->import_release_reserve ||
         counted(store->vt, "import_release_reserve",
                 store->vt->import_release_reserve(store, user_id, tag, error), error);
}

bool store_import_rollback(store_rollback_stats_t *stats, store_t *store, const char *user_id,
                           const char *tag, store_visit_fn visit, void *visit_ctx,
                           fzip_error_t *error) {
  store_rollback_stats_t local = {0};

  if (!check_import(store, user_id, tag, error))
    return false;
  /* Tests make a rollback fail here (the cleanup-pending path). */
  if (!fzip_failpoint("store.import_rollback", error))
    return false;
  /* Space first: on a full store the undo itself needs room to write. */
  if (!release_reserve(store, user_id, tag, error))
    return false;
  /* The backend counts into a zeroed struct; the caller's is overwritten
   * only on success.  The tag stays pending until everything is undone. */
  if (!counted(store->vt, "import_rollback",
               store->vt->import_rollback(&local, store, user_id, tag, visit, visit_ctx, error),
               error) ||
      !counted(store->vt, "import_end", store->vt->import_end(store, user_id, tag, error), error))
    return false;
  if (stats)
    *stats = local;
  return true;
}

bool store_import_flip(store_t *store, const char *user_id, const char *tag,
                       fzip_error_t *error) {
  if (!check_import(store, user_id, tag, error))
    return false;
  /* Tests kill fzipd just before and just after the flip here. */
  if (!fzip_failpoint("store.import_flip", error) ||
      !counted(store->vt, "import_end", store->vt->import_end(store, user_id, tag, error), error) ||
      !fzip_failpoint("store.import_forget", error))
    return false;
  return release_reserve(store, user_id, tag, error);
}

bool store_import_forget(uint64_t *forgotten, store_t *store, const char *user_id,
                         const char *tag, store_visit_fn visit, void *visit_ctx,
                         fzip_error_t *error) {
  uint64_t local = 0;

  if (!check_import(store, user_id, tag, error))
    return false;
  if (!counted(store->vt, "import_commit",
               store->vt->import_commit(&local, store, user_id, tag, visit, visit_ctx, error),
               error))
    return false;
  if (forgotten)
    *forgotten = local;
  return true;
}

bool store_import_commit(uint64_t *forgotten, store_t *store, const char *user_id,
                         const char *tag, store_visit_fn visit, void *visit_ctx,
                         fzip_error_t *error) {
  return store_import_flip(store, user_id, tag, error) &&
         store_import_forget(forgotten, store, user_id, tag, visit, visit_ctx, error);
}

/* ---- undo of a committed import ------------------------------------------ */

static bool check_undo(const store_t *store, const char *user_id, const char *tag,
                       fzip_error_t *error) {
  if (!check_import(store, user_id, tag, error))
    return false;
  if (!store->vt->import_marks || !store->vt->import_lost)
    return unimplemented(store, "import undo", error);
  return true;
}

bool store_import_marks(store_import_marks_t *out, store_t *store, const char *user_id,
                        const char *tag, fzip_error_t *error) {
  store_import_marks_t local;

  if (!out)
    return invalid(error, "out is NULL");
  if (!check_undo(store, user_id, tag, error))
    return false;
  memset(&local, 0, sizeof local);
  if (!counted(store->vt, "import_marks",
               store->vt->import_marks(&local, store, user_id, tag, error), error))
    return false;
  *out = local;
  return true;
}

/* Appends "; <kind> <found> of <expected> tagged, <kept> of <expected>
 * kept (e.g. id1, id2)" for one kind whose marks differ. */
static bool undo_conflict_kind(char *msg, size_t cap, store_t *store, const char *user_id,
                               const char *tag, fzip_kind_t k, const store_import_marks_t *now,
                               const store_import_marks_t *expected, fzip_error_t *error) {
  char ids[STORE_UNDO_IDS_MAX][FZIP_ID_MAX + 1];
  size_t n = 0, len = strlen(msg);

  if (!counted(store->vt, "import_lost",
               store->vt->import_lost(ids, &n, store, user_id, tag, k, STORE_UNDO_IDS_MAX,
                                      error),
               error))
    return false;
  len += (size_t)snprintf(msg + len, len < cap ? cap - len : 0,
                          "%s%s: %" PRIu64 " of %" PRIu64 " documents still as imported, %" PRIu64
                          " of %" PRIu64 " previous versions kept",
                          len ? "; " : "", fzip_kind_info(k)->name, now->tagged[k],
                          expected->tagged[k], now->kept[k], expected->kept[k]);
  for (size_t i = 0; i < n && len < cap; i++)
    len += (size_t)snprintf(msg + len, cap - len, "%s%s", i ? ", " : " (changed since: ", ids[i]);
  if (n > 0 && len < cap)
    snprintf(msg + len, cap - len, ")");
  return true;
}

bool store_import_undo_check(store_t *store, const char *user_id, const char *tag,
                             const store_import_marks_t *expected, fzip_error_t *error) {
  store_import_marks_t now;
  pending_t *pending = NULL;
  char msg[FZIP_ERROR_MESSAGE_MAX] = "";
  bool ok = false;

  if (!expected)
    return invalid(error, "expected is NULL");
  if (!store_import_marks(&now, store, user_id, tag, error))
    return false;
  pending = bson_malloc0(sizeof *pending);
  if (!pending_load(pending, store, user_id, tag, error))
    goto done;
  /* An import running meanwhile could overwrite what the undo puts back. */
  if (pending->n > 0) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_FAILED_PRECONDITION,
                   "another import of this user is in progress (%s); undo it when it has ended",
                   pending->tags[0]);
    goto done;
  }
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    if ((now.tagged[k] != expected->tagged[k] || now.kept[k] != expected->kept[k]) &&
        !undo_conflict_kind(msg, sizeof msg, store, user_id, tag, (fzip_kind_t)k, &now, expected,
                            error))
      goto done;
  }
  if (msg[0]) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_FAILED_PRECONDITION,
                   "what the import wrote was changed or deleted since (%s)", msg);
    goto done;
  }
  ok = true;
done:
  bson_free(pending);
  return ok;
}

bool store_import_undo(store_rollback_stats_t *stats, store_t *store, const char *user_id,
                       const char *tag, store_visit_fn visit, void *visit_ctx,
                       fzip_error_t *error) {
  if (!check_undo(store, user_id, tag, error))
    return false;
  /* Pending again first: from this single write on, readers see the
   * stashed (before) versions, and the rollback runs unseen. */
  return store_import_begin(store, user_id, tag, error) &&
         store_import_rollback(stats, store, user_id, tag, visit, visit_ctx, error);
}

/* ---- snapshots ----------------------------------------------------------- */

bool store_snapshot_begin(store_t **view, store_t *store, const char *user_id,
                          fzip_error_t *error) {
  if (!view || !store)
    return invalid(error, "view or store is NULL");
  *view = NULL;
  if (!check_user(user_id, error))
    return false;
  if (store->read_only)
    return invalid(error, "a snapshot of a snapshot");
  if (!store->vt->snapshot_begin || !store->vt->snapshot_end)
    return unimplemented(store, "snapshots", error);
  return counted(store->vt, "snapshot_begin",
                 store->vt->snapshot_begin(view, store, user_id, error), error);
}

bool store_snapshot_end(store_t *view, fzip_error_t *error) {
  if (!view)
    return true;
  if (!view->read_only)
    return invalid(error, "store_snapshot_end of a store that is not a snapshot view");
  /* snapshot_end frees the view, and the order in which counted()'s
   * arguments are evaluated is unspecified: take its vtable first. */
  const store_vtable_t *vt = view->vt;
  return counted(vt, "snapshot_end", vt->snapshot_end(view, error), error);
}

/* ---- change tracking ----------------------------------------------------- */

/* Deletion ids fetched per backend call: bounds a listing's memory. */
#define DELETIONS_PAGE 256

struct store_deletions {
  store_t *store;
  char user_id[FZIP_USER_ID_MAX + 1];
  fzip_kind_t kind;
  uint64_t after_seq, upto_seq;
  char (*ids)[FZIP_ID_MAX + 1]; /* the page: DELETIONS_PAGE ids */
  size_t n, pos;
  bool exhausted; /* the backend has nothing after this page */
};

static bool check_changes(const store_t *store, const char *user_id, fzip_error_t *error) {
  if (!store)
    return invalid(error, "store is NULL");
  if (!check_user(user_id, error))
    return false;
  if (!store->vt->changes_mark || !store->vt->deletions_page)
    return unimplemented(store, "change tracking", error);
  return true;
}

bool store_changes_mark(store_changes_mark_t *out, store_t *store, const char *user_id,
                        fzip_error_t *error) {
  store_changes_mark_t local = {0, 0};

  if (!out)
    return invalid(error, "out is NULL");
  if (!check_changes(store, user_id, error))
    return false;
  if (!counted(store->vt, "changes_mark",
               store->vt->changes_mark(&local, store, user_id, error), error))
    return false;
  *out = local;
  return true;
}

bool store_deletions_new(store_deletions_t **out, store_t *store, const char *user_id,
                         fzip_kind_t kind, uint64_t after_seq, uint64_t upto_seq,
                         fzip_error_t *error) {
  store_deletions_t *d = NULL;

  if (!out)
    return invalid(error, "out is NULL");
  *out = NULL;
  if (!check_changes(store, user_id, error) || !check_kind(kind, error))
    return false;
  d = bson_malloc0(sizeof *d);
  d->store = store;
  snprintf(d->user_id, sizeof d->user_id, "%s", user_id);
  d->kind = kind;
  d->after_seq = after_seq;
  d->upto_seq = upto_seq;
  d->ids = bson_malloc0(DELETIONS_PAGE * sizeof *d->ids);
  /* An empty range lists nothing; the backend is not asked. */
  d->exhausted = upto_seq <= after_seq;
  *out = d;
  return true;
}

bool store_deletions_next(store_deletions_t *d, const char **entity_id, fzip_error_t *error) {
  char after[FZIP_ID_MAX + 1] = "";

  if (!d || !entity_id)
    return invalid(error, "deletions or entity_id is NULL");
  if (d->pos == d->n) {
    if (d->exhausted)
      return false;
    if (d->n > 0)
      memcpy(after, d->ids[d->n - 1], sizeof after);
    d->n = d->pos = 0;
    if (!counted(d->store->vt, "deletions_page",
                 d->store->vt->deletions_page(d->ids, &d->n, d->store, d->user_id, d->kind,
                                              d->after_seq, d->upto_seq, after, DELETIONS_PAGE,
                                              error),
                 error)) {
      d->n = 0;
      return false;
    }
    d->exhausted = d->n < DELETIONS_PAGE;
    if (d->n == 0)
      return false;
  }
  *entity_id = d->ids[d->pos++];
  return true;
}

void store_deletions_destroy(store_deletions_t *d) {
  if (!d)
    return;
  bson_free(d->ids);
  bson_free(d);
}
