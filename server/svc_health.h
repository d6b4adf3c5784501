/*
 * svc_health: the standard grpc.health.v1.Health service (Check and
 * Watch) over the rpc layer.  The server's owner sets a serving status per
 * service name ("" is the whole server); Check answers it (NOT_FOUND for a
 * name never set) and Watch streams the current status and every later
 * change (SERVICE_UNKNOWN while a name is unset), polling through the rpc
 * layer's retry_after_ms so a watcher holds no thread.  Thread-safe.
 *
 * fzipd's names (svc_health_follow_store): "" and each fzip.v1 service
 * follow the store, which a background checker pings every interval, so
 * a probe reads a table and never waits on the store; "liveness" and
 * grpc.health.v1.Health say only that the process serves, for a liveness
 * probe that must not restart a pod because its database is down.
 */
#ifndef FZIP_SVC_HEALTH_H
#define FZIP_SVC_HEALTH_H

#include <stdbool.h>

#include "fzip_error.h"
#include "rpc.h"
#include "store.h"

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
/* Default of --health-check-interval-ms: how often the store is pinged. */
#define SVC_HEALTH_CHECK_INTERVAL_MS 2000
/* A ping slower than this (or than the interval, if shorter) is an outage:
 * so NOT_SERVING shows at most interval + timeout after the store goes. */
#define SVC_HEALTH_PING_TIMEOUT_MS 1000
/* The names that say only that the process serves. */
#define SVC_HEALTH_LIVENESS "liveness"
#define SVC_HEALTH_SELF "grpc.health.v1.Health"

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

/* Registers fzipd's names and starts the checker thread: "" and the
 * fzip.v1 services are SERVING while store_ping succeeds (first ping
 * before this returns) and NOT_SERVING while it fails; SVC_HEALTH_LIVENESS
 * and SVC_HEALTH_SELF are SERVING.  After svc_health_set_all_not_serving
 * the checker changes nothing.  `store` is borrowed and must outlive
 * `health` (destroy stops the thread).  Call at most once. */
bool svc_health_follow_store(svc_health_t *health, store_t *store, int64_t interval_ms,
                             fzip_error_t *error);

/* The method rows (Check, Watch), borrowed from `health`, to put in the
 * server's method table. */
void svc_health_methods(const rpc_method_t *out[SVC_HEALTH_METHOD_COUNT], svc_health_t *health);

#endif
