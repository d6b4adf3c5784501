/*
 * schedule_run: the scheduler that runs due export schedules, and the
 * schedule record both it and ScheduleService (svc_schedule.h) use.
 *
 * A schedule is a store job record of kind STORE_JOB_SCHEDULE (store.h):
 * job_id is the schedule id, the body holds the packed fzip.v1.Schedule
 * (job_body.h) and, while the retention of its last run is still to be
 * applied, that export's id.  The record is runnable while the schedule is
 * not paused, and its lease_until is the next due time, so the store's
 * claim (oldest runnable record whose lease is free) hands a due schedule
 * to exactly one replica.  The claimer creates the run's export through
 * svc_export_create, with request_id "schedule-<id>-<due ms>", so a
 * retry or a second replica that took the schedule over never makes two;
 * then it records the run, moves lease_until to the next due time (or
 * sooner, to come back and apply retention when the export has ended) and
 * releases the lease.
 *
 * Missed runs (no replica ran while due times passed): the first missed
 * due time runs once, the rest are counted in missed_runs and skipped; the
 * next run is the first due time after now.
 *
 * Clock: for tests, a file named by --test-clock-offset-file holds a
 * number of milliseconds the scheduler and ScheduleService add to the
 * wall clock (read on every use), so a test moves time on without waiting.
 */
#ifndef FZIP_SCHEDULE_RUN_H
#define FZIP_SCHEDULE_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "fzip/v1/schedule_service.pb-c.h"
#include "fzip_error.h"
#include "store.h"
#include "svc_export.h"

#define SCHEDULE_TICK_DEFAULT_MS 5000
/* Due schedules one tick runs at most (the next tick takes the rest). */
#define SCHEDULE_RUNS_PER_TICK 100
/* How often a schedule whose export is still running is looked at again
 * to apply its retention. */
#define SCHEDULE_RETENTION_RECHECK_MS 10000
/* Missed due times counted for one catch-up (a minutely schedule stopped
 * for a year would otherwise cost half a million steps); more are
 * counted as this many. */
#define SCHEDULE_MISSED_COUNT_MAX 100000
/* Body field naming the export whose retention is still to be applied. */
#define SCHEDULE_PENDING_FIELD "pendingExportId"
/* Largest test clock offset file, bytes. */
#define SCHEDULE_CLOCK_FILE_MAX 64

/* Now as the scheduler sees it: the wall clock, plus the offset in
 * `offset_file` (NULL: none; a missing or malformed file: 0). */
int64_t schedule_clock_now(const char *offset_file);

/* A schedule record read from the store: the message (malloc-unpacked,
 * version set from the record) and the pending export id ("" none). */
typedef struct {
  store_job_t *rec;
  Fzip__V1__Schedule *msg;
  char pending[FZIP_ID_MAX + 1];
} schedule_rec_t;

/* Unpacks rec (taken over: freed by schedule_rec_fini). */
bool schedule_rec_init(schedule_rec_t *s, store_job_t *rec, fzip_error_t *error);
void schedule_rec_fini(schedule_rec_t *s);
/* Sets next_run_at from the spec (0 when paused: the first due time
 * after `now_ms` otherwise), then the record's runnable and lease_until
 * to match (and lease_owner "").  Errors: a bad cron or time zone. */
bool schedule_rec_plan(schedule_rec_t *s, int64_t now_ms, fzip_error_t *error);
/* Rebuilds the record's body from msg and pending. */
bool schedule_rec_pack(schedule_rec_t *s, fzip_error_t *error);

typedef struct schedule_run schedule_run_t;

typedef struct {
  int64_t tick_ms;          /* how often due schedules are looked for; 0: default */
  int64_t lease_ms;         /* lease while a run is being made; 0: jobs.h default */
  const char *clock_offset_file; /* test only; NULL: the wall clock */
} schedule_run_options_t;

/* Starts the scheduler thread.  store and exports are borrowed and must
 * outlive it. */
bool schedule_run_new(schedule_run_t **out, store_t *store, svc_export_t *exports,
                      const schedule_run_options_t *options, fzip_error_t *error);
void schedule_run_destroy(schedule_run_t *run); /* accepts NULL; joins */

#endif
