/* core/fzip_error: set, prefix, oom, truncation at the message bound and
 * the code and domain names the logs and the RPC boundary print. */
#include <string.h>

#include "fzip_error.h"
#include "fzip_test.h"

static void test_set_fills_domain_code_and_formatted_message_and_returns_false(void) {
  fzip_error_t err = {0};
  CHECK(!fzip_error_set(&err, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, "blob %s: %d", "b1", 7));
  CHECK(err.domain == FZIP_DOMAIN_STORE);
  CHECK(err.code == FZIP_ERR_NOT_FOUND);
  CHECK(strcmp(err.message, "blob b1: 7") == 0);
  CHECK(fzip_error_is_set(&err));
}

static void test_set_and_prefix_accept_a_null_error(void) {
  CHECK(!fzip_error_set(NULL, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "x"));
  CHECK(!fzip_error_prefix(NULL, "y"));
  CHECK(!fzip_error_oom(NULL, "z"));
  CHECK(!fzip_error_is_set(NULL));
  fzip_error_clear(NULL);
}

static void test_clear_leaves_no_error_set(void) {
  fzip_error_t err = {0};
  CHECK(!fzip_error_is_set(&err));
  fzip_error_set(&err, FZIP_DOMAIN_RPC, FZIP_ERR_ABORTED, "lost");
  fzip_error_clear(&err);
  CHECK(!fzip_error_is_set(&err));
  CHECK(err.domain == FZIP_DOMAIN_NONE && err.message[0] == '\0');
}

static void test_long_message_is_cut_at_the_bound_and_terminated(void) {
  fzip_error_t err = {0};
  char big[FZIP_ERROR_MESSAGE_MAX * 2];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  fzip_error_set(&err, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s", big);
  CHECK(strlen(err.message) == FZIP_ERROR_MESSAGE_MAX - 1);
}

static void test_prefix_keeps_domain_and_code_and_joins_with_a_colon(void) {
  fzip_error_t err = {0};
  fzip_error_set(&err, FZIP_DOMAIN_PACKAGE, FZIP_ERR_DATA_LOSS, "checksum mismatch");
  CHECK(!fzip_error_prefix(&err, "reading %s", "data/accounts.json"));
  CHECK(err.domain == FZIP_DOMAIN_PACKAGE && err.code == FZIP_ERR_DATA_LOSS);
  CHECK(strcmp(err.message, "reading data/accounts.json: checksum mismatch") == 0);
}

static void test_prefix_longer_than_the_bound_stays_terminated_within_it(void) {
  fzip_error_t err = {0};
  char big[FZIP_ERROR_MESSAGE_MAX + 100];
  memset(big, 'p', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  fzip_error_set(&err, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "old");
  fzip_error_prefix(&err, "%s", big);
  CHECK(strlen(err.message) == FZIP_ERROR_MESSAGE_MAX - 1);
  CHECK(err.message[0] == 'p');
}

static void test_prefix_on_a_full_message_cuts_the_old_message_not_the_prefix(void) {
  fzip_error_t err = {0};
  char big[FZIP_ERROR_MESSAGE_MAX];
  memset(big, 'o', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  fzip_error_set(&err, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s", big);
  fzip_error_prefix(&err, "ctx");
  CHECK(strlen(err.message) == FZIP_ERROR_MESSAGE_MAX - 1);
  CHECK(strncmp(err.message, "ctx: ooo", 8) == 0);
}

static void test_oom_is_resource_exhausted_in_sys_with_or_without_a_name(void) {
  fzip_error_t err = {0};
  CHECK(!fzip_error_oom(&err, "page buffer"));
  CHECK(err.domain == FZIP_DOMAIN_SYS && err.code == FZIP_ERR_RESOURCE_EXHAUSTED);
  CHECK(strcmp(err.message, "out of memory for page buffer") == 0);
  CHECK(!fzip_error_oom(&err, NULL));
  CHECK(err.domain == FZIP_DOMAIN_SYS && err.code == FZIP_ERR_RESOURCE_EXHAUSTED);
  CHECK(strcmp(err.message, "out of memory") == 0);
}

static void test_every_code_and_domain_has_its_own_name(void) {
  for (int c = FZIP_OK; c <= FZIP_ERR_INTERNAL; c++) {
    CHECK(strcmp(fzip_code_name((fzip_code_t)c), "UNKNOWN") != 0);
    for (int d = FZIP_OK; d < c; d++)
      CHECK(strcmp(fzip_code_name((fzip_code_t)c), fzip_code_name((fzip_code_t)d)) != 0);
  }
  for (int d = FZIP_DOMAIN_NONE; d <= FZIP_DOMAIN_JOB; d++)
    CHECK(strcmp(fzip_domain_name((fzip_domain_t)d), "unknown") != 0);
  CHECK(strcmp(fzip_code_name(FZIP_ERR_NOT_FOUND), "NOT_FOUND") == 0);
  CHECK(strcmp(fzip_domain_name(FZIP_DOMAIN_STORE), "store") == 0);
}

static void test_out_of_range_code_and_domain_are_unknown(void) {
  CHECK(strcmp(fzip_code_name((fzip_code_t)(FZIP_ERR_INTERNAL + 1)), "UNKNOWN") == 0);
  CHECK(strcmp(fzip_code_name((fzip_code_t)-1), "UNKNOWN") == 0);
  CHECK(strcmp(fzip_domain_name((fzip_domain_t)(FZIP_DOMAIN_JOB + 1)), "unknown") == 0);
}

static void test_reason_defaults_to_the_code_name_and_a_new_error_drops_the_old_reason(void) {
  fzip_error_t err = {0};
  CHECK(!fzip_error_set(&err, FZIP_DOMAIN_JOB, FZIP_ERR_NOT_FOUND, "export e1 not found"));
  CHECK(err.reason == NULL);
  CHECK(strcmp(fzip_error_reason(&err), "NOT_FOUND") == 0);
  CHECK(!fzip_error_set_reason(&err, "EXPORT_NOT_FOUND"));
  CHECK(strcmp(fzip_error_reason(&err), "EXPORT_NOT_FOUND") == 0);
  fzip_error_prefix(&err, "loading");
  CHECK(strcmp(fzip_error_reason(&err), "EXPORT_NOT_FOUND") == 0);
  fzip_error_t copy = err;
  CHECK(strcmp(fzip_error_reason(&copy), "EXPORT_NOT_FOUND") == 0);
  fzip_error_set(&err, FZIP_DOMAIN_STORE, FZIP_ERR_UNAVAILABLE, "down");
  CHECK(strcmp(fzip_error_reason(&err), "UNAVAILABLE") == 0);
  CHECK(!fzip_error_set_reason(NULL, "X"));
}

int main(void) {
  RUN(test_set_fills_domain_code_and_formatted_message_and_returns_false);
  RUN(test_set_and_prefix_accept_a_null_error);
  RUN(test_clear_leaves_no_error_set);
  RUN(test_long_message_is_cut_at_the_bound_and_terminated);
  RUN(test_prefix_keeps_domain_and_code_and_joins_with_a_colon);
  RUN(test_prefix_longer_than_the_bound_stays_terminated_within_it);
  RUN(test_prefix_on_a_full_message_cuts_the_old_message_not_the_prefix);
  RUN(test_oom_is_resource_exhausted_in_sys_with_or_without_a_name);
  RUN(test_every_code_and_domain_has_its_own_name);
  RUN(test_out_of_range_code_and_domain_are_unknown);
  RUN(test_reason_defaults_to_the_code_name_and_a_new_error_drops_the_old_reason);
  return fzip_test_summary();
}
