/*
 * retention: which of a schedule's exports to keep, like restic's
 * `forget`, and applying it (docs/EXPORT.md "Retention").
 *
 * The decision (retention_decide) is pure: the schedule's COMPLETED
 * exports, newest first by completed_at, are kept by keep_last and by the
 * newest export of each of the newest keep_hourly hours, keep_daily days,
 * keep_weekly ISO weeks, keep_monthly months and keep_yearly years (local
 * time of the schedule's zone), and by keep_within_ms (completed less than
 * that before the newest).  A policy of all zeros keeps every export
 * (reason "all").  A base that a kept increment needs is kept too,
 * transitively (reason "base").
 *
 * Applying it (retention_apply) marks the kept exports (ExportJob.kept,
 * kept_reasons, expires_at 0: they never expire while kept) and deletes
 * the others (package blob, then job, as DeleteExport).  Exports that are
 * not COMPLETED (queued, running, failed, cancelled, expired), or that
 * expire within RETENTION_EXPIRY_GUARD_MS (the reaper may be at them), are
 * left alone.  retention_apply does not know how schedules are stored: the
 * caller passes the schedule's policy and time zone.
 */
#ifndef FZIP_RETENTION_H
#define FZIP_RETENTION_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "fzip/v1/schedule_service.pb-c.h"
#include "fzip_entity.h"
#include "fzip_error.h"
#include "fzip_tz.h"
#include "store.h"

/* Most COMPLETED exports of one schedule considered; a schedule with more
 * is refused (RESOURCE_EXHAUSTED) rather than judged on a part. */
#define RETENTION_EXPORTS_MAX 10000
/* An export expiring sooner than this is left to the reaper: keeping it
 * could race the reaper deleting its package. */
#define RETENTION_EXPIRY_GUARD_MS (60LL * 1000)

/* Reasons, as ExportJob.kept_reasons / RetentionDecision.reasons. */
typedef enum {
  RETENTION_LAST = 1u << 0,    /* "last" */
  RETENTION_HOURLY = 1u << 1,  /* "hourly" */
  RETENTION_DAILY = 1u << 2,   /* "daily" */
  RETENTION_WEEKLY = 1u << 3,  /* "weekly" */
  RETENTION_MONTHLY = 1u << 4, /* "monthly" */
  RETENTION_YEARLY = 1u << 5,  /* "yearly" */
  RETENTION_WITHIN = 1u << 6,  /* "within" */
  RETENTION_BASE = 1u << 7,    /* "base" */
  RETENTION_ALL = 1u << 8,     /* "all": the policy is all zeros */
} retention_reason_t;
#define RETENTION_REASONS 9

/* Name of one reason bit ("daily"); NULL for anything else. */
const char *retention_reason_name(unsigned reason);

/* One export for the decision. */
typedef struct {
  char export_id[FZIP_ID_MAX + 1];
  char base_export_id[FZIP_ID_MAX + 1]; /* "" for a complete package */
  int64_t completed_at;                 /* epoch ms */
  unsigned reasons;                     /* out: retention_reason_t bits; 0: it goes */
  int64_t version; /* retention_apply: the record's version when listed (unused by decide) */
} retention_item_t;

/* INVALID_ARGUMENT naming the first negative field of `policy` (NULL:
 * no policy, fine): CreateSchedule/UpdateSchedule check with this what
 * retention_decide will refuse. */
bool retention_policy_check(const Fzip__V1__RetentionPolicy *policy, fzip_error_t *error);

/* Sorts items newest first (completed_at, then export_id, descending) and
 * sets each one's reasons under `policy` with buckets in `tz`.  An
 * increment whose base is not among the items keeps nothing else.
 * INVALID_ARGUMENT for a negative policy field. */
bool retention_decide(retention_item_t *items, size_t n, const Fzip__V1__RetentionPolicy *policy,
                      const fzip_tz_t *tz, fzip_error_t *error);

/* Applies `policy` (time zone `time_zone`, "" UTC) to the COMPLETED
 * exports of `user_id` whose schedule_id is `schedule_id`; with `dry_run`
 * only decides.  `now_ms` stamps the records' updated_at (the expiry guard
 * reads the wall clock, as the reaper does, whatever clock the caller
 * runs on).  *out (allocated with `alloc`, NULL: the
 * system allocator; the caller frees it with
 * protobuf_c_message_free_unpacked(*out, alloc)) lists every decision,
 * newest first, and the counts.  Kept exports are saved version-checked,
 * retried on ABORTED (JOB_UPDATE_RETRIES); an export deleted meanwhile is
 * skipped, and so is one to delete that changed since it was listed (a
 * concurrent application, e.g. with a newer export, may have kept it).
 * On failure part of the changes may have been made (kept first,
 * deletions after: never a deletion before every keep is saved);
 * running it again finishes them. */
bool retention_apply(Fzip__V1__ApplyRetentionResponse **out, ProtobufCAllocator *alloc,
                     store_t *store, const char *user_id, const char *schedule_id,
                     const Fzip__V1__RetentionPolicy *policy, const char *time_zone,
                     bool dry_run, int64_t now_ms, fzip_error_t *error);

/* For DeleteSchedule: the schedule's kept exports stop being kept
 * (kept false, no reasons, expiring at `expires_at`, e.g. now + the export
 * TTL), or with `delete_packages` every export of the schedule that no
 * worker is running is deleted (blob, then job).  *n_changed (may be NULL)
 * counts them. */
bool retention_release(uint64_t *n_changed, store_t *store, const char *user_id,
                       const char *schedule_id, bool delete_packages, int64_t expires_at,
                       fzip_error_t *error);

#endif
