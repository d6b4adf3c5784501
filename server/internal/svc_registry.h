/*
 * svc_registry: every method fzipd serves, in one table.
 *
 * The registry owns the service objects (health, reflection, data,
 * export, import) and the reaper, and hands rpc_server_new one flat
 * method table.  Adding a service is one add_<service> function here.
 */
#ifndef FZIP_SVC_REGISTRY_H
#define FZIP_SVC_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "fzip_error.h"
#include "fzipd_config.h"
#include "rpc.h"
#include "store.h"
#include "svc_health.h"

/* Upper bound on rows in the table (all services together). */
#define SVC_REGISTRY_METHODS_MAX 128

typedef struct svc_registry svc_registry_t;

/* Builds every service over `store` (borrowed; must outlive the registry)
 * with settings from `config` (borrowed).  *out is the caller's; destroy
 * it only after the rpc server that uses its rows. */
bool svc_registry_new(svc_registry_t **out, store_t *store, const fzipd_config_t *config,
                      fzip_error_t *error);
void svc_registry_destroy(svc_registry_t *registry); /* accepts NULL */

/* The method table, borrowed from the registry; *n is its length. */
const rpc_method_t *const *svc_registry_methods(const svc_registry_t *registry, size_t *n);

/* The health service, borrowed: its checker follows the store from the
 * start; fzipd sets NOT_SERVING when shutting down. */
svc_health_t *svc_registry_health(svc_registry_t *registry);

#endif
