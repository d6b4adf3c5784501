/*
 * svc_schedule: fzip.v1.ScheduleService: a user's export schedules
 * (create, get, list, update, delete) and ApplyRetention, which hands the
 * schedule's policy and time zone to retention_apply (retention.h).
 *
 * Schedules are stored as STORE_JOB_SCHEDULE records (schedule_run.h says
 * how); this service owns every write a user makes to them, the scheduler
 * (schedule_run.h) every write a run makes.  docs/EXPORT.md "Schedules and
 * retention".
 */
#ifndef FZIP_SVC_SCHEDULE_H
#define FZIP_SVC_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include "fzip_error.h"
#include "rpc.h"
#include "store.h"

/* Schedules one user may have; CreateSchedule beyond it is
 * RESOURCE_EXHAUSTED (reason SCHEDULES_LIMIT). */
#define SCHEDULES_PER_USER_MAX 20
#define SVC_SCHEDULE_METHODS 6

typedef struct svc_schedule svc_schedule_t;

typedef struct {
  int64_t export_ttl_ms;          /* DeleteSchedule: released packages expire this long after */
  const char *clock_offset_file;  /* test only (schedule_run.h); NULL: the wall clock */
} svc_schedule_options_t;

/* `store` is borrowed and must outlive the service. */
bool svc_schedule_new(svc_schedule_t **out, store_t *store, const svc_schedule_options_t *options,
                      fzip_error_t *error);
void svc_schedule_destroy(svc_schedule_t *svc); /* accepts NULL */
/* The SVC_SCHEDULE_METHODS rows (borrowed from svc). */
const rpc_method_t *const *svc_schedule_methods(svc_schedule_t *svc, size_t *n);

#endif
