/*
 * test_pkg_diff: the comparison of a package's entity with the stored one
 * and the merge_fields rule (pkg/pkg_diff.h), on documents built here:
 * what counts as a difference (fields the format does not define, s3Key,
 * integer widths, key order in nested objects do not; array order, a
 * missing field do), what each strategy counts, and exactly which fields
 * merge_fields takes (updatedAt decides; a file's blob follows sha256).
 */
#include <string.h>

#include "fzip_test.h"
#include "pkg_diff.h"

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static const char *str_of(const bson_t *doc, const char *field) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return NULL;
}

static bool has_field(const pkgd_diff_t *d, const char *name) {
  for (size_t i = 0; i < d->n_fields && i < PKGD_FIELDS_MAX; i++) {
    if (strcmp(d->fields[i], name) == 0)
      return true;
  }
  return false;
}

static void test_same_data_in_other_shapes_is_identical(void) {
  fzip_error_t err = {0};
  pkgd_verdict_t v;
  /* int32 vs int64, nested keys in another order, a userId and an
   * unknown field only on one side, another blob name. */
  bson_t *in = BCON_NEW("transactionId", "t1", "accountId", "a1", "amount", "1.00", "date",
                        BCON_INT32(5), "categories", "[", "{", "categoryId", "c1", "confidence",
                        BCON_INT32(90), "}", "]", "userId", "someone", "extra", "x");
  bson_t *st = BCON_NEW("accountId", "a1", "transactionId", "t1", "date", BCON_INT64(5),
                        "amount", "1.00", "categories", "[", "{", "confidence", BCON_INT64(90),
                        "categoryId", "c1", "}", "]");
  CHECK_OK(pkgd_judge(&v, NULL, FZIP_KIND_TRANSACTION, PKGV_OVERWRITE, in, st, &err), err);
  CHECK(v.identical && v.diff.n_fields == 0);
  bson_destroy(in);
  bson_destroy(st);

  in = BCON_NEW("fileId", "f1", "fileName", "a.csv", "sha256", SHA_A, "s3Key", "u/f1/imp2");
  st = BCON_NEW("fileId", "f1", "fileName", "a.csv", "sha256", SHA_A, "s3Key", "u/f1");
  CHECK_OK(pkgd_judge(&v, NULL, FZIP_KIND_TRANSACTION_FILE, PKGV_OVERWRITE, in, st, &err), err);
  CHECK(v.identical);
  bson_destroy(in);
  bson_destroy(st);
}

static void test_changed_fields_are_named_and_counted_per_strategy(void) {
  fzip_error_t err = {0};
  pkgd_verdict_t v;
  pkgv_counts_t c[4];
  bson_t *in = BCON_NEW("categoryId", "c1", "name", "Food", "type", "EXPENSE", "rules", "[",
                        "{", "ruleId", "r1", "fieldToMatch", "payee", "condition", "equals", "}",
                        "{", "ruleId", "r2", "fieldToMatch", "payee", "condition", "equals", "}",
                        "]");
  /* rules in another order; color only stored; name differs */
  bson_t *st = BCON_NEW("categoryId", "c1", "name", "Groceries", "type", "EXPENSE", "color",
                        "red", "rules", "[", "{", "ruleId", "r2", "fieldToMatch", "payee",
                        "condition", "equals", "}", "{", "ruleId", "r1", "fieldToMatch", "payee",
                        "condition", "equals", "}", "]");

  CHECK_OK(pkgd_judge(&v, NULL, FZIP_KIND_CATEGORY, PKGV_OVERWRITE, in, st, &err), err);
  CHECK(!v.identical && v.diff.n_fields == 3 && has_field(&v.diff, "name") &&
        has_field(&v.diff, "rules") && has_field(&v.diff, "color"));
  memset(c, 0, sizeof c);
  for (int s = 0; s < 4; s++) {
    CHECK_OK(pkgd_judge(&v, NULL, FZIP_KIND_CATEGORY, (pkgv_strategy_t)s, in, st, &err), err);
    pkgd_count(&c[s], (pkgv_strategy_t)s, &v);
  }
  CHECK(c[PKGV_FAIL_ON_CONFLICT].changed == 1 && c[PKGV_FAIL_ON_CONFLICT].skipped == 0);
  CHECK(c[PKGV_SKIP_EXISTING].changed == 1 && c[PKGV_SKIP_EXISTING].skipped == 1);
  CHECK(c[PKGV_OVERWRITE].changed == 1 && c[PKGV_OVERWRITE].overwritten == 1);
  /* No updatedAt anywhere, nothing missing on the stored side: the merge
   * takes nothing, the entity is skipped. */
  CHECK(c[PKGV_MERGE_FIELDS].merged == 0 && c[PKGV_MERGE_FIELDS].skipped == 1);
  bson_destroy(in);
  bson_destroy(st);

  /* An identical entity is neither overwritten nor merged nor skipped,
   * except by skip_existing. */
  in = BCON_NEW("accountId", "a1", "accountName", "A", "accountType", "checking");
  memset(c, 0, sizeof c);
  for (int s = 0; s < 4; s++) {
    CHECK_OK(pkgd_judge(&v, NULL, FZIP_KIND_ACCOUNT, (pkgv_strategy_t)s, in, in, &err), err);
    pkgd_count(&c[s], (pkgv_strategy_t)s, &v);
  }
  CHECK(c[PKGV_OVERWRITE].identical == 1 && c[PKGV_OVERWRITE].overwritten == 0);
  CHECK(c[PKGV_MERGE_FIELDS].identical == 1 && c[PKGV_MERGE_FIELDS].merged == 0 &&
        c[PKGV_MERGE_FIELDS].skipped == 0);
  CHECK(c[PKGV_SKIP_EXISTING].skipped == 1);
  bson_destroy(in);
}

static void test_merge_takes_every_field_of_a_newer_entity(void) {
  fzip_error_t err = {0};
  pkgd_verdict_t v;
  bson_t *merged = NULL;
  bson_t *in = BCON_NEW("accountId", "a1", "accountName", "New", "accountType", "checking",
                        "updatedAt", BCON_INT64(2000));
  bson_t *st = BCON_NEW("accountId", "a1", "accountName", "Old", "accountType", "savings",
                        "notes", "mine", "updatedAt", BCON_INT64(1000));

  CHECK_OK(pkgd_judge(&v, &merged, FZIP_KIND_ACCOUNT, PKGV_MERGE_FIELDS, in, st, &err), err);
  CHECK(v.merged && merged);
  CHECK(strcmp(str_of(merged, "accountName"), "New") == 0 &&
        strcmp(str_of(merged, "accountType"), "checking") == 0 &&
        strcmp(str_of(merged, "notes"), "mine") == 0);
  bson_destroy(merged);
  bson_destroy(in);
  bson_destroy(st);
}

static void test_merge_of_an_older_entity_only_fills_missing_fields(void) {
  fzip_error_t err = {0};
  pkgd_verdict_t v;
  bson_t *merged = NULL;
  bson_t *in = BCON_NEW("accountId", "a1", "accountName", "New", "accountType", "checking",
                        "institution", "Bank", "updatedAt", BCON_INT64(1000));
  bson_t *st = BCON_NEW("accountId", "a1", "accountName", "Old", "accountType", "savings",
                        "updatedAt", BCON_INT64(1000));

  CHECK_OK(pkgd_judge(&v, &merged, FZIP_KIND_ACCOUNT, PKGV_MERGE_FIELDS, in, st, &err), err);
  CHECK(v.merged && merged);
  CHECK(strcmp(str_of(merged, "accountName"), "Old") == 0 &&
        strcmp(str_of(merged, "accountType"), "savings") == 0 &&
        strcmp(str_of(merged, "institution"), "Bank") == 0);
  bson_destroy(merged);
  bson_destroy(st);
  /* Without the missing field the merge takes nothing: no document. */
  st = BCON_NEW("accountId", "a1", "accountName", "Old", "accountType", "savings",
                "institution", "Other", "updatedAt", BCON_INT64(3000));
  CHECK_OK(pkgd_judge(&v, &merged, FZIP_KIND_ACCOUNT, PKGV_MERGE_FIELDS, in, st, &err), err);
  CHECK(!v.identical && !v.merged && merged == NULL);
  bson_destroy(in);
  bson_destroy(st);
}

static void test_merged_file_blob_follows_its_sha256(void) {
  fzip_error_t err = {0};
  pkgd_verdict_t v;
  bson_t *merged = NULL;
  /* Newer with other bytes: the package's blob. */
  bson_t *in = BCON_NEW("fileId", "f1", "fileName", "b.csv", "sha256", SHA_B, "s3Key",
                        "u/f1/imp2", "updatedAt", BCON_INT64(2000));
  bson_t *st = BCON_NEW("fileId", "f1", "fileName", "a.csv", "sha256", SHA_A, "s3Key", "u/f1",
                        "updatedAt", BCON_INT64(1000));

  CHECK_OK(pkgd_judge(&v, &merged, FZIP_KIND_TRANSACTION_FILE, PKGV_MERGE_FIELDS, in, st, &err),
           err);
  CHECK(v.merged && merged && strcmp(str_of(merged, "s3Key"), "u/f1/imp2") == 0 &&
        strcmp(str_of(merged, "sha256"), SHA_B) == 0);
  bson_destroy(merged);
  bson_destroy(in);
  /* Older: the stored sha256 stays, and so does the stored blob. */
  in = BCON_NEW("fileId", "f1", "fileName", "b.csv", "sha256", SHA_B, "s3Key", "u/f1/imp2",
                "recordCount", BCON_INT64(7), "updatedAt", BCON_INT64(500));
  CHECK_OK(pkgd_judge(&v, &merged, FZIP_KIND_TRANSACTION_FILE, PKGV_MERGE_FIELDS, in, st, &err),
           err);
  CHECK(v.merged && merged && strcmp(str_of(merged, "s3Key"), "u/f1") == 0 &&
        strcmp(str_of(merged, "sha256"), SHA_A) == 0 &&
        strcmp(str_of(merged, "fileName"), "a.csv") == 0);
  bson_destroy(merged);
  bson_destroy(in);
  bson_destroy(st);
}

/* The HouseF3 app's records have no sha256: a newer record whose fileSize
 * differs describes other bytes and takes the package's blob; an older
 * one keeps the stored size and blob. */
static void test_merged_file_blob_without_sha256_follows_its_size(void) {
  fzip_error_t err = {0};
  pkgd_verdict_t v;
  bson_t *merged = NULL;
  bson_t *in = BCON_NEW("fileId", "f1", "fileName", "a.csv", "fileSize", BCON_INT64(20),
                        "s3Key", "u/f1/imp2", "updatedAt", BCON_INT64(2000));
  bson_t *st = BCON_NEW("fileId", "f1", "fileName", "a.csv", "fileSize", BCON_INT64(10),
                        "s3Key", "u/f1", "updatedAt", BCON_INT64(1000));

  CHECK_OK(pkgd_judge(&v, &merged, FZIP_KIND_TRANSACTION_FILE, PKGV_MERGE_FIELDS, in, st, &err),
           err);
  CHECK(v.merged && merged && strcmp(str_of(merged, "s3Key"), "u/f1/imp2") == 0);
  bson_destroy(merged);
  bson_destroy(in);
  in = BCON_NEW("fileId", "f1", "fileName", "a.csv", "fileSize", BCON_INT64(20), "s3Key",
                "u/f1/imp2", "recordCount", BCON_INT64(7), "updatedAt", BCON_INT64(500));
  CHECK_OK(pkgd_judge(&v, &merged, FZIP_KIND_TRANSACTION_FILE, PKGV_MERGE_FIELDS, in, st, &err),
           err);
  CHECK(v.merged && merged && strcmp(str_of(merged, "s3Key"), "u/f1") == 0);
  bson_destroy(merged);
  bson_destroy(in);
  bson_destroy(st);
}

/* A stored record without a blob (its bytes were missing) and a package
 * that holds them: changed, field s3Key, under every strategy; the merge
 * takes the package's blob. */
static void test_missing_bytes_the_package_holds_are_a_change(void) {
  fzip_error_t err = {0};
  pkgd_verdict_t v;
  bson_t *merged = NULL;
  bson_t *in = BCON_NEW("fileId", "f1", "fileName", "a.csv", "s3Key", "u/f1/imp2");
  bson_t *st = BCON_NEW("fileId", "f1", "fileName", "a.csv");

  CHECK_OK(pkgd_judge(&v, NULL, FZIP_KIND_TRANSACTION_FILE, PKGV_OVERWRITE, in, st, &err), err);
  CHECK(!v.identical && v.diff.n_fields == 1 && strcmp(v.diff.fields[0], "s3Key") == 0);
  CHECK_OK(pkgd_judge(&v, &merged, FZIP_KIND_TRANSACTION_FILE, PKGV_MERGE_FIELDS, in, st, &err),
           err);
  CHECK(v.merged && merged && strcmp(str_of(merged, "s3Key"), "u/f1/imp2") == 0);
  bson_destroy(merged);
  /* The package lacks them too: identical. */
  CHECK_OK(pkgd_judge(&v, NULL, FZIP_KIND_TRANSACTION_FILE, PKGV_OVERWRITE, st, st, &err), err);
  CHECK(v.identical);
  bson_destroy(in);
  bson_destroy(st);
}

static void test_keep_lists_the_first_diffs_of_each_kind(void) {
  pkgv_diff_t diffs[PKGV_DIFFS_PER_KIND * FZIP_KIND_COUNT];
  pkgd_diff_t d = {1, {"memo"}};
  size_t n = 0;
  char id[16];

  for (int i = 0; i < PKGV_DIFFS_PER_KIND + 3; i++) {
    snprintf(id, sizeof id, "t%d", i);
    pkgd_keep(diffs, &n, FZIP_KIND_TRANSACTION, id, &d);
  }
  pkgd_keep(diffs, &n, FZIP_KIND_ACCOUNT, "a1", &d);
  CHECK(n == PKGV_DIFFS_PER_KIND + 1);
  CHECK(strcmp(diffs[0].entity_id, "t0") == 0 && diffs[0].n_fields == 1 &&
        strcmp(diffs[0].fields[0], "memo") == 0);
  CHECK(diffs[n - 1].kind == FZIP_KIND_ACCOUNT && strcmp(diffs[n - 1].entity_id, "a1") == 0);
}

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  RUN(test_same_data_in_other_shapes_is_identical);
  RUN(test_changed_fields_are_named_and_counted_per_strategy);
  RUN(test_merge_takes_every_field_of_a_newer_entity);
  RUN(test_merge_of_an_older_entity_only_fills_missing_fields);
  RUN(test_merged_file_blob_follows_its_sha256);
  RUN(test_merged_file_blob_without_sha256_follows_its_size);
  RUN(test_missing_bytes_the_package_holds_are_a_change);
  RUN(test_keep_lists_the_first_diffs_of_each_kind);
  return fzip_test_summary();
}
