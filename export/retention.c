/*
 * retention: see retention.h.
 *
 * restic's ApplyPolicy, bucket by bucket: walking the exports newest
 * first, a bucket rule with count left keeps an export whose bucket value
 * (its hour, day, ISO week, month or year in the zone; for keep_last its
 * position) differs from the last one that rule saw, and spends one of
 * its count.  So each rule keeps the newest export of each of its newest
 * buckets.
 *
 * Applying never trusts the listing for a write: each export is read
 * again, still checked (COMPLETED, this schedule, not about to expire)
 * and saved version-checked; everything kept is saved before anything is
 * deleted, so a failure half way never loses a base a kept increment
 * needs.
 */
#include "retention.h"

#include <stdlib.h>
#include <string.h>

#include "fzip/v1/jobs.pb-c.h"
#include "fzip_failpoint.h"
#include "fzip_log.h"
#include "fzip_util.h"
#include "job_body.h"
#include "job_kind.h"
#include "jobs.h"
#include "svc_export.h"

typedef Fzip__V1__ExportJob export_job_t;
#define COMPLETED FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_COMPLETED
#define MS_PER_S 1000

static const char *const REASON_NAMES[RETENTION_REASONS] = {
    "last", "hourly", "daily", "weekly", "monthly", "yearly", "within", "base", "all",
};

const char *retention_reason_name(unsigned reason) {
  for (unsigned i = 0; i < RETENTION_REASONS; i++)
    if (reason == 1u << i)
      return REASON_NAMES[i];
  return NULL;
}

static unsigned reason_of_name(const char *name) {
  for (unsigned i = 0; i < RETENTION_REASONS; i++)
    if (strcmp(name, REASON_NAMES[i]) == 0)
      return 1u << i;
  return 0;
}

/* ---- deciding --------------------------------------------------------- */

static int newest_first(const void *a, const void *b) {
  const retention_item_t *x = a, *y = b;

  if (x->completed_at != y->completed_at)
    return x->completed_at < y->completed_at ? 1 : -1;
  return -strcmp(x->export_id, y->export_id);
}

static int days_in_year(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 366 : 365;
}

/* ISO 8601 week-numbering year * 100 + week: the week is the one whose
 * Thursday falls in that year. */
static int64_t iso_week(const struct tm *tm) {
  int year = tm->tm_year + 1900;
  int thursday = tm->tm_yday - (tm->tm_wday + 6) % 7 + 3; /* yday of this week's Thursday */

  if (thursday < 0) {
    year--;
    thursday += days_in_year(year);
  } else if (thursday >= days_in_year(year)) {
    thursday -= days_in_year(year);
    year++;
  }
  return (int64_t)year * 100 + thursday / 7 + 1;
}

typedef enum { B_LAST, B_HOURLY, B_DAILY, B_WEEKLY, B_MONTHLY, B_YEARLY, B_COUNT } bucket_t;

/* The bucket value of an export for rule b: equal values share a bucket. */
static int64_t bucket_value(bucket_t b, const struct tm *tm, size_t position) {
  int64_t ymd = ((int64_t)tm->tm_year * 100 + tm->tm_mon) * 100 + tm->tm_mday;

  switch (b) {
  case B_LAST:
    return (int64_t)position;
  case B_HOURLY:
    return ymd * 100 + tm->tm_hour;
  case B_DAILY:
    return ymd;
  case B_WEEKLY:
    return iso_week(tm);
  case B_MONTHLY:
    return (int64_t)tm->tm_year * 100 + tm->tm_mon;
  default:
    return tm->tm_year;
  }
}

static int by_id(const void *a, const void *b) {
  const retention_item_t *const *x = a, *const *y = b;
  return strcmp((*x)->export_id, (*y)->export_id);
}

/* Every base a kept export needs, transitively, is kept ("base").  A
 * chain is walked until it leaves the items or meets an export already
 * marked as a base (its own chain was walked then). */
static bool keep_bases(retention_item_t *items, size_t n, fzip_error_t *error) {
  retention_item_t **index = n ? malloc(n * sizeof *index) : NULL;

  if (n && !index)
    return fzip_error_oom(error, "retention index");
  for (size_t i = 0; i < n; i++)
    index[i] = &items[i];
  qsort(index, n, sizeof *index, by_id);
  for (size_t i = 0; i < n; i++) {
    const retention_item_t *cur = &items[i];
    if (!cur->reasons)
      continue;
    while (cur->base_export_id[0]) {
      retention_item_t key, *keyp = &key, **found;
      snprintf(key.export_id, sizeof key.export_id, "%s", cur->base_export_id);
      found = bsearch(&keyp, index, n, sizeof *index, by_id);
      if (!found || ((*found)->reasons & RETENTION_BASE))
        break;
      (*found)->reasons |= RETENTION_BASE;
      cur = *found;
    }
  }
  free(index);
  return true;
}

/* The policy's bucket counts, indexed by bucket_t. */
static void policy_counts(int32_t counts[B_COUNT], const Fzip__V1__RetentionPolicy *policy) {
  counts[B_LAST] = policy->keep_last;
  counts[B_HOURLY] = policy->keep_hourly;
  counts[B_DAILY] = policy->keep_daily;
  counts[B_WEEKLY] = policy->keep_weekly;
  counts[B_MONTHLY] = policy->keep_monthly;
  counts[B_YEARLY] = policy->keep_yearly;
}

bool retention_policy_check(const Fzip__V1__RetentionPolicy *policy, fzip_error_t *error) {
  int32_t counts[B_COUNT];

  if (!policy)
    return true;
  if (policy->keep_within_ms < 0)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "retention keep_within_ms must not be negative");
  policy_counts(counts, policy);
  for (int b = 0; b < B_COUNT; b++) {
    if (counts[b] < 0)
      return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                            "retention keep_%s must not be negative", REASON_NAMES[b]);
  }
  return true;
}

bool retention_decide(retention_item_t *items, size_t n, const Fzip__V1__RetentionPolicy *policy,
                      const fzip_tz_t *tz, fzip_error_t *error) {
  int32_t counts[B_COUNT];
  int64_t left[B_COUNT], last[B_COUNT];
  bool seen[B_COUNT] = {false};
  bool empty = policy->keep_within_ms == 0;

  if (!retention_policy_check(policy, error))
    return false;
  policy_counts(counts, policy);
  for (int b = 0; b < B_COUNT; b++) {
    left[b] = counts[b];
    empty = empty && counts[b] == 0;
  }
  qsort(items, n, sizeof *items, newest_first);
  for (size_t i = 0; i < n; i++) {
    struct tm tm;
    items[i].reasons = empty ? RETENTION_ALL : 0;
    if (empty)
      continue;
    if (policy->keep_within_ms > 0 &&
        items[i].completed_at > items[0].completed_at - policy->keep_within_ms)
      items[i].reasons |= RETENTION_WITHIN;
    fzip_tz_local(tz, items[i].completed_at / MS_PER_S, &tm, NULL);
    for (int b = 0; b < B_COUNT; b++) {
      int64_t v = bucket_value((bucket_t)b, &tm, i);
      if (left[b] == 0 || (seen[b] && v == last[b]))
        continue;
      seen[b] = true;
      last[b] = v;
      left[b]--;
      items[i].reasons |= 1u << b; /* B_LAST..B_YEARLY are RETENTION_LAST..YEARLY */
    }
  }
  return empty || keep_bases(items, n, error);
}

/* ---- reading a schedule's exports ------------------------------------- */

/* An export retention may act on: COMPLETED, of this schedule, and not
 * about to expire (the reaper, on the wall clock, may be deleting it). */
static bool eligible(const store_job_t *rec, const export_job_t *job, const char *schedule_id) {
  return job->status == COMPLETED && strcmp(job->schedule_id, schedule_id) == 0 &&
         (rec->expires_at == 0 || rec->expires_at > fzip_now_ms() + RETENTION_EXPIRY_GUARD_MS);
}

static bool unpack(export_job_t **job, const store_job_t *rec, fzip_error_t *error) {
  return job_body_unpack((ProtobufCMessage **)job, rec->body, &fzip__v1__export_job__descriptor,
                         NULL, error);
}

static void free_job(export_job_t *job) {
  if (job)
    protobuf_c_message_free_unpacked(&job->base, NULL);
}

/* Called for each of the user's export records; false stops with error. */
typedef bool (*visit_fn)(void *arg, store_job_t *rec, export_job_t *job, fzip_error_t *error);

static bool for_each_export(store_t *store, const char *user_id, visit_fn visit, void *arg,
                            fzip_error_t *error) {
  char *token = NULL;
  bool ok = true;

  do {
    store_job_t **recs = NULL;
    size_t n = 0;
    char *next = NULL;
    ok = store_job_list(&recs, &n, &next, store, STORE_JOB_EXPORT, user_id, STORE_PAGE_MAX,
                        token, error);
    for (size_t i = 0; ok && i < n; i++) {
      export_job_t *job = NULL;
      if (!unpack(&job, recs[i], error))
        ok = false;
      else
        ok = visit(arg, recs[i], job, error);
      free_job(job);
    }
    store_job_list_free(recs, n);
    bson_free(token);
    token = next;
  } while (ok && token);
  bson_free(token);
  return ok;
}

typedef struct {
  const char *schedule_id;
  retention_item_t *items;
  size_t n, cap;
} collect_t;

static bool collect(void *arg, store_job_t *rec, export_job_t *job, fzip_error_t *error) {
  collect_t *c = arg;
  retention_item_t *it;

  if (!eligible(rec, job, c->schedule_id))
    return true;
  if (c->n == RETENTION_EXPORTS_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "schedule %s has more than %d completed exports; retention considers "
                          "at most that many (delete some, or the schedule)",
                          c->schedule_id, RETENTION_EXPORTS_MAX);
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    retention_item_t *grown = realloc(c->items, cap * sizeof *grown);
    if (!grown)
      return fzip_error_oom(error, "retention exports");
    c->items = grown;
    c->cap = cap;
  }
  it = &c->items[c->n++];
  memset(it, 0, sizeof *it);
  snprintf(it->export_id, sizeof it->export_id, "%s", job->export_id);
  snprintf(it->base_export_id, sizeof it->base_export_id, "%s", job->base_export_id);
  it->completed_at = job->completed_at;
  it->version = rec->version;
  return true;
}

/* ---- applying --------------------------------------------------------- */

static unsigned reasons_of_job(const export_job_t *job) {
  unsigned r = 0;
  for (size_t i = 0; i < job->n_kept_reasons; i++)
    r |= reason_of_name(job->kept_reasons[i]);
  return r;
}

static bool set_reasons(export_job_t *job, unsigned reasons) {
  size_t n = 0;
  char **names = calloc(RETENTION_REASONS, sizeof *names);

  if (!names)
    return false;
  for (unsigned i = 0; i < RETENTION_REASONS; i++)
    if ((reasons & (1u << i)) && !(names[n++] = strdup(REASON_NAMES[i])))
      goto fail;
  for (size_t i = 0; i < job->n_kept_reasons; i++)
    free(job->kept_reasons[i]);
  free(job->kept_reasons);
  job->kept_reasons = names;
  job->n_kept_reasons = n;
  return true;
fail:
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return false;
}

/* Changes one export and saves it version-checked, read again and
 * retried on ABORTED.  `change` returns false with *skip when there is
 * nothing to write (gone from the schedule, already so); false without
 * *skip is a failure (error set).  A missing export is skipped. */
typedef bool (*change_fn)(void *arg, store_job_t *rec, export_job_t *job, bool *skip,
                          fzip_error_t *error);

static bool update_export(bool *saved, store_t *store, const char *user_id, const char *export_id,
                          change_fn change, void *arg, int64_t now_ms, fzip_error_t *error) {
  *saved = false;
  for (int attempt = 0; attempt < JOB_UPDATE_RETRIES; attempt++) {
    store_job_t *rec = NULL;
    export_job_t *job = NULL;
    bool ok = false, skip = false, again = false;

    if (!store_job_get(&rec, store, STORE_JOB_EXPORT, user_id, export_id, error))
      return error->code == FZIP_ERR_NOT_FOUND;
    if (!unpack(&job, rec, error))
      goto done;
    if (!change(arg, rec, job, &skip, error)) {
      ok = skip;
      goto done;
    }
    ok = job_store_unowned(store, &export_job_kind, rec, &job->base, now_ms, false, error);
    again = !ok && error->code == FZIP_ERR_ABORTED;
    *saved = ok;
  done:
    free_job(job);
    store_job_destroy(rec);
    if (!again)
      return ok;
    job_update_backoff(attempt);
  }
  return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_ABORTED,
                        "export %s changed %d times while retention updated it; try again",
                        export_id, JOB_UPDATE_RETRIES);
}

typedef struct {
  const char *schedule_id;
  unsigned reasons;
} keep_arg_t;

/* Kept: never expires, says why. */
static bool mark_kept(void *arg, store_job_t *rec, export_job_t *job, bool *skip,
                      fzip_error_t *error) {
  const keep_arg_t *k = arg;

  *skip = !eligible(rec, job, k->schedule_id) ||
          (job->kept && job->expires_at == 0 && rec->expires_at == 0 &&
           reasons_of_job(job) == k->reasons);
  if (*skip)
    return false;
  job->kept = true;
  job->expires_at = 0;
  rec->expires_at = 0;
  return set_reasons(job, k->reasons) || fzip_error_oom(error, "kept reasons");
}

/* Deletes one export as DeleteExport does, if it is still eligible and
 * unchanged since it was listed: another application that saw a newer
 * export may have kept it since (as the base of a new increment). */
static bool delete_one(bool *deleted, store_t *store, const char *user_id,
                       const char *schedule_id, const retention_item_t *it, fzip_error_t *error) {
  store_job_t *rec = NULL;
  export_job_t *job = NULL;
  bool ok = false;

  *deleted = false;
  if (!store_job_get(&rec, store, STORE_JOB_EXPORT, user_id, it->export_id, error))
    return error->code == FZIP_ERR_NOT_FOUND;
  if (!unpack(&job, rec, error))
    goto done;
  ok = true;
  if (rec->version != it->version || !eligible(rec, job, schedule_id))
    goto done;
  if (!fzip_failpoint("retention.delete", error)) { /* tests: a failure half way */
    ok = false;
    goto done;
  }
  *deleted = job_delete(store, &export_job_kind, rec, error);
  ok = *deleted || error->code == FZIP_ERR_NOT_FOUND;
done:
  free_job(job);
  store_job_destroy(rec);
  return ok;
}

/* ---- the response ----------------------------------------------------- */

static void *sys_alloc(void *data, size_t size) {
  (void)data;
  return malloc(size);
}
static void sys_free(void *data, void *p) {
  (void)data;
  free(p);
}
static ProtobufCAllocator system_allocator = {sys_alloc, sys_free, NULL};

static void *zalloc(ProtobufCAllocator *a, size_t size) {
  void *p = a->alloc(a->allocator_data, size ? size : 1);
  if (p)
    memset(p, 0, size ? size : 1);
  return p;
}

static char *dup_str(ProtobufCAllocator *a, const char *s) {
  size_t len = strlen(s) + 1;
  char *p = a->alloc(a->allocator_data, len);
  if (p)
    memcpy(p, s, len);
  return p;
}

static bool fill_decision(Fzip__V1__RetentionDecision **out, ProtobufCAllocator *a,
                          const retention_item_t *it) {
  Fzip__V1__RetentionDecision *d = zalloc(a, sizeof *d);

  if (!d)
    return false;
  fzip__v1__retention_decision__init(d);
  *out = d;
  d->completed_at = it->completed_at;
  d->keep = it->reasons != 0;
  if (!(d->export_id = dup_str(a, it->export_id)) ||
      !(d->base_export_id = dup_str(a, it->base_export_id)))
    return false;
  if (!it->reasons)
    return true;
  if (!(d->reasons = zalloc(a, RETENTION_REASONS * sizeof *d->reasons)))
    return false;
  for (unsigned i = 0; i < RETENTION_REASONS; i++)
    if ((it->reasons & (1u << i)) && !(d->reasons[d->n_reasons++] = dup_str(a, REASON_NAMES[i])))
      return false;
  return true;
}

/* A partly filled response stays consistent (counts match what is set),
 * so protobuf_c_message_free_unpacked releases it. */
static bool build_response(Fzip__V1__ApplyRetentionResponse **out, ProtobufCAllocator *a,
                           const retention_item_t *items, size_t n, fzip_error_t *error) {
  Fzip__V1__ApplyRetentionResponse *r = zalloc(a, sizeof *r);

  if (!r)
    return fzip_error_oom(error, "retention response");
  fzip__v1__apply_retention_response__init(r);
  *out = r;
  if (n && !(r->decisions = zalloc(a, n * sizeof *r->decisions)))
    return fzip_error_oom(error, "retention response");
  for (size_t i = 0; i < n; i++) {
    bool ok = fill_decision(&r->decisions[i], a, &items[i]);
    if (r->decisions[i])
      r->n_decisions++;
    if (!ok)
      return fzip_error_oom(error, "retention response");
    r->kept += items[i].reasons != 0;
  }
  return true;
}

/* Keeps first, then deletes (see the file comment). */
static bool carry_out(int64_t *deleted, store_t *store, const char *user_id,
                      const char *schedule_id, const retention_item_t *items, size_t n,
                      int64_t now_ms, fzip_error_t *error) {
  int64_t saved_n = 0;

  for (size_t i = 0; i < n; i++) {
    keep_arg_t k = {schedule_id, items[i].reasons};
    bool saved = false;
    if (items[i].reasons &&
        !update_export(&saved, store, user_id, items[i].export_id, mark_kept, &k, now_ms, error))
      return false;
    saved_n += saved;
  }
  for (size_t i = 0; i < n; i++) {
    bool gone = false;
    if (!items[i].reasons && !delete_one(&gone, store, user_id, schedule_id, &items[i], error))
      return false;
    *deleted += gone;
  }
  const fzip_log_field_t f[] = {
      fzip_log_str("user", user_id),
      fzip_log_str("schedule", schedule_id),
      fzip_log_int("considered", (int64_t)n),
      fzip_log_int("kept_saved", saved_n),
      fzip_log_int("deleted", *deleted),
  };
  fzip_log_fields(FZIP_LOG_INFO, "retention", "retention applied", f, FZIP_LOG_COUNT(f));
  return true;
}

bool retention_apply(Fzip__V1__ApplyRetentionResponse **out, ProtobufCAllocator *alloc,
                     store_t *store, const char *user_id, const char *schedule_id,
                     const Fzip__V1__RetentionPolicy *policy, const char *time_zone,
                     bool dry_run, int64_t now_ms, fzip_error_t *error) {
  Fzip__V1__RetentionPolicy none = FZIP__V1__RETENTION_POLICY__INIT;
  ProtobufCAllocator *a = alloc ? alloc : &system_allocator;
  collect_t c = {.schedule_id = schedule_id};
  fzip_tz_t *tz = NULL;
  bool ok = false;

  *out = NULL;
  if (!schedule_id || !*schedule_id)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "retention needs a schedule id");
  if (!fzip_tz_load(&tz, time_zone, error) ||
      !for_each_export(store, user_id, collect, &c, error) ||
      !retention_decide(c.items, c.n, policy ? policy : &none, tz, error) ||
      !build_response(out, a, c.items, c.n, error) ||
      (!dry_run &&
       !carry_out(&(*out)->deleted, store, user_id, schedule_id, c.items, c.n, now_ms, error)))
    goto done;
  ok = true;
done:
  if (!ok && *out) {
    protobuf_c_message_free_unpacked(&(*out)->base, a);
    *out = NULL;
  }
  fzip_tz_destroy(tz);
  free(c.items);
  return ok;
}

/* ---- DeleteSchedule --------------------------------------------------- */

typedef struct {
  store_t *store;
  const char *user_id;
  const char *schedule_id;
  bool delete_packages;
  int64_t expires_at;
  uint64_t changed;
} release_t;

/* Not kept any more: expires as any export. */
static bool mark_released(void *arg, store_job_t *rec, export_job_t *job, bool *skip,
                          fzip_error_t *error) {
  const release_t *r = arg;

  *skip = strcmp(job->schedule_id, r->schedule_id) != 0 || !job->kept;
  if (*skip)
    return false;
  job->kept = false;
  job->expires_at = r->expires_at;
  rec->expires_at = r->expires_at;
  return set_reasons(job, 0) || fzip_error_oom(error, "kept reasons");
}

static bool release_one(void *arg, store_job_t *rec, export_job_t *job, fzip_error_t *error) {
  release_t *r = arg;
  bool done = false;

  if (strcmp(job->schedule_id, r->schedule_id) != 0)
    return true;
  if (r->delete_packages) {
    if (rec->runnable) /* a run still making it: it keeps the normal expiry */
      return true;
    done = job_delete(r->store, &export_job_kind, rec, error);
    if (!done && error->code != FZIP_ERR_NOT_FOUND)
      return false;
  } else if (job->kept &&
             !update_export(&done, r->store, r->user_id, rec->job_id, mark_released, r,
                            fzip_now_ms(), error)) {
    return false;
  }
  r->changed += done;
  return true;
}

bool retention_release(uint64_t *n_changed, store_t *store, const char *user_id,
                       const char *schedule_id, bool delete_packages, int64_t expires_at,
                       fzip_error_t *error) {
  release_t r = {store, user_id, schedule_id, delete_packages, expires_at, 0};
  bool ok;

  if (n_changed)
    *n_changed = 0;
  if (!schedule_id || !*schedule_id)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "retention needs a schedule id");
  ok = for_each_export(store, user_id, release_one, &r, error);
  if (n_changed)
    *n_changed = r.changed;
  return ok;
}
