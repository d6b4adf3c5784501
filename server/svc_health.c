/*
 * svc_health: a fixed table of (service name, status, version) under one
 * mutex.  Every change bumps a version; a Watch stream remembers the
 * status it last sent and sends again only when the status differs, so
 * flapping between polls costs nothing and a watcher always ends with the
 * latest status.
 *
 * The store checker is a ticker (fzip_ticker.h) that pings and sets the
 * store-following names under the same mutex; destroy stops it without
 * waiting out an interval.
 */
#include "svc_health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fzip_log.h"
#include "fzip_ticker.h"
#include "grpc/health/v1/health.pb-c.h"

/* The names whose status is the store's. */
static const char *const STORE_NAMES[] = {
    "",
    "fzip.v1.ExportService",
    "fzip.v1.ImportService",
    "fzip.v1.DataService",
    "fzip.v1.ScheduleService",
};
#define STORE_NAME_COUNT (sizeof STORE_NAMES / sizeof STORE_NAMES[0])
/* The names that only say the process serves. */
static const char *const PROCESS_NAMES[] = {SVC_HEALTH_LIVENESS, SVC_HEALTH_SELF};
#define PROCESS_NAME_COUNT (sizeof PROCESS_NAMES / sizeof PROCESS_NAMES[0])

typedef struct {
  char name[SVC_HEALTH_NAME_MAX];
  svc_health_status_t status;
} health_entry_t;

struct svc_health {
  pthread_mutex_t mu;
  health_entry_t entries[SVC_HEALTH_MAX_SERVICES];
  int count;
  rpc_method_t check_row;
  rpc_method_t watch_row;
  rpc_server_stream_ops_t watch_ops;
  /* The store checker (svc_health_follow_store); mu guards the flags. */
  store_t *store;
  int64_t interval_ms;
  fzip_ticker_t *checker;
  bool shutting_down; /* set_all_not_serving: the checker changes nothing */
  bool store_up;      /* what the last ping said */
};

/* Watch state: what was sent last (-1: nothing yet). */
typedef struct {
  char service[SVC_HEALTH_NAME_MAX];
  int last_sent;
} watch_state_t;

/* Status of `service`, or -1 if never set.  Caller holds no lock. */
static int lookup(svc_health_t *h, const char *service) {
  int status = -1;
  pthread_mutex_lock(&h->mu);
  for (int i = 0; i < h->count; i++) {
    if (strcmp(h->entries[i].name, service) == 0) {
      status = (int)h->entries[i].status;
      break;
    }
  }
  pthread_mutex_unlock(&h->mu);
  return status;
}

static ProtobufCMessage *make_response(rpc_ctx_t *ctx, int status, fzip_error_t *error) {
  Grpc__Health__V1__HealthCheckResponse *resp = rpc_ctx_alloc(ctx, sizeof *resp);
  if (!resp) {
    fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_RESOURCE_EXHAUSTED, "out of call memory");
    return NULL;
  }
  grpc__health__v1__health_check_response__init(resp);
  resp->status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
  return &resp->base;
}

static bool check_name(const char *service, fzip_error_t *error) {
  if (strlen(service) >= SVC_HEALTH_NAME_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                          "service name longer than %d bytes", SVC_HEALTH_NAME_MAX - 1);
  return true;
}

static bool health_check(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                         fzip_error_t *error) {
  svc_health_t *h = rpc_ctx_method_data(ctx);
  const Grpc__Health__V1__HealthCheckRequest *r = (const Grpc__Health__V1__HealthCheckRequest *)req;
  const char *service = r->service ? r->service : "";
  if (!check_name(service, error))
    return false;
  int status = lookup(h, service);
  if (status < 0)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_NOT_FOUND, "unknown service \"%s\"",
                          service);
  *resp = make_response(ctx, status, error);
  return *resp != NULL;
}

static bool watch_open(rpc_ctx_t *ctx, const ProtobufCMessage *req, void **state,
                       fzip_error_t *error) {
  const Grpc__Health__V1__HealthCheckRequest *r = (const Grpc__Health__V1__HealthCheckRequest *)req;
  const char *service = r->service ? r->service : "";
  if (!check_name(service, error))
    return false;
  watch_state_t *w = calloc(1, sizeof *w);
  if (!w)
    return fzip_error_oom(error, NULL);
  strcpy(w->service, service); /* length checked above */
  w->last_sent = -1;
  *state = w;
  return true;
}

static bool watch_next(rpc_ctx_t *ctx, void *state, ProtobufCMessage **msg, bool *done,
                       int *retry_after_ms, fzip_error_t *error) {
  svc_health_t *h = rpc_ctx_method_data(ctx);
  watch_state_t *w = state;
  int status = lookup(h, w->service);
  if (status < 0)
    status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
  if (status == w->last_sent) {
    *retry_after_ms = SVC_HEALTH_WATCH_POLL_MS;
    return true;
  }
  *msg = make_response(ctx, status, error);
  if (!*msg)
    return false;
  w->last_sent = status;
  return true;
}

static void watch_close(rpc_ctx_t *ctx, void *state) { free(state); }

bool svc_health_new(svc_health_t **out, fzip_error_t *error) {
  svc_health_t *h = calloc(1, sizeof *h);
  if (!h)
    return fzip_error_oom(error, NULL);
  pthread_mutex_init(&h->mu, NULL);
  h->watch_ops = (rpc_server_stream_ops_t){watch_open, watch_next, watch_close};
  h->check_row = (rpc_method_t){
      .path = "/grpc.health.v1.Health/Check",
      .kind = RPC_UNARY,
      .request = &grpc__health__v1__health_check_request__descriptor,
      .response = &grpc__health__v1__health_check_response__descriptor,
      .unary = health_check,
      .quiet = true, /* probes come every few seconds */
      .data = h,
  };
  h->watch_row = (rpc_method_t){
      .path = "/grpc.health.v1.Health/Watch",
      .kind = RPC_SERVER_STREAMING,
      .request = &grpc__health__v1__health_check_request__descriptor,
      .response = &grpc__health__v1__health_check_response__descriptor,
      .server_stream = &h->watch_ops,
      .quiet = true,
      .data = h,
  };
  *out = h;
  return true;
}

void svc_health_destroy(svc_health_t *health) {
  if (!health)
    return;
  fzip_ticker_destroy(health->checker);
  pthread_mutex_destroy(&health->mu);
  free(health);
}

/* Sets (or adds) `service` with h->mu held; false only when the table is
 * full. */
static bool set_locked(svc_health_t *h, const char *service, svc_health_status_t status,
                       fzip_error_t *error) {
  for (int i = 0; i < h->count; i++) {
    if (strcmp(h->entries[i].name, service) == 0) {
      h->entries[i].status = status;
      return true;
    }
  }
  if (h->count == SVC_HEALTH_MAX_SERVICES)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "health table full (%d services)", SVC_HEALTH_MAX_SERVICES);
  strcpy(h->entries[h->count].name, service); /* length checked by the callers */
  h->entries[h->count].status = status;
  h->count++;
  return true;
}

bool svc_health_set(svc_health_t *health, const char *service, svc_health_status_t status,
                    fzip_error_t *error) {
  bool ok;
  if (!check_name(service, error))
    return false;
  pthread_mutex_lock(&health->mu);
  ok = set_locked(health, service, status, error);
  pthread_mutex_unlock(&health->mu);
  return ok;
}

void svc_health_set_all_not_serving(svc_health_t *health) {
  pthread_mutex_lock(&health->mu);
  health->shutting_down = true;
  for (int i = 0; i < health->count; i++)
    health->entries[i].status = SVC_HEALTH_NOT_SERVING;
  pthread_mutex_unlock(&health->mu);
}

void svc_health_methods(const rpc_method_t *out[SVC_HEALTH_METHOD_COUNT], svc_health_t *health) {
  out[0] = &health->check_row;
  out[1] = &health->watch_row;
}

/* ---- the store checker ----------------------------------------------------- */

/* Pings once and sets the store-following names; logs each change (with
 * the store's own message: logs may name the host, clients never see it). */
static void check_store(svc_health_t *h) {
  fzip_error_t err = {0};
  int timeout_ms = h->interval_ms < SVC_HEALTH_PING_TIMEOUT_MS ? (int)h->interval_ms
                                                               : SVC_HEALTH_PING_TIMEOUT_MS;
  bool up = store_ping(h->store, timeout_ms, &err);
  bool changed;

  pthread_mutex_lock(&h->mu);
  changed = up != h->store_up;
  h->store_up = up;
  if (!h->shutting_down) {
    for (size_t i = 0; i < STORE_NAME_COUNT; i++)
      set_locked(h, STORE_NAMES[i], up ? SVC_HEALTH_SERVING : SVC_HEALTH_NOT_SERVING, NULL);
  }
  pthread_mutex_unlock(&h->mu);
  if (changed && up)
    fzip_log(FZIP_LOG_INFO, "health", "store reachable again: SERVING", NULL);
  else if (changed)
    fzip_log(FZIP_LOG_WARN, "health", "store unreachable: NOT_SERVING", "error", err.message,
             NULL);
}

static void checker_tick(fzip_ticker_t *ticker, void *arg) {
  (void)ticker;
  check_store(arg);
}

bool svc_health_follow_store(svc_health_t *health, store_t *store, int64_t interval_ms,
                             fzip_error_t *error) {
  if (interval_ms <= 0)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "health check interval must be positive, got %lld ms",
                          (long long)interval_ms);
  health->store = store;
  health->interval_ms = interval_ms;
  health->store_up = true; /* so a first failed ping is logged as a change */
  for (size_t i = 0; i < PROCESS_NAME_COUNT; i++) {
    if (!svc_health_set(health, PROCESS_NAMES[i], SVC_HEALTH_SERVING, error))
      return false;
  }
  check_store(health);
  /* The first ping was just done above: the checker's first is one
   * interval later. */
  return fzip_ticker_new(&health->checker, interval_ms, FZIP_TICKER_FIRST_AFTER_INTERVAL,
                         checker_tick, health, error);
}
