/* export/retention: the decisions, table-driven like restic's forget
 * tests (each policy against one set of exports, the kept ones and their
 * reasons written out), buckets in a time zone, bases of kept increments;
 * then retention_apply and retention_release on a real SQLite store:
 * a dry run changes nothing, kept exports never expire (a reaper pass two
 * days on leaves them and their packages), the others are deleted with
 * their packages, exports that are not COMPLETED, of another schedule or
 * about to expire are left alone. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fzip/v1/jobs.pb-c.h"
#include "fzip_test.h"
#include "fzip_util.h"
#include "job_body.h"
#include "job_kind.h"
#include "retention.h"
#include "svc_export.h"

#define HOUR_MS (3600LL * 1000)
#define DAY_MS (24 * HOUR_MS)
#define MAX_ITEMS 16

static int64_t ms_of(int y, int mo, int d, int h, int mi) {
  struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
  return (int64_t)timegm(&tm) * 1000;
}

/* ---- decisions -------------------------------------------------------- */

typedef struct {
  const char *id;
  const char *base;
  int64_t at;
} export_t;

/* Weekdays in the comments; ISO weeks: 2024-01-07 (Sun) is the last day
 * of 2024-W01, 2024-12-30 (Mon) the first of 2025-W01. */
static export_t set_a[8];
static void init_set_a(void) {
  export_t a[8] = {
      {"e1", "", ms_of(2024, 1, 1, 10, 0)},  /* Mon */
      {"e2", "", ms_of(2024, 1, 1, 18, 0)},  /* Mon, same day */
      {"e3", "", ms_of(2024, 1, 2, 9, 0)},   /* Tue */
      {"e4", "", ms_of(2024, 1, 7, 23, 30)}, /* Sun, W01; Jan 7 18:30 in New York */
      {"e5", "", ms_of(2024, 1, 8, 0, 30)},  /* Mon, W02; Jan 7 19:30 in New York */
      {"e6", "", ms_of(2024, 2, 15, 12, 0)},
      {"e7", "", ms_of(2024, 12, 30, 12, 0)}, /* 2025-W01 */
      {"e8", "", ms_of(2025, 1, 2, 12, 0)},   /* 2025-W01 */
  };
  memcpy(set_a, a, sizeof a);
}

typedef struct {
  const char *name;
  Fzip__V1__RetentionPolicy policy;
  const char *zone;
  const char *want; /* "id:reason,reason id:reason" newest first, kept only */
} decide_case_t;

#define P(...) {PROTOBUF_C_MESSAGE_INIT(&fzip__v1__retention_policy__descriptor), __VA_ARGS__}

/* The decisions as the want string: kept ids newest first with reasons. */
static void render(char *out, size_t size, const retention_item_t *items, size_t n) {
  size_t len = 0;

  out[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (!items[i].reasons)
      continue;
    len += (size_t)snprintf(out + len, size - len, "%s%s:", len ? " " : "", items[i].export_id);
    bool first = true;
    for (unsigned b = 0; b < RETENTION_REASONS; b++)
      if (items[i].reasons & (1u << b)) {
        len += (size_t)snprintf(out + len, size - len, "%s%s", first ? "" : ",",
                                retention_reason_name(1u << b));
        first = false;
      }
  }
}

static bool run_case(const export_t *set, size_t n, const decide_case_t *c) {
  retention_item_t items[MAX_ITEMS];
  fzip_tz_t *tz = NULL;
  fzip_error_t err;
  char got[1024];
  bool ok;

  for (size_t i = 0; i < n; i++) {
    memset(&items[i], 0, sizeof items[i]);
    snprintf(items[i].export_id, sizeof items[i].export_id, "%s", set[i].id);
    snprintf(items[i].base_export_id, sizeof items[i].base_export_id, "%s", set[i].base);
    items[i].completed_at = set[i].at;
    items[i].reasons = 0xdead; /* decide must overwrite */
  }
  if (!fzip_tz_load(&tz, c->zone ? c->zone : "", &err) ||
      !retention_decide(items, n, &c->policy, tz, &err)) {
    fprintf(stderr, "  %s: %s\n", c->name, err.message);
    fzip_tz_destroy(tz);
    return false;
  }
  fzip_tz_destroy(tz);
  for (size_t i = 1; i < n; i++)
    if (items[i].completed_at > items[i - 1].completed_at)
      return false;
  render(got, sizeof got, items, n);
  ok = strcmp(got, c->want) == 0;
  if (!ok)
    fprintf(stderr, "  %s:\n    want %s\n    got  %s\n", c->name, c->want, got);
  return ok;
}

static void test_policies_keep_the_newest_of_each_bucket(void) {
  static const decide_case_t cases[] = {
      {"last 3", P(.keep_last = 3), NULL, "e8:last e7:last e6:last"},
      {"daily 4", P(.keep_daily = 4), NULL, "e8:daily e7:daily e6:daily e5:daily"},
      {"daily 10 (e1 shares e2's day)", P(.keep_daily = 10), NULL,
       "e8:daily e7:daily e6:daily e5:daily e4:daily e3:daily e2:daily"},
      {"weekly 3 (ISO: e7 and e8 share 2025-W01)", P(.keep_weekly = 3), NULL,
       "e8:weekly e6:weekly e5:weekly"},
      {"weekly 10 (Sunday e4 ends 2024-W01)", P(.keep_weekly = 10), NULL,
       "e8:weekly e6:weekly e5:weekly e4:weekly"},
      {"monthly 3", P(.keep_monthly = 3), NULL, "e8:monthly e7:monthly e6:monthly"},
      {"yearly 5", P(.keep_yearly = 5), NULL, "e8:yearly e7:yearly"},
      {"hourly 100", P(.keep_hourly = 100), NULL,
       "e8:hourly e7:hourly e6:hourly e5:hourly e4:hourly e3:hourly e2:hourly e1:hourly"},
      {"hourly 2", P(.keep_hourly = 2), NULL, "e8:hourly e7:hourly"},
      {"within 3 days is strict (e7 is exactly 3 days older)", P(.keep_within_ms = 3 * DAY_MS),
       NULL, "e8:within"},
      {"within 3 days + 1 ms", P(.keep_within_ms = 3 * DAY_MS + 1), NULL, "e8:within e7:within"},
      {"rules add up", P(.keep_last = 1, .keep_monthly = 2, .keep_yearly = 3), NULL,
       "e8:last,monthly,yearly e7:monthly,yearly"},
      {"all zero keeps all", P(.keep_last = 0), NULL,
       "e8:all e7:all e6:all e5:all e4:all e3:all e2:all e1:all"},
      {"daily in New York (e4, e5 one local day)", P(.keep_daily = 6), "America/New_York",
       "e8:daily e7:daily e6:daily e5:daily e3:daily e2:daily"},
      {"weekly in Kathmandu (e4 is Monday 05:15 there)", P(.keep_weekly = 10), "Asia/Kathmandu",
       "e8:weekly e6:weekly e5:weekly e3:weekly"},
  };

  init_set_a();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    CHECK(run_case(set_a, 8, &cases[i]));
}

/* A kept increment keeps its whole chain; a chain of forgotten
 * increments goes with its complete base. */
static void test_bases_of_kept_increments_are_kept(void) {
  const export_t chain[] = {
      {"c1", "", ms_of(2024, 5, 1, 1, 0)},   {"i1", "c1", ms_of(2024, 5, 2, 1, 0)},
      {"i2", "i1", ms_of(2024, 5, 3, 1, 0)}, {"c2", "", ms_of(2024, 5, 4, 1, 0)},
      {"i3", "c2", ms_of(2024, 5, 5, 1, 0)},
  };
  const export_t odd[] = {
      {"x1", "x2", ms_of(2024, 5, 1, 1, 0)}, /* a cycle, which fzip never makes */
      {"x2", "x1", ms_of(2024, 5, 2, 1, 0)},
      {"x3", "gone", ms_of(2024, 5, 3, 1, 0)}, /* its base is not among them */
  };
  static const decide_case_t cases[] = {
      {"last 1: i3 keeps c2", P(.keep_last = 1), NULL, "i3:last c2:base"},
      {"last 3: i2 keeps i1 and c1", P(.keep_last = 3), NULL,
       "i3:last c2:last,base i2:last i1:base c1:base"},
      {"within 2 days + 1 ms", P(.keep_within_ms = 2 * DAY_MS + 1), NULL,
       "i3:within c2:within,base i2:within i1:base c1:base"},
  };
  static const decide_case_t odd_cases[] = {
      {"cycle terminates", P(.keep_last = 1), NULL, "x3:last"},
      {"cycle of kept", P(.keep_last = 2), NULL, "x3:last x2:last,base x1:base"},
  };

  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    CHECK(run_case(chain, 5, &cases[i]));
  for (size_t i = 0; i < sizeof odd_cases / sizeof odd_cases[0]; i++)
    CHECK(run_case(odd, 3, &odd_cases[i]));
}

/* Equal completion times: the larger id counts as newer. */
static void test_ties_are_broken_by_id(void) {
  const export_t tie[] = {{"a", "", 1000}, {"b", "", 1000}, {"c", "", 500}};
  static const decide_case_t c = {"tie", P(.keep_last = 1), NULL, "b:last"};

  CHECK(run_case(tie, 3, &c));
}

static void test_negative_policy_is_refused(void) {
  retention_item_t it = {.export_id = "e", .completed_at = 1};
  Fzip__V1__RetentionPolicy p = FZIP__V1__RETENTION_POLICY__INIT;
  fzip_tz_t *tz = NULL;
  fzip_error_t err;

  CHECK_OK(fzip_tz_load(&tz, "", &err), err);
  p.keep_weekly = -1;
  CHECK_FAILS(retention_decide(&it, 1, &p, tz, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "keep_weekly") != NULL);
  p.keep_weekly = 0;
  p.keep_within_ms = -5;
  CHECK_FAILS(retention_decide(&it, 1, &p, tz, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  fzip_tz_destroy(tz);
}

/* ---- applying on a real store ----------------------------------------- */

#define USER "retention-user"
#define SCHEDULE "sched-1"
#define S(name) FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_##name

static char g_db[256];

static bool open_store(store_t **s, fzip_error_t *err) {
  char uri[300];
  store_options_t opts = {0};

  snprintf(uri, sizeof uri, "sqlite:%s", g_db);
  opts.uri = uri;
  return store_open(s, &opts, err);
}

/* An export record as a worker leaves it, with its package blob when
 * COMPLETED. */
static bool put_export(store_t *s, const char *id, const char *schedule, int status,
                       int64_t completed_at, int64_t expires_at, const char *base,
                       fzip_error_t *err) {
  Fzip__V1__ExportJob job = FZIP__V1__EXPORT_JOB__INIT;
  store_job_t *rec = store_job_new();
  store_blob_writer_t *w = NULL;
  char blob[JOB_BLOB_ID_MAX];
  bool ok = false;

  if (!rec)
    return fzip_error_oom(err, NULL);
  job.export_id = (char *)id;
  job.schedule_id = (char *)schedule;
  job.base_export_id = (char *)base;
  job.status = status;
  job.completed_at = completed_at;
  job.expires_at = expires_at;
  snprintf(rec->job_id, sizeof rec->job_id, "%s", id);
  snprintf(rec->user_id, sizeof rec->user_id, "%s", USER);
  rec->kind = STORE_JOB_EXPORT;
  rec->created_at = rec->updated_at = completed_at;
  rec->expires_at = expires_at;
  if (!job_kind_body(rec->body, &export_job_kind, &job.base, false, err) ||
      !store_job_create(s, rec, err))
    goto done;
  if (status == S(COMPLETED)) {
    job_blob_id(blob, &export_job_kind, id);
    if (!store_blob_writer_new(&w, s, STORE_BUCKET_PACKAGES, blob, err) ||
        !store_blob_writer_write(w, id, strlen(id), err) ||
        !store_blob_writer_commit(w, NULL, err))
      goto done;
  }
  ok = true;
done:
  store_blob_writer_destroy(w);
  store_job_destroy(rec);
  return ok;
}

static bool has_blob(store_t *s, const char *id) {
  char blob[JOB_BLOB_ID_MAX];
  store_blob_info_t info;
  fzip_error_t err;

  job_blob_id(blob, &export_job_kind, id);
  return store_blob_stat(&info, s, STORE_BUCKET_PACKAGES, blob, &err);
}

/* The stored export (NULL if gone), record expires_at in *rec_expires. */
static Fzip__V1__ExportJob *get_export(store_t *s, const char *id, int64_t *rec_expires) {
  store_job_t *rec = NULL;
  ProtobufCMessage *msg = NULL;
  fzip_error_t err;

  if (!store_job_get(&rec, s, STORE_JOB_EXPORT, USER, id, &err))
    return NULL;
  if (rec_expires)
    *rec_expires = rec->expires_at;
  if (!job_body_unpack(&msg, rec->body, &fzip__v1__export_job__descriptor, NULL, &err))
    msg = NULL;
  store_job_destroy(rec);
  return (Fzip__V1__ExportJob *)msg;
}

static bool is_kept(store_t *s, const char *id, const char *reasons) {
  int64_t rec_expires = -1;
  Fzip__V1__ExportJob *job = get_export(s, id, &rec_expires);
  char got[256] = "";
  size_t len = 0;
  bool ok;

  if (!job)
    return false;
  for (size_t i = 0; i < job->n_kept_reasons; i++)
    len += (size_t)snprintf(got + len, sizeof got - len, "%s%s", i ? "," : "",
                            job->kept_reasons[i]);
  ok = job->kept && job->expires_at == 0 && rec_expires == 0 && strcmp(got, reasons) == 0 &&
       has_blob(s, id);
  if (!ok)
    fprintf(stderr, "  %s: kept %d expires %lld/%lld reasons %s blob %d\n", id, job->kept,
            (long long)job->expires_at, (long long)rec_expires, got, has_blob(s, id));
  protobuf_c_message_free_unpacked(&job->base, NULL);
  return ok;
}

static bool untouched(store_t *s, const char *id, int64_t expires_at) {
  int64_t rec_expires = -1;
  Fzip__V1__ExportJob *job = get_export(s, id, &rec_expires);
  bool ok = job && !job->kept && job->n_kept_reasons == 0 && job->expires_at == expires_at &&
            rec_expires == expires_at;

  if (job)
    protobuf_c_message_free_unpacked(&job->base, NULL);
  return ok;
}

static bool gone(store_t *s, const char *id) {
  Fzip__V1__ExportJob *job = get_export(s, id, NULL);

  if (job)
    protobuf_c_message_free_unpacked(&job->base, NULL);
  return !job && !has_blob(s, id);
}

static const char *decision_of(const Fzip__V1__ApplyRetentionResponse *r, size_t i) {
  static char buf[128];
  size_t len = (size_t)snprintf(buf, sizeof buf, "%s:%s", r->decisions[i]->export_id,
                                r->decisions[i]->keep ? "keep" : "go");
  for (size_t k = 0; k < r->decisions[i]->n_reasons; k++)
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", k ? "," : " ",
                            r->decisions[i]->reasons[k]);
  return buf;
}

static void test_apply_keeps_deletes_and_kept_never_expire(void) {
  store_t *s = NULL;
  fzip_error_t err;
  Fzip__V1__RetentionPolicy p = FZIP__V1__RETENTION_POLICY__INIT;
  Fzip__V1__ApplyRetentionResponse *r = NULL;
  const int64_t now = fzip_now_ms(), ttl = now + DAY_MS;
  const int64_t soon = now + RETENTION_EXPIRY_GUARD_MS / 2, week = now + 7 * DAY_MS;
  store_reap_stats_t st = {0};
  static const char *const want[] = {"d5:keep last",       "i4:keep last",
                                     "c3:keep base",       "d2:go",
                                     "d1:go"};

  CHECK_OK(open_store(&s, &err), err);
  /* One schedule: d1 d2 complete, c3 complete base of increment i4, d5;
   * its failed run, its export about to expire; another schedule's and a
   * client's export. */
  CHECK_OK(put_export(s, "d1", SCHEDULE, S(COMPLETED), now - 5 * DAY_MS, ttl, "", &err), err);
  CHECK_OK(put_export(s, "d2", SCHEDULE, S(COMPLETED), now - 4 * DAY_MS, ttl, "", &err), err);
  CHECK_OK(put_export(s, "c3", SCHEDULE, S(COMPLETED), now - 3 * DAY_MS, ttl, "", &err), err);
  CHECK_OK(put_export(s, "i4", SCHEDULE, S(COMPLETED), now - 2 * DAY_MS, ttl, "c3", &err), err);
  CHECK_OK(put_export(s, "d5", SCHEDULE, S(COMPLETED), now - 1 * DAY_MS, ttl, "", &err), err);
  CHECK_OK(put_export(s, "f6", SCHEDULE, S(FAILED), now - 6 * DAY_MS, week, "", &err), err);
  CHECK_OK(put_export(s, "x7", SCHEDULE, S(COMPLETED), now - 7 * DAY_MS, soon, "", &err), err);
  CHECK_OK(put_export(s, "o8", "other", S(COMPLETED), now - 8 * DAY_MS, ttl, "", &err), err);
  CHECK_OK(put_export(s, "n9", "", S(COMPLETED), now - 9 * DAY_MS, ttl, "", &err), err);
  p.keep_last = 2;

  CHECK_OK(retention_apply(&r, NULL, s, USER, SCHEDULE, &p, "Europe/London", true, now, &err),
           err);
  CHECK(r->n_decisions == 5 && r->kept == 3 && r->deleted == 0);
  for (size_t i = 0; i < 5; i++)
    CHECK(strcmp(decision_of(r, i), want[i]) == 0);
  CHECK(strcmp(r->decisions[1]->base_export_id, "c3") == 0);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = NULL;
  for (size_t i = 0; i < 5; i++) /* the dry run changed nothing */
    CHECK(untouched(s, (const char *[]){"d1", "d2", "c3", "i4", "d5"}[i], ttl));

  CHECK_OK(retention_apply(&r, NULL, s, USER, SCHEDULE, &p, "Europe/London", false, now, &err),
           err);
  CHECK(r->n_decisions == 5 && r->kept == 3 && r->deleted == 2);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = NULL;
  CHECK(is_kept(s, "d5", "last") && is_kept(s, "i4", "last") && is_kept(s, "c3", "base"));
  CHECK(gone(s, "d1") && gone(s, "d2"));
  CHECK(untouched(s, "f6", week) && untouched(s, "x7", soon) && untouched(s, "o8", ttl) &&
        untouched(s, "n9", ttl));
  CHECK(has_blob(s, "x7") && has_blob(s, "o8"));

  /* Two days on the reaper expires everything else, never a kept export. */
  CHECK_OK(store_reap(&st, s, now + 2 * DAY_MS, DAY_MS, NULL, NULL, &err), err);
  CHECK(is_kept(s, "d5", "last") && is_kept(s, "i4", "last") && is_kept(s, "c3", "base"));
  CHECK(gone(s, "o8") && gone(s, "x7") && gone(s, "n9"));

  /* A later run: a new export; i4 is no longer among the last two and
   * goes, and c3 with it (no kept increment needs it now). */
  CHECK_OK(put_export(s, "d10", SCHEDULE, S(COMPLETED), now, ttl, "", &err), err);
  CHECK_OK(retention_apply(&r, NULL, s, USER, SCHEDULE, &p, "", false, now, &err), err);
  CHECK(r->kept == 2 && r->deleted == 2);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = NULL;
  CHECK(is_kept(s, "d10", "last") && is_kept(s, "d5", "last"));
  CHECK(gone(s, "i4") && gone(s, "c3"));

  /* DeleteSchedule: kept exports go back to expiring... */
  uint64_t changed = 0;
  CHECK_OK(retention_release(&changed, s, USER, SCHEDULE, false, ttl, &err), err);
  CHECK(changed == 2 && untouched(s, "d10", ttl) && untouched(s, "d5", ttl));
  /* ...or are deleted with delete_packages (f6 too: every export of it). */
  CHECK_OK(retention_release(&changed, s, USER, SCHEDULE, true, 0, &err), err);
  CHECK(changed == 3 && gone(s, "d10") && gone(s, "d5") && !get_export(s, "f6", NULL));
  store_destroy(s);
}

/* Run alone with FZIP_FAILPOINTS=retention.delete=error@2 (CMake test
 * export.retention.failpoint): the second deletion fails; by then every
 * kept export was saved, one deletion was made and the other export is
 * untouched. */
static void test_failure_half_way_has_saved_every_keep(void) {
  store_t *s = NULL;
  fzip_error_t err;
  Fzip__V1__RetentionPolicy p = FZIP__V1__RETENTION_POLICY__INIT;
  Fzip__V1__ApplyRetentionResponse *r = NULL;
  const int64_t now = fzip_now_ms(), ttl = now + DAY_MS;
  const char *fp = getenv("FZIP_FAILPOINTS");

  CHECK(fp && strstr(fp, "retention.delete=error@2"));
  CHECK_OK(open_store(&s, &err), err);
  CHECK_OK(put_export(s, "h1", "sched-h", S(COMPLETED), now - 4 * DAY_MS, ttl, "", &err), err);
  CHECK_OK(put_export(s, "h2", "sched-h", S(COMPLETED), now - 3 * DAY_MS, ttl, "", &err), err);
  CHECK_OK(put_export(s, "h3", "sched-h", S(COMPLETED), now - 2 * DAY_MS, ttl, "h2", &err), err);
  CHECK_OK(put_export(s, "h4", "sched-h", S(COMPLETED), now - 1 * DAY_MS, ttl, "", &err), err);
  CHECK_OK(put_export(s, "h0", "sched-h", S(COMPLETED), now - 5 * DAY_MS, ttl, "", &err), err);
  p.keep_last = 1;
  p.keep_within_ms = DAY_MS + 1; /* h4, h3 (and h2, h3's base) stay; h1 then h0 go */
  CHECK_FAILS(retention_apply(&r, NULL, s, USER, "sched-h", &p, "", false, now, &err), err,
              FZIP_ERR_UNAVAILABLE);
  CHECK(r == NULL);
  CHECK(is_kept(s, "h4", "last,within") && is_kept(s, "h3", "within") &&
        is_kept(s, "h2", "base"));
  CHECK(gone(s, "h1") && untouched(s, "h0", ttl) && has_blob(s, "h0"));
  store_destroy(s);
}

/* A bad zone or schedule id fails before anything is read or changed. */
static void test_apply_refuses_bad_arguments(void) {
  store_t *s = NULL;
  fzip_error_t err;
  Fzip__V1__ApplyRetentionResponse *r = NULL;

  CHECK_OK(open_store(&s, &err), err);
  CHECK_FAILS(retention_apply(&r, NULL, s, USER, SCHEDULE, NULL, "Mars/Olympus", false, 0, &err),
              err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK(r == NULL);
  CHECK_FAILS(retention_apply(&r, NULL, s, USER, "", NULL, "", false, 0, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  store_destroy(s);
}

int main(void) {
  if (!fzip_test_temp_file(g_db, sizeof g_db, "retention"))
    return 1;
  RUN(test_policies_keep_the_newest_of_each_bucket);
  RUN(test_bases_of_kept_increments_are_kept);
  RUN(test_ties_are_broken_by_id);
  RUN(test_negative_policy_is_refused);
  RUN(test_apply_keeps_deletes_and_kept_never_expire);
  RUN(test_apply_refuses_bad_arguments);
  if (getenv("FZIP_FAILPOINTS")) /* export.retention.failpoint runs it alone */
    RUN(test_failure_half_way_has_saved_every_keep);
  fzip_test_remove_sqlite(g_db);
  return fzip_test_summary();
}
