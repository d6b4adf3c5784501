/*
 * svc_health: a fixed table of (service name, status, version) under one
 * mutex.  Every change bumps a version; a Watch stream remembers the
 * status it last sent and sends again only when the status differs, so
 * flapping between polls costs nothing and a watcher always ends with the
 * latest status.
 */
#include "svc_health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

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
      .data = h,
  };
  h->watch_row = (rpc_method_t){
      .path = "/grpc.health.v1.Health/Watch",
      .kind = RPC_SERVER_STREAMING,
      .request = &grpc__health__v1__health_check_request__descriptor,
      .response = &grpc__health__v1__health_check_response__descriptor,
      .server_stream = &h->watch_ops,
      .data = h,
  };
  *out = h;
  return true;
}

void svc_health_destroy(svc_health_t *health) {
  if (!health)
    return;
  pthread_mutex_destroy(&health->mu);
  free(health);
}

bool svc_health_set(svc_health_t *health, const char *service, svc_health_status_t status,
                    fzip_error_t *error) {
  bool ok = false;
  if (!check_name(service, error))
    return false;
  pthread_mutex_lock(&health->mu);
  for (int i = 0; i < health->count; i++) {
    if (strcmp(health->entries[i].name, service) == 0) {
      health->entries[i].status = status;
      ok = true;
      goto done;
    }
  }
  if (health->count == SVC_HEALTH_MAX_SERVICES) {
    fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_RESOURCE_EXHAUSTED,
                   "health table full (%d services)", SVC_HEALTH_MAX_SERVICES);
    goto done;
  }
  strcpy(health->entries[health->count].name, service);
  health->entries[health->count].status = status;
  health->count++;
  ok = true;
done:
  pthread_mutex_unlock(&health->mu);
  return ok;
}

void svc_health_set_all_not_serving(svc_health_t *health) {
  pthread_mutex_lock(&health->mu);
  for (int i = 0; i < health->count; i++)
    health->entries[i].status = SVC_HEALTH_NOT_SERVING;
  pthread_mutex_unlock(&health->mu);
}

void svc_health_methods(const rpc_method_t *out[SVC_HEALTH_METHOD_COUNT], svc_health_t *health) {
  out[0] = &health->check_row;
  out[1] = &health->watch_row;
}
