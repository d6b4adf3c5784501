/*
 * metrics_http: see metrics_http.h.  The listen address is resolved here
 * (getaddrinfo, numeric port) and handed to libmicrohttpd as a sockaddr,
 * so "127.0.0.1:0", "[::1]:9090" and "0.0.0.0:9090" all work; the bound
 * port is read back from the daemon.  libmicrohttpd's own messages go
 * through fzip_log so that stderr stays one JSON object per line.
 */
#include "metrics_http.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fzip_log.h"
#include "fzip_metrics.h"

#define HOST_MAX 256
#define MHD_MESSAGE_MAX 512
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics_http {
  struct MHD_Daemon *daemon;
};

/* libmicrohttpd's own messages: fmt is the library's printf format (the
 * attribute tells clang's -Wformat-nonliteral so). */
__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt,
                                                          va_list ap) {
  char msg[MHD_MESSAGE_MAX];
  (void)cls;
  vsnprintf(msg, sizeof msg, fmt, ap);
  msg[strcspn(msg, "\n")] = '\0';
  fzip_log(FZIP_LOG_WARN, "metrics", "http server", "error", msg, NULL);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *body,
                             const char *allow) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
  enum MHD_Result ret = MHD_NO;

  if (!r)
    return MHD_NO;
  if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8") ==
          MHD_YES &&
      (!allow || MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow) == MHD_YES))
    ret = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result reply_metrics(struct MHD_Connection *conn) {
  struct MHD_Response *r = NULL;
  enum MHD_Result ret = MHD_NO;
  fzip_error_t err;
  char *text = NULL;
  size_t len = 0;

  if (!fzip_metrics_render(&text, &len, fzip_metrics_process(), &err)) {
    fzip_log(FZIP_LOG_WARN, "metrics", "cannot render metrics", "error", err.message, NULL);
    return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics unavailable\n", NULL);
  }
  r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(text);
    return MHD_NO;
  }
  if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE) == MHD_YES)
    ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return ret;
}

/* Answers at the first call of each request: no method here takes a body. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
  (void)version;
  (void)upload_data;
  (void)upload_data_size;
  (void)req_cls;
  (void)cls;
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
    return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n", MHD_HTTP_METHOD_GET);
  if (strcmp(url, METRICS_HTTP_PATH) != 0)
    return reply(conn, MHD_HTTP_NOT_FOUND, "not found; metrics are at " METRICS_HTTP_PATH "\n",
                 NULL);
  return reply_metrics(conn);
}

/* HOST:PORT (HOST may be [IPv6]) to the first address getaddrinfo gives.
 * The caller frees *out with freeaddrinfo. */
static bool resolve(struct addrinfo **out, const char *listen, fzip_error_t *error) {
  const char *colon = strrchr(listen, ':');
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  char host[HOST_MAX];
  size_t n = colon ? (size_t)(colon - listen) : 0;
  int rc = 0;

  if (!colon || n >= sizeof host)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "metrics: want HOST:PORT, not \"%s\"", listen);
  if (n >= 2 && listen[0] == '[' && listen[n - 1] == ']') {
    memcpy(host, listen + 1, n - 2);
    host[n - 2] = '\0';
  } else {
    memcpy(host, listen, n);
    host[n] = '\0';
  }
  rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, out);
  if (rc != 0)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "metrics: cannot resolve \"%s\": %s", listen, gai_strerror(rc));
  return true;
}

bool metrics_http_start(metrics_http_t **out, int *port, const char *listen, fzip_error_t *error) {
  metrics_http_t *s = NULL;
  struct addrinfo *ai = NULL;
  const union MHD_DaemonInfo *info = NULL;
  unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
  bool ok = false;

  *out = NULL;
  if (!resolve(&ai, listen, error))
    goto done;
  if (!(s = calloc(1, sizeof *s))) {
    fzip_error_oom(error, "metrics server");
    goto done;
  }
  if (ai->ai_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  s->daemon = MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
      MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned int)METRICS_HTTP_CONNECTIONS_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned int)METRICS_HTTP_TIMEOUT_S, MHD_OPTION_END);
  if (!s->daemon) {
    fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_UNAVAILABLE,
                   "metrics: cannot listen on %s (address in use or not local?)", listen);
    goto done;
  }
  info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  *port = info ? info->port : 0;
  *out = s;
  s = NULL;
  ok = true;
done:
  if (ai)
    freeaddrinfo(ai);
  metrics_http_destroy(s);
  return ok;
}

void metrics_http_destroy(metrics_http_t *server) {
  if (!server)
    return;
  if (server->daemon)
    MHD_stop_daemon(server->daemon);
  free(server);
}
