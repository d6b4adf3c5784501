/*
 * svc_health: the standard grpc.health.v1.Health service (Check and
 * Watch) over the rpc layer.  The server's owner sets a serving status per
 * service name ("" is the whole server); Check answers it (NOT_FOUND for a
 * name never set) and Watch streams the current status and every later
 * change (SERVICE_UNKNOWN while a name is unset), polling through the rpc
 * layer's retry_after_ms so a watcher holds no thread.  Thread-safe.
 */
#ifndef FZIP_SVC_HEALTH_H
#define FZIP_SVC_HEALTH_H

#include <stdbool.h>

#include "fzip_error.h"
#include "rpc.h"

typedef struct svc_health svc_health_t;

/* Same values as grpc.health.v1.HealthCheckResponse.ServingStatus. */
typedef enum {
  SVC_HEALTH_UNKNOWN = 0,
  SVC_HEALTH_SERVING = 1,
  SVC_HEALTH_NOT_SERVING = 2,
} svc_health_status_t;

#define SVC_HEALTH_MAX_SERVICES 64
#define SVC_HEALTH_NAME_MAX 200
#define SVC_HEALTH_METHOD_COUNT 2
/* How often a Watch looks for a change. */
#define SVC_HEALTH_WATCH_POLL_MS 100

/* *out is the caller's; destroy it after the server that uses its rows. */
bool svc_health_new(svc_health_t **out, fzip_error_t *error);
void svc_health_destroy(svc_health_t *health); /* accepts NULL */

/* Sets (or adds) a service's status.  Fails only when the name is longer
 * than SVC_HEALTH_NAME_MAX - 1 or SVC_HEALTH_MAX_SERVICES are set. */
bool svc_health_set(svc_health_t *health, const char *service, svc_health_status_t status,
                    fzip_error_t *error);
/* Marks every service NOT_SERVING (start of a shutdown, so that load
 * balancers and watchers stop sending traffic). */
void svc_health_set_all_not_serving(svc_health_t *health);

/* The method rows (Check, Watch), borrowed from `health`, to put in the
 * server's method table. */
void svc_health_methods(const rpc_method_t *out[SVC_HEALTH_METHOD_COUNT], svc_health_t *health);

#endif
