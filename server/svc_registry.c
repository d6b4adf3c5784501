/*
 * svc_registry: assembles the method table from each service's rows.
 *
 * The UNIMPLEMENTED rows share one generic handler per call shape (unary,
 * server streaming, client streaming) that names the method from the
 * call's own row, so there is no per-method stub to forget to delete.
 */
#include "svc_registry.h"

#include <stdlib.h>

#include "fzip/v1/export_service.pb-c.h"
#include "fzip/v1/import_service.pb-c.h"
#include "fzip_descriptors.h"
#include "reaper.h"
#include "svc_data.h"
#include "svc_export.h"
#include "svc_reflection.h"

struct svc_registry {
  svc_health_t *health;
  svc_data_t *data;
  svc_export_t *exports;
  svc_reflection_t *reflection;
  reaper_t *reaper;
  const rpc_method_t *methods[SVC_REGISTRY_METHODS_MAX];
  size_t n_methods;
};

/* ---- the generic UNIMPLEMENTED handler ---------------------------------- */

static bool unimplemented(rpc_ctx_t *ctx, fzip_error_t *error) {
  return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_UNIMPLEMENTED,
                        "%s is not implemented yet", rpc_ctx_method(ctx)->path);
}

static bool unimplemented_unary(rpc_ctx_t *ctx, const ProtobufCMessage *req,
                                ProtobufCMessage **resp, fzip_error_t *error) {
  return unimplemented(ctx, error);
}

static bool unimplemented_open(rpc_ctx_t *ctx, const ProtobufCMessage *req, void **state,
                               fzip_error_t *error) {
  return unimplemented(ctx, error);
}

static bool unimplemented_next(rpc_ctx_t *ctx, void *state, ProtobufCMessage **msg, bool *done,
                               int *retry_after_ms, fzip_error_t *error) {
  return unimplemented(ctx, error);
}

static bool unimplemented_recv(rpc_ctx_t *ctx, void **state, const ProtobufCMessage *msg,
                               fzip_error_t *error) {
  return unimplemented(ctx, error);
}

static bool unimplemented_finish(rpc_ctx_t *ctx, void *state, ProtobufCMessage **resp,
                                 fzip_error_t *error) {
  return unimplemented(ctx, error);
}

/* Nothing was opened, so there is nothing to release. */
static void unimplemented_close(rpc_ctx_t *ctx, void *state) {}

static const rpc_server_stream_ops_t UNIMPLEMENTED_SERVER_STREAM = {
    unimplemented_open, unimplemented_next, unimplemented_close};
static const rpc_client_stream_ops_t UNIMPLEMENTED_CLIENT_STREAM = {
    unimplemented_recv, unimplemented_finish, unimplemented_close};

#define PENDING_UNARY(svc, name, req, resp)                                                 \
  {"/fzip.v1." svc "/" name, RPC_UNARY, &fzip__v1__##req##__descriptor,                    \
   &fzip__v1__##resp##__descriptor, true, unimplemented_unary, NULL, NULL, NULL, NULL}
#define PENDING_SERVER_STREAM(svc, name, req, resp)                                         \
  {"/fzip.v1." svc "/" name, RPC_SERVER_STREAMING, &fzip__v1__##req##__descriptor,         \
   &fzip__v1__##resp##__descriptor, true, NULL, &UNIMPLEMENTED_SERVER_STREAM, NULL, NULL,  \
   NULL}
#define PENDING_CLIENT_STREAM(svc, name, req, resp)                                         \
  {"/fzip.v1." svc "/" name, RPC_CLIENT_STREAMING, &fzip__v1__##req##__descriptor,         \
   &fzip__v1__##resp##__descriptor, true, NULL, NULL, &UNIMPLEMENTED_CLIENT_STREAM, NULL,  \
   NULL}

/* fzip.v1.ImportService: replace this block with the import service's rows. */
static const rpc_method_t PENDING_IMPORT[] = {
    PENDING_CLIENT_STREAM("ImportService", "UploadImport", upload_import_request,
                          upload_import_response),
    PENDING_UNARY("ImportService", "StartImport", start_import_request, start_import_response),
    PENDING_UNARY("ImportService", "GetImport", get_import_request, get_import_response),
    PENDING_UNARY("ImportService", "ListImports", list_imports_request, list_imports_response),
    PENDING_UNARY("ImportService", "DeleteImport", delete_import_request, delete_import_response),
    PENDING_UNARY("ImportService", "CancelImport", cancel_import_request, cancel_import_response),
    PENDING_SERVER_STREAM("ImportService", "WatchImport", watch_import_request,
                          watch_import_response),
};

#define N_ROWS(t) (sizeof(t) / sizeof((t)[0]))

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

static bool add_row_array(svc_registry_t *reg, const rpc_method_t *rows, size_t n,
                          fzip_error_t *error) {
  for (size_t i = 0; i < n; i++) {
    const rpc_method_t *row = &rows[i];
    if (!add_rows(reg, &row, 1, error))
      return false;
  }
  return true;
}

static bool add_health(svc_registry_t *reg, fzip_error_t *error) {
  const rpc_method_t *rows[SVC_HEALTH_METHOD_COUNT];

  if (!svc_health_new(&reg->health, error))
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
  o.ttl_ms = config->export_ttl_s * 1000;
  o.retention_ms = config->job_retention_hours * 3600 * 1000;
  o.temp_dir = config->temp_dir;
  if (!svc_export_new(&reg->exports, store, &o, error))
    return false;
  rows = svc_export_methods(reg->exports, &n);
  return add_rows(reg, rows, n, error);
}

static bool add_reflection(svc_registry_t *reg, fzip_error_t *error) {
  const rpc_method_t *const *rows = NULL;
  size_t n = 0;

  if (!svc_reflection_new(&reg->reflection, fzip_descriptor_set, fzip_descriptor_set_len, error))
    return false;
  rows = svc_reflection_methods(reg->reflection, &n);
  return add_rows(reg, rows, n, error);
}

static bool expire_export(void *ctx, store_job_t *job, int64_t now_ms, bool *handled,
                          fzip_error_t *error) {
  return svc_export_expire(ctx, job, now_ms, handled, error);
}

static bool add_reaper(svc_registry_t *reg, store_t *store, const fzipd_config_t *config,
                       fzip_error_t *error) {
  reaper_options_t o = {0};

  o.interval_ms = config->reaper_interval_ms;
  o.hooks[STORE_JOB_EXPORT] = expire_export;
  o.hook_ctx[STORE_JOB_EXPORT] = reg->exports;
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
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "out of memory");
  if (!add_health(reg, error) || !add_reflection(reg, error) || !add_data(reg, store, error) ||
      !add_export(reg, store, config, error) ||
      !add_row_array(reg, PENDING_IMPORT, N_ROWS(PENDING_IMPORT), error) ||
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
  svc_export_destroy(registry->exports);
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
