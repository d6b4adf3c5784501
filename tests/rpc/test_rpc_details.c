/* rpc/rpc_details: which errors are sanitised (the domain + code rule),
 * what a sanitised client message says, and that a packed google.rpc.Status
 * parses back with its ErrorInfo and BadRequest (violations capped at
 * RPC_DETAILS_VIOLATIONS_MAX, one for the whole request when the handler
 * named none). */
#include <stdlib.h>
#include <string.h>

#include "fzip_test.h"
#include "rpc_details.h"

static fzip_error_t err_of(fzip_domain_t domain, fzip_code_t code, const char *message) {
  fzip_error_t e = {0};
  fzip_error_set(&e, domain, code, "%s", message);
  return e;
}

static void test_sanitised_by_domain_and_code_only(void) {
  const struct {
    fzip_domain_t domain;
    fzip_code_t code;
    bool sanitised;
  } rows[] = {
      {FZIP_DOMAIN_STORE, FZIP_ERR_UNAVAILABLE, true},
      {FZIP_DOMAIN_STORE, FZIP_ERR_DEADLINE_EXCEEDED, true},
      {FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS, true},
      {FZIP_DOMAIN_STORE, FZIP_ERR_RESOURCE_EXHAUSTED, true},
      {FZIP_DOMAIN_SYS, FZIP_ERR_RESOURCE_EXHAUSTED, true},
      {FZIP_DOMAIN_SYS, FZIP_ERR_CANCELLED, true},
      {FZIP_DOMAIN_SYS, FZIP_ERR_NOT_FOUND, true},
      {FZIP_DOMAIN_SYS, FZIP_ERR_INVALID_ARGUMENT, true},
      {FZIP_DOMAIN_JOB, FZIP_ERR_INTERNAL, true},
      {FZIP_DOMAIN_RPC, FZIP_ERR_UNAVAILABLE, true},
      {FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, false},
      {FZIP_DOMAIN_STORE, FZIP_ERR_ABORTED, false},
      {FZIP_DOMAIN_STORE, FZIP_ERR_INVALID_ARGUMENT, false},
      {FZIP_DOMAIN_JOB, FZIP_ERR_DATA_LOSS, false},
      {FZIP_DOMAIN_AUTH, FZIP_ERR_UNAUTHENTICATED, false},
      {FZIP_DOMAIN_RPC, FZIP_ERR_RESOURCE_EXHAUSTED, false},
      {FZIP_DOMAIN_NONE, FZIP_OK, false},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    fzip_error_t e = err_of(rows[i].domain, rows[i].code, "x");
    if (rpc_details_sanitised(&e) != rows[i].sanitised)
      fprintf(stderr, "  row %zu: %s/%s\n", i, fzip_domain_name(rows[i].domain),
              fzip_code_name(rows[i].code));
    CHECK(rpc_details_sanitised(&e) == rows[i].sanitised);
  }
}

static void test_sanitised_message_names_the_request_id_not_the_cause(void) {
  char msg[FZIP_ERROR_MESSAGE_MAX];
  fzip_error_t e = err_of(FZIP_DOMAIN_STORE, FZIP_ERR_UNAVAILABLE,
                          "cannot reach MongoDB at 10.1.2.3:27017: mongodb://u:p@db/x");
  rpc_details_client_message(msg, sizeof msg, &e, "req-7");
  CHECK(strcmp(msg, "storage unavailable; retry later (request id req-7)") == 0);
  e = err_of(FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "cannot open /tmp/fzipd-1/x");
  rpc_details_client_message(msg, sizeof msg, &e, "req-8");
  CHECK(strcmp(msg, "server internal error (request id req-8)") == 0);
  /* pkg_reader's open_zip: a server temp path the caller must not see. */
  e = err_of(FZIP_DOMAIN_SYS, FZIP_ERR_NOT_FOUND, "package /tmp/fzipd-1/up-3.zip not found");
  rpc_details_client_message(msg, sizeof msg, &e, "req-10");
  CHECK(strcmp(msg, "server internal error (request id req-10)") == 0);
  e = err_of(FZIP_DOMAIN_JOB, FZIP_ERR_NOT_FOUND, "export e1 not found");
  rpc_details_client_message(msg, sizeof msg, &e, "req-9");
  CHECK(strcmp(msg, "export e1 not found") == 0);
}

static void test_status_round_trips_with_error_info(void) {
  uint8_t *buf = NULL;
  size_t len = 0;
  rpc_details_t d;
  fzip_error_t err = {0};
  fzip_error_t e = err_of(FZIP_DOMAIN_JOB, FZIP_ERR_NOT_FOUND, "export e1 not found");
  fzip_error_set_reason(&e, "JOB_NOT_FOUND");
  CHECK_OK(rpc_details_pack(&buf, &len, &e, 5, e.message, "rid-1", NULL, 0, &err), err);
  bool parsed = rpc_details_parse(&d, buf, len);
  free(buf);
  CHECK(parsed);
  CHECK(d.code == 5);
  CHECK(strcmp(d.reason, "JOB_NOT_FOUND") == 0);
  CHECK(strcmp(d.domain, RPC_DETAILS_DOMAIN) == 0);
  CHECK(strcmp(d.fzip_domain, "job") == 0);
  CHECK(strcmp(d.request_id, "rid-1") == 0);
  CHECK(d.n_violations == 0);
}

static void test_invalid_argument_carries_the_first_violations_or_one_for_the_request(void) {
  uint8_t *buf = NULL;
  size_t len = 0;
  rpc_details_t d;
  fzip_error_t err = {0};
  rpc_violation_t v[RPC_DETAILS_VIOLATIONS_MAX + 3];
  fzip_error_t e = err_of(FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT, "page_size -1");
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
    v[i] = (rpc_violation_t){i == 0 ? "page_size" : "other", "bad"};
  CHECK_OK(rpc_details_pack(&buf, &len, &e, 3, e.message, "r", v, sizeof v / sizeof v[0], &err),
           err);
  bool parsed = rpc_details_parse(&d, buf, len);
  free(buf);
  CHECK(parsed);
  CHECK(d.n_violations == RPC_DETAILS_VIOLATIONS_MAX);
  CHECK(strcmp(d.first_field, "page_size") == 0);
  CHECK(strcmp(d.reason, "INVALID_ARGUMENT") == 0);

  CHECK_OK(rpc_details_pack(&buf, &len, &e, 3, e.message, "r", NULL, 0, &err), err);
  parsed = rpc_details_parse(&d, buf, len);
  free(buf);
  CHECK(parsed);
  CHECK(d.n_violations == 1);
  CHECK(d.first_field[0] == '\0');
}

static void test_garbage_is_not_a_status(void) {
  rpc_details_t d;
  const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  CHECK(!rpc_details_parse(&d, junk, sizeof junk));
}

int main(void) {
  RUN(test_sanitised_by_domain_and_code_only);
  RUN(test_sanitised_message_names_the_request_id_not_the_cause);
  RUN(test_status_round_trips_with_error_info);
  RUN(test_invalid_argument_carries_the_first_violations_or_one_for_the_request);
  RUN(test_garbage_is_not_a_status);
  return fzip_test_summary();
}
