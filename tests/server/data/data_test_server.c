/*
 * data_test_server: a real gRPC server process serving only the
 * DataService, for test_data_service.  It is what fzipd does for these
 * methods (the real store, svc_data's rows, the real rpc layer and HS256
 * JWT verification), minus everything else, so the DataService tests do
 * not depend on the rest of fzipd.
 *
 *   data_test_server STORE_URI DATABASE SECRET_FILE
 *
 * Listens on 127.0.0.1 with a free port, prints that port on stdout, and
 * serves until its stdin reaches end of file, so it never outlives the
 * test that started it (a crashed parent closes the pipe too).
 */
#include <stdio.h>
#include <stdlib.h>

#include "auth_jwt.h"
#include "rpc.h"
#include "store.h"
#include "svc_data.h"

int main(int argc, char **argv) {
  fzip_error_t err = {0};
  store_t *store = NULL;
  auth_verifier_t *verifier = NULL;
  svc_data_t *svc = NULL;
  rpc_server_t *server = NULL;
  const rpc_method_t *const *rows = NULL;
  size_t n_rows = 0;
  int port = 0;
  int rc = 1;

  if (argc != 4) {
    fprintf(stderr, "usage: %s STORE_URI DATABASE SECRET_FILE\n", argv[0]);
    return 2;
  }
  store_options_t store_opts = {.uri = argv[1], .database = argv[2]};
  auth_options_t auth_opts = {.secret_file = argv[3], .leeway_s = -1};
  if (!store_open(&store, &store_opts, &err) || !auth_verifier_new(&verifier, &auth_opts, &err) ||
      !svc_data_new(&svc, store, &err))
    goto done;
  rows = svc_data_methods(svc, &n_rows);
  rpc_server_options_t opts = {
      .listen = "127.0.0.1:0", .workers = 2, .auth = auth_rpc_authenticate, .auth_data = verifier};
  if (!rpc_server_new(&server, &opts, rows, n_rows, &err) ||
      !rpc_server_start(server, &port, &err))
    goto done;
  printf("%d\n", port);
  fflush(stdout);
  while (fgetc(stdin) != EOF) {
  }
  rc = 0;
done:
  if (rc != 0)
    fprintf(stderr, "data_test_server: %s\n", err.message);
  rpc_server_destroy(server);
  svc_data_destroy(svc);
  auth_verifier_destroy(verifier);
  store_destroy(store);
  return rc;
}
