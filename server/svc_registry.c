/*
 * svc_registry: assembles the method table from each service's rows.
 *
 * Each service is a handle whose rows point back at it; the registry
 * creates them in dependency order and destroys them in reverse, the
 * reaper and the job runners first.
 */
#include "svc_registry.h"

#include <stdlib.h>

#include "fzip/v1/export_service.pb-c.h"
#include "fzip/v1/import_service.pb-c.h"
#include "fzip_descriptors.h"
#include "reaper.h"
#include "schedule_run.h"
#include "svc_data.h"
#include "svc_export.h"
#include "svc_import.h"
#include "svc_jobs.h"
#include "svc_reflection.h"
#include "svc_schedule.h"

struct svc_registry {
  svc_health_t *health;
  svc_data_t *data;
  svc_export_t *exports;
  svc_import_t *imports;
  svc_schedule_t *schedules;
  schedule_run_t *scheduler;
  svc_reflection_t *reflection;
  reaper_t *reaper;
  const rpc_method_t *methods[SVC_REGISTRY_METHODS_MAX];
  size_t n_methods;
};

/* ---- assembling the table ------------------------------------------------ */

static bool add_rows(svc_registry_t *reg, const rpc_method_t *const *rows, size_t n,
                     fzip_error_t *error) {
  if (n > SVC_REGISTRY_METHODS_MAX - reg->n_methods)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL,
                          "more than %d methods: raise SVC_REGISTRY_METHODS_MAX",
                          SVC_REGISTRY_METHODS_MAX);
  for (size_t i = 0; i < n; i++)
    reg->methods[reg->n_methods++] = rows[i];
  return true;
}

static bool add_health(svc_registry_t *reg, store_t *store, const fzipd_config_t *config,
                       fzip_error_t *error) {
  const rpc_method_t *rows[SVC_HEALTH_METHOD_COUNT];

  if (!svc_health_new(&reg->health, error) ||
      !svc_health_follow_store(reg->health, store, config->health_check_interval_ms, error))
    return false;
  svc_health_methods(rows, reg->health);
  return add_rows(reg, rows, SVC_HEALTH_METHOD_COUNT, error);
}

static bool add_export(svc_registry_t *reg, store_t *store, const fzipd_config_t *config,
                       fzip_error_t *error) {
  svc_export_options_t o = {0};
  const rpc_method_t *const *rows = NULL;
  size_t n = 0;

  o.workers = (int)config->export_workers;
  o.max_queued_per_user = config->max_queued_jobs_per_user;
  o.lease_ms = config->job_lease_ms;
  o.ttl_ms = config->export_ttl_s * 1000;
  o.retention_ms = config->job_retention_hours * 3600 * 1000;
  o.temp_dir = config->temp_dir;
  if (!svc_export_new(&reg->exports, store, &o, error))
    return false;
  rows = svc_export_methods(reg->exports, &n);
  return add_rows(reg, rows, n, error);
}

static bool add_import(svc_registry_t *reg, store_t *store, const fzipd_config_t *config,
                       fzip_error_t *error) {
  svc_import_options_t o = {0};
  const rpc_method_t *const *rows = NULL;
  size_t n = 0;

  o.workers = (int)config->import_workers;
  o.max_queued_per_user = config->max_queued_jobs_per_user;
  o.lease_ms = config->job_lease_ms;
  o.max_upload_bytes = config->max_upload_bytes;
  o.retention_ms = config->job_retention_hours * 3600 * 1000;
  o.undo_window_ms = config->import_undo_window_ms >= 0
                         ? config->import_undo_window_ms
                         : config->import_undo_window_hours * 3600 * 1000;
  o.batch_bytes = config->import_batch_bytes;
  o.temp_dir = config->temp_dir;
  if (!svc_import_new(&reg->imports, store, &o, error))
    return false;
  rows = svc_import_methods(reg->imports, &n);
  return add_rows(reg, rows, n, error);
}

/* ScheduleService, and the scheduler that runs due schedules through the
 * export service's create. */
static bool add_schedules(svc_registry_t *reg, store_t *store, const fzipd_config_t *config,
                          fzip_error_t *error) {
  svc_schedule_options_t o = {0};
  schedule_run_options_t ro = {0};
  const rpc_method_t *const *rows = NULL;
  size_t n = 0;

  o.export_ttl_ms = config->export_ttl_s * 1000;
  o.clock_offset_file = config->test_clock_offset_file;
  ro.tick_ms = config->schedule_tick_ms;
  ro.lease_ms = config->job_lease_ms;
  ro.clock_offset_file = config->test_clock_offset_file;
  if (!svc_schedule_new(&reg->schedules, store, &o, error))
    return false;
  rows = svc_schedule_methods(reg->schedules, &n);
  return add_rows(reg, rows, n, error) &&
         schedule_run_new(&reg->scheduler, store, reg->exports, &ro, error);
}

static bool add_reflection(svc_registry_t *reg, fzip_error_t *error) {
  const rpc_method_t *const *rows = NULL;
  size_t n = 0;

  if (!svc_reflection_new(&reg->reflection, fzip_descriptor_set, fzip_descriptor_set_len, error))
    return false;
  rows = svc_reflection_methods(reg->reflection, &n);
  return add_rows(reg, rows, n, error);
}

static bool add_reaper(svc_registry_t *reg, store_t *store, const fzipd_config_t *config,
                       fzip_error_t *error) {
  reaper_options_t o = {0};

  o.interval_ms = config->reaper_interval_ms;
  o.uncommitted_age_ms = config->uncommitted_blob_age_s * 1000;
  o.temp_root = config->temp_root;
  /* Each job service starts with its svc_jobs base: the shared hook
   * expires the jobs of its kind. */
  o.hooks[STORE_JOB_EXPORT] = svc_jobs_expire;
  o.hook_ctx[STORE_JOB_EXPORT] = reg->exports;
  o.hooks[STORE_JOB_IMPORT] = svc_import_expire;
  o.hook_ctx[STORE_JOB_IMPORT] = reg->imports;
  return reaper_new(&reg->reaper, store, &o, error);
}

static bool add_data(svc_registry_t *reg, store_t *store, fzip_error_t *error) {
  const rpc_method_t *const *rows = NULL;
  size_t n = 0;

  if (!svc_data_new(&reg->data, store, error))
    return false;
  rows = svc_data_methods(reg->data, &n);
  return add_rows(reg, rows, n, error);
}

bool svc_registry_new(svc_registry_t **out, store_t *store, const fzipd_config_t *config,
                      fzip_error_t *error) {
  svc_registry_t *reg = NULL;
  bool ok = false;

  *out = NULL;
  reg = calloc(1, sizeof *reg);
  if (!reg)
    return fzip_error_oom(error, NULL);
  if (!add_health(reg, store, config, error) || !add_reflection(reg, error) || !add_data(reg, store, error) ||
      !add_export(reg, store, config, error) ||
      !add_import(reg, store, config, error) || !add_schedules(reg, store, config, error) ||
      !add_reaper(reg, store, config, error))
    goto done;
  *out = reg;
  reg = NULL;
  ok = true;
done:
  svc_registry_destroy(reg);
  return ok;
}

void svc_registry_destroy(svc_registry_t *registry) {
  if (!registry)
    return;
  /* The reaper and the job runners first: they use the services' state. */
  reaper_destroy(registry->reaper);
  schedule_run_destroy(registry->scheduler); /* before the exports it creates through */
  svc_export_destroy(registry->exports);
  svc_import_destroy(registry->imports);
  svc_schedule_destroy(registry->schedules);
  svc_reflection_destroy(registry->reflection);
  svc_data_destroy(registry->data);
  svc_health_destroy(registry->health);
  free(registry);
}

const rpc_method_t *const *svc_registry_methods(const svc_registry_t *registry, size_t *n) {
  *n = registry->n_methods;
  return registry->methods;
}

svc_health_t *svc_registry_health(svc_registry_t *registry) { return registry->health; }
