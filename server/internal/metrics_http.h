/*
 * metrics_http: fzipd's Prometheus endpoint, on its own port apart from
 * gRPC (--metrics-listen HOST:PORT).  GET /metrics answers the process
 * registry (fzip_metrics.h) as text format 0.0.4; any other path is 404,
 * any other method 405.  The HTTP server is libmicrohttpd with one
 * internal polling thread: scrapes come every few seconds, never in the
 * hundreds, so a thread per connection would only cost.
 *
 * A scrape only renders what is already recorded: nothing here waits on
 * the store (the queue depth is refreshed off this thread: queue_gauge.h).
 */
#ifndef METRICS_HTTP_H
#define METRICS_HTTP_H

#include <stdbool.h>

#include "fzip_error.h"

#define METRICS_HTTP_CONNECTIONS_MAX 16 /* scrapers served at once */
#define METRICS_HTTP_TIMEOUT_S 10       /* an idle connection is closed after this */
#define METRICS_HTTP_PATH "/metrics"

typedef struct metrics_http metrics_http_t;

/* Listens on `listen` (HOST:PORT, host an IPv4 or [IPv6] literal or a
 * name; port 0 picks a free one) and serves until destroyed.  *port gets
 * the bound port.  UNAVAILABLE naming the address when it cannot bind. */
bool metrics_http_start(metrics_http_t **out, int *port, const char *listen, fzip_error_t *error);
/* Stops serving (waits for a scrape in progress) and frees; accepts NULL. */
void metrics_http_destroy(metrics_http_t *server);

#endif
