/* core/fzip_entity: the kind table (restore order, names, files, id
 * fields) and the id rule every key, blob name and path component obeys. */
#include <stdio.h>
#include <string.h>

#include "fzip_entity.h"
#include "fzip_test.h"

static void test_kinds_are_listed_in_restore_order_each_at_its_own_index(void) {
  static const char *const order[FZIP_KIND_COUNT] = {
      "accounts", "categories", "file_maps", "transaction_files", "transactions", "analytics"};
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    const fzip_kind_info_t *info = fzip_kind_info((fzip_kind_t)k);
    CHECK(info != NULL);
    CHECK(info->kind == (fzip_kind_t)k);
    CHECK(strcmp(info->name, order[k]) == 0);
  }
}

static void test_data_file_is_the_name_under_data_and_every_kind_has_an_id_field(void) {
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    const fzip_kind_info_t *info = fzip_kind_info((fzip_kind_t)k);
    char want[64];
    snprintf(want, sizeof want, "data/%s.json", info->name);
    CHECK(strcmp(info->data_file, want) == 0);
    CHECK(info->id_field && info->id_field[0]);
  }
  CHECK(strcmp(fzip_kind_info(FZIP_KIND_TRANSACTION)->id_field, "transactionId") == 0);
  CHECK(strcmp(fzip_kind_info(FZIP_KIND_TRANSACTION)->date_field, "date") == 0);
  CHECK(fzip_kind_info(FZIP_KIND_CATEGORY)->account_field == NULL);
}

static void test_kind_out_of_range_has_no_info(void) {
  CHECK(fzip_kind_info(FZIP_KIND_COUNT) == NULL);
  CHECK(fzip_kind_info((fzip_kind_t)-1) == NULL);
}

static void test_every_name_looks_up_its_kind_and_unknown_names_do_not(void) {
  fzip_kind_t got = FZIP_KIND_COUNT;
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    CHECK(fzip_kind_from_name(&got, fzip_kind_info((fzip_kind_t)k)->name));
    CHECK(got == (fzip_kind_t)k);
  }
  got = FZIP_KIND_COUNT;
  CHECK(!fzip_kind_from_name(&got, "Accounts"));
  CHECK(!fzip_kind_from_name(&got, "account"));
  CHECK(!fzip_kind_from_name(&got, ""));
  CHECK(!fzip_kind_from_name(&got, NULL));
  CHECK(got == FZIP_KIND_COUNT);
}

static void test_id_of_printable_ascii_up_to_the_limit_is_valid(void) {
  char id[FZIP_ID_MAX + 1];
  memset(id, 'a', FZIP_ID_MAX);
  id[FZIP_ID_MAX] = '\0';
  CHECK(fzip_id_is_valid(id));
  CHECK(fzip_id_is_valid("tx-001 #2024 ~!@$%^&*()"));
  CHECK(fzip_id_is_valid("..."));
}

static void test_id_that_could_escape_a_path_or_break_a_key_is_invalid(void) {
  char id[FZIP_ID_MAX + 2];
  memset(id, 'a', FZIP_ID_MAX + 1);
  id[FZIP_ID_MAX + 1] = '\0';
  CHECK(!fzip_id_is_valid(id)); /* one byte too long */
  CHECK(!fzip_id_is_valid(NULL));
  CHECK(!fzip_id_is_valid(""));
  CHECK(!fzip_id_is_valid("."));
  CHECK(!fzip_id_is_valid(".."));
  CHECK(!fzip_id_is_valid("a/b"));
  CHECK(!fzip_id_is_valid("a\\b"));
  CHECK(!fzip_id_is_valid("a\nb"));
  CHECK(!fzip_id_is_valid("a\x7f"));
  CHECK(!fzip_id_is_valid("caf\xc3\xa9")); /* non-ASCII */
}

int main(void) {
  RUN(test_kinds_are_listed_in_restore_order_each_at_its_own_index);
  RUN(test_data_file_is_the_name_under_data_and_every_kind_has_an_id_field);
  RUN(test_kind_out_of_range_has_no_info);
  RUN(test_every_name_looks_up_its_kind_and_unknown_names_do_not);
  RUN(test_id_of_printable_ascii_up_to_the_limit_is_valid);
  RUN(test_id_that_could_escape_a_path_or_break_a_key_is_invalid);
  return fzip_test_summary();
}
