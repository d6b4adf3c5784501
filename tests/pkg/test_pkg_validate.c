/*
 * Tests for pkg_reader and pkg_validate.
 *
 * Good packages come from two independent sources: the real pkg_writer
 * run over a real SQLite store filled by seed_generate, and
 * make_packages.py (Python zipfile/json/hashlib, the design document's
 * layout).  Bad packages all come from make_packages.py, whose
 * expected.tsv names the rule, entry and field of the first error issue
 * each must produce.  The conflict preview is checked against the same
 * SQLite store under all three merge strategies.
 *
 *   test_pkg_validate                 the normal suite
 *   test_pkg_validate --heavy         validate ~200k transactions, check VmHWM
 *   test_pkg_validate --dump FILE     print what the validator says of FILE
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "export_source.h"
#include "fzip_test.h"
#include "import_exists.h"
#include "pkg_reader.h"
#include "pkg_validate.h"
#include "pkg_writer.h"
#include "seed.h"
#include "store.h"

#define PINNED_MS 1718000000000LL
#define LINE_MAX_LEN 1024
#define PATH_LEN 512

static char tmp_dir[256];
static char corpus_dir[PATH_LEN];
static store_t *store;

/* ---- helpers ---------------------------------------------------------- */

/* Paths in the test's temporary directory (always short). */
__attribute__((format(printf, 2, 3))) static void fmt_path(char out[PATH_LEN], const char *fmt,
                                                           ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out, PATH_LEN, fmt, ap);
  va_end(ap);
}

static const pkgv_issue_t *first_error(const pkgv_result_t *res) {
  for (size_t i = 0; i < res->n_issues; i++) {
    if (res->issues[i].severity == PKGR_SEVERITY_ERROR)
      return &res->issues[i];
  }
  return NULL;
}

static void dump(const pkgv_result_t *res, FILE *f) {
  fprintf(f, "passed=%d issues=%llu errors=%llu warnings=%llu\n", res->passed,
          (unsigned long long)res->issues_total, (unsigned long long)res->errors_total,
          (unsigned long long)res->warnings_total);
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    const pkgv_counts_t *c = &res->counts[k];
    fprintf(f, "  %-18s in=%llu valid=%llu err=%llu warn=%llu create=%llu over=%llu skip=%llu\n",
            fzip_kind_info((fzip_kind_t)k)->name, (unsigned long long)c->in_package,
            (unsigned long long)c->valid, (unsigned long long)c->errors,
            (unsigned long long)c->warnings, (unsigned long long)c->created,
            (unsigned long long)c->overwritten, (unsigned long long)c->skipped);
  }
  for (size_t i = 0; i < res->n_issues && i < 20; i++) {
    const pkgv_issue_t *is = &res->issues[i];
    fprintf(f, "  %s %s entry=%s id=%s field=%s: %s\n",
            is->severity == PKGR_SEVERITY_ERROR ? "ERROR" : "warn", is->rule, is->entry,
            is->entity_id, is->field, is->reason);
  }
}

static bool validate(pkgv_result_t **res, const char *path, store_t *s, const char *user,
                     pkgv_strategy_t strategy, fzip_error_t *err) {
  pkgv_options_t opt = {0};
  import_exists_t exists = {s, user};
  opt.strategy = strategy;
  if (s && !import_exists_use(&opt, &exists, err))
    return false;
  return pkgv_validate(res, path, &opt, err);
}

static void corpus_path(char out[PATH_LEN], const char *name) {
  fmt_path(out, "%s/%s.fzip", corpus_dir, name);
}

static uint64_t total_in(const pkgv_result_t *res) {
  uint64_t n = 0;
  for (int k = 0; k < FZIP_KIND_COUNT; k++)
    n += res->counts[k].in_package;
  return n;
}

/* Seeds `user` and writes their complete package to `path`. */
static bool seeded_package(seed_stats_t *stats, const char *user, uint64_t transactions,
                           const char *path, fzip_error_t *err) {
  seed_options_t so = {0};
  pkg_selection_t sel = {0};
  pkg_options_t po = {0};
  so.seed = 42;
  so.transactions = transactions;
  so.analytics = true;
  so.clean = true;
  sel.export_type = PKG_EXPORT_COMPLETE;
  sel.include_analytics = true;
  po.export_timestamp_ms = PINNED_MS;
  po.temp_dir = tmp_dir;
  return seed_generate(stats, store, user, &so, err) &&
         export_source_write_file(NULL, store, user, &sel, &po, path, err);
}

/* ---- tests ------------------------------------------------------------ */

static void test_design_document_packages_validate_clean(void) {
  static const char *names[] = {"good_design_doc",        "good_full_entry_names",
                                "good_accounts_only",     "good_fzip_flavour",
                                "good_zip64_directory",
                                "good_design_file_checksum_from_record",
                                "good_unknown_entity_fields",
                                "good_transactions_out_of_order"};
  fzip_error_t err = {0};
  char path[PATH_LEN];

  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    pkgv_result_t *res = NULL;
    corpus_path(path, names[i]);
    CHECK_OK(validate(&res, path, NULL, NULL, PKGV_FAIL_ON_CONFLICT, &err), err);
    if (!res->passed) {
      fprintf(stderr, "  %s:\n", names[i]);
      dump(res, stderr);
    }
    bool passed = res->passed;
    uint64_t accounts = res->counts[FZIP_KIND_ACCOUNT].created;
    pkgv_result_destroy(res);
    CHECK(passed);
    CHECK(accounts >= 1);
  }
}

static void test_design_document_package_counts_and_warnings(void) {
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  char path[PATH_LEN];

  corpus_path(path, "good_design_doc");
  CHECK_OK(validate(&res, path, NULL, NULL, PKGV_FAIL_ON_CONFLICT, &err), err);
  bool ok = res->passed && res->counts[FZIP_KIND_ACCOUNT].in_package == 2 &&
            res->counts[FZIP_KIND_CATEGORY].valid == 2 &&
            res->counts[FZIP_KIND_TRANSACTION].in_package == 3 &&
            res->counts[FZIP_KIND_TRANSACTION].created == 3 && res->files_in_package == 1 &&
            res->has_info && strcmp(res->info.format_version, "1.0") == 0 &&
            strcmp(res->info.application_version, "2.5.0") == 0 && !res->preview_from_store &&
            res->unknown_fields == 0;
  if (!ok)
    dump(res, stderr);
  pkgv_result_destroy(res);
  CHECK(ok);

  /* No checksums: refused, not warned about (milestone 2, item 3). */
  corpus_path(path, "bad_checksums_absent");
  CHECK_OK(validate(&res, path, NULL, NULL, PKGV_FAIL_ON_CONFLICT, &err), err);
  ok = !res->passed && res->warnings_total == 1 && res->errors_total == 1 &&
       pkgv_result_error_code(res) == FZIP_ERR_FAILED_PRECONDITION;
  pkgv_result_destroy(res);
  CHECK(ok);
}

/* Every hostile package make_packages.py writes, with the first error
 * issue it must produce: rule, entry ("-" none; a trailing '*' compares a
 * prefix, for names longer than an issue keeps) and field.  The corpus
 * must hold exactly these bad_*.fzip and expected.tsv must say the same. */
typedef struct {
  const char *name, *rule, *entry, *field;
} hostile_t;

static const hostile_t hostile[] = {
    {"bad_zip_bomb", "limit.ratio", "data/analytics.json", "-"},
    {"bad_dotdot_path", "archive.path", "../evil.txt", "-"},
    {"bad_nested_dotdot", "archive.path", "files/../../etc/passwd", "-"},
    {"bad_absolute_path", "archive.path", "/etc/evil", "-"},
    {"bad_backslash_path", "archive.path", "data\\evil.json", "-"},
    {"bad_symlink", "archive.link", "files/9c8b7a6d-0000-4000-8000-000000000002/link", "-"},
    {"bad_duplicate_entry", "archive.duplicate_entry", "data/accounts.json", "-"},
    {"bad_encrypted", "archive.encrypted", "data/accounts.json", "-"},
    {"bad_bzip2_compression", "archive.compression", "manifest.json", "-"},
    {"bad_truncated_zip", "archive.not_zip", "-", "-"},
    {"bad_not_a_zip", "archive.not_zip", "-", "-"},
    {"bad_empty_file", "archive.not_zip", "-", "-"},
    {"bad_missing_manifest", "manifest.missing", "manifest.json", "-"},
    {"bad_manifest_json", "manifest.json", "manifest.json", "-"},
    {"bad_manifest_not_object", "manifest.json", "manifest.json", "-"},
    {"bad_version_major", "manifest.version", "manifest.json", "export_format_version"},
    {"bad_version_newer_minor", "manifest.version", "manifest.json", "export_format_version"},
    {"bad_legacy_manifest", "json", "data/accounts.json", "-"},
    {"bad_version_garbage", "manifest.version", "manifest.json", "export_format_version"},
    {"bad_version_missing", "manifest.version", "manifest.json", "export_format_version"},
    {"bad_count_mismatch", "manifest.count", "manifest.json", "data_summary.accounts_count"},
    {"bad_count_missing_kind", "manifest.count", "manifest.json", "data_summary.analytics_count"},
    {"bad_checksum_data", "checksum.mismatch", "data/transactions.json", "-"},
    {"bad_checksum_file", "checksum.mismatch", "files/9c8b7a6d-0000-4000-8000-000000000001/jan.csv", "-"},
    {"bad_checksum_format", "manifest.field", "manifest.json", "checksums.accounts.json"},
    {"bad_checksum_unknown_entry", "checksum.unknown_entry", "budgets.json", "checksums.budgets.json"},
    {"bad_checksums_absent", "checksum.missing", "manifest.json", "checksums"},
    {"bad_file_bytes_missing", "file.bytes_missing", "data/transaction_files.json", "fileId"},
    {"bad_json_trailing_comma", "json", "data/accounts.json", "-"},
    {"bad_json_duplicate_key", "json", "data/accounts.json", "-"},
    {"bad_json_wrong_top_key", "json", "data/accounts.json", "-"},
    {"bad_json_invalid_utf8", "json", "data/accounts.json", "-"},
    {"bad_json_lone_surrogate", "json", "data/accounts.json", "-"},
    {"bad_json_nan", "json", "data/transactions.json", "-"},
    {"bad_json_trailing_data", "json", "data/accounts.json", "-"},
    {"bad_json_huge_number", "json", "data/transactions.json", "-"},
    {"bad_json_long_number", "limit.json", "data/transactions.json", "-"},
    {"bad_json_deep_nesting", "limit.json", "data/analytics.json", "-"},
    {"bad_json_huge_string", "limit.json", "data/transactions.json", "-"},
    {"bad_wrong_type", "schema.type", "data/accounts.json", "isActive"},
    {"bad_money_as_number", "schema.type", "data/transactions.json", "amount"},
    {"bad_missing_required", "schema.required", "data/transactions.json", "amount"},
    {"bad_enum", "schema.enum", "data/accounts.json", "accountType"},
    {"bad_decimal", "schema.decimal", "data/transactions.json", "amount"},
    {"bad_timestamp_range", "schema.timestamp", "data/transactions.json", "date"},
    {"bad_string_length", "schema.length", "data/accounts.json", "accountName"},
    {"bad_id_with_slash", "schema.id", "data/accounts.json", "accountId"},
    {"bad_nested_enum", "schema.enum", "data/categories.json", "rules[0].condition"},
    {"bad_duplicate_id", "id.duplicate", "data/accounts.json", "accountId"},
    {"bad_duplicate_transaction_id", "id.duplicate", "data/transactions.json", "transactionId"},
    {"bad_duplicate_transaction_id_adjacent", "id.duplicate", "data/transactions.json", "transactionId"},
    {"bad_duplicate_transaction_id_far", "id.duplicate", "data/transactions.json", "transactionId"},
    {"bad_duplicate_transaction_id_after_sorted_prefix", "id.duplicate", "data/transactions.json", "transactionId"},
    {"bad_ref_transaction_account", "reference.dangling", "data/transactions.json", "accountId"},
    {"bad_ref_transaction_file", "reference.dangling", "data/transactions.json", "fileId"},
    {"bad_ref_transaction_primary_category", "reference.dangling", "data/transactions.json", "primaryCategoryId"},
    {"bad_ref_assignment_category", "reference.dangling", "data/transactions.json", "categories[0].categoryId"},
    {"bad_ref_account_file_map", "reference.dangling", "data/accounts.json", "defaultFileMapId"},
    {"bad_ref_file_account", "reference.dangling", "data/transaction_files.json", "accountId"},
    {"bad_ref_file_file_map", "reference.dangling", "data/transaction_files.json", "fileMapId"},
    {"bad_ref_file_map_account", "reference.dangling", "data/file_maps.json", "accountId"},
    {"bad_ref_category_parent", "reference.dangling", "data/categories.json", "parentCategoryId"},
    {"bad_category_cycle", "category.cycle", "data/categories.json", "parentCategoryId"},
    {"bad_category_self_parent", "category.cycle", "data/categories.json", "parentCategoryId"},
    {"bad_regex", "rule.regex", "data/categories.json", "rules[1].value"},
    {"bad_regex_too_long", "rule.regex", "data/categories.json", "rules[1].value"},
    {"bad_duplicate_rule_id", "rule.duplicate_id", "data/categories.json", "rules[1].ruleId"},
    {"bad_fifield_overlap_bomb", "archive.overlap", "files/bomb-001/x.csv", "-"},
    {"bad_fifield_bomb_fake_end_record", "archive.overlap", "files/bomb-001/x.csv", "-"},
    {"bad_decoy_central_directory", "archive.corrupt", "-", "-"},
    {"bad_fifield_bomb_zip64", "archive.overlap", "files/bomb-001/x.csv", "-"},
    {"bad_overlap_shared_local_header", "archive.overlap", "files/other-file/y.csv", "-"},
    {"bad_archive_ratio_small_entries", "limit.ratio", "-", "-"},
    {"bad_size_lie_inflates_more", "archive.size", "data/accounts.json", "-"},
    {"bad_size_lie_inflates_less", "archive.size", "files/9c8b7a6d-0000-4000-8000-000000000001/jan.csv", "-"},
    {"bad_local_header_missing", "archive.corrupt", "data/accounts.json", "-"},
    {"bad_crc_corrupt_file", "archive.corrupt", "files/9c8b7a6d-0000-4000-8000-000000000001/jan.csv", "-"},
    {"bad_data_past_end", "archive.corrupt", "files/9c8b7a6d-0000-4000-8000-000000000001/jan.csv", "-"},
    {"bad_checksum_removed_data", "checksum.missing", "data/transactions.json", "checksums"},
    {"bad_checksum_removed_tampered_data", "checksum.missing", "data/transactions.json", "checksums"},
    {"bad_checksum_removed_file_fzip", "checksum.missing", "files/9c8b7a6d-0000-4000-8000-000000000001/jan.csv", "checksums"},
    {"bad_checksum_removed_tampered_file_fzip", "checksum.missing", "files/9c8b7a6d-0000-4000-8000-000000000001/jan.csv", "checksums"},
    {"bad_design_file_no_checksum_anywhere", "checksum.missing", "files/9c8b7a6d-0000-4000-8000-000000000001/jan.csv", "sha256"},
    {"bad_design_file_record_sha_mismatch", "file.sha256", "files/9c8b7a6d-0000-4000-8000-000000000001/jan.csv", "sha256"},
    {"bad_checksums_empty", "checksum.missing", "data/accounts.json", "checksums"},
    {"bad_checksum_bare_hex", "manifest.field", "manifest.json", "checksums.accounts.json"},
    {"bad_checksum_upper_hex", "manifest.field", "manifest.json", "checksums.accounts.json"},
    {"bad_file_size_mismatch", "file.size", "files/9c8b7a6d-0000-4000-8000-000000000001/jan.csv", "fileSize"},
    {"bad_file_sha256_mismatch", "file.sha256", "files/9c8b7a6d-0000-4000-8000-000000000001/jan.csv", "sha256"},
    {"bad_file_sha256_upper_hex", "schema.sha256", "data/transaction_files.json", "sha256"},
    {"bad_unknown_entry", "archive.unknown_entry", "notes.txt", "-"},
    {"bad_unknown_data_kind", "archive.unknown_entry", "data/budgets.json", "-"},
    {"bad_files_nested_path", "archive.unknown_entry", "files/9c8b7a6d-0000-4000-8000-000000000009/sub/x.csv", "-"},
    {"bad_directory_entry", "archive.directory", "files/", "-"},
    {"bad_directory_data", "archive.directory", "data/", "-"},
    {"bad_nul_in_name", "archive.path", "files/9c8b7a6d-0000-4000-8000-000000000009/evil.csv", "-"},
    {"bad_entry_name_too_long", "limit.entry_name", "files/9c8b7a6d-0000-4000-8000-000000000009/*", "-"},
    {"bad_manifest_unknown_key", "manifest.unknown_key", "manifest.json", "signature"},
    {"bad_manifest_unknown_summary_key", "manifest.unknown_key", "manifest.json", "data_summary.budgets_count"},
    {"bad_manifest_unknown_external_kind", "manifest.unknown_key", "manifest.json", "external_references.transactions"},
    {"bad_manifest_unknown_filters_key", "manifest.unknown_key", "manifest.json", "filters.user"},
    {"bad_manifest_unknown_compatibility_key", "manifest.unknown_key", "manifest.json", "compatibility.maximum_version"},
    {"bad_manifest_package_format", "manifest.field", "manifest.json", "package_format"},
    {"bad_external_refs_over_limit", "limit.ids", "manifest.json", "external_references.accounts"},
};

#define HOSTILE_COUNT (sizeof hostile / sizeof hostile[0])

static bool field_matches(const char *got, const char *want) {
  size_t n = strlen(want);
  if (strcmp(want, "-") == 0)
    return *got == '\0';
  if (n && want[n - 1] == '*')
    return strncmp(got, want, n - 1) == 0;
  return strcmp(got, want) == 0;
}

static const hostile_t *hostile_find(const char *name) {
  for (size_t i = 0; i < HOSTILE_COUNT; i++) {
    if (strcmp(hostile[i].name, name) == 0)
      return &hostile[i];
  }
  return NULL;
}

/* expected.tsv (the e2e import test reads it) agrees with the table. */
static int tsv_disagreements(void) {
  char expected[PATH_LEN], line[LINE_MAX_LEN];
  int wrong = 0, rows = 0;
  FILE *f;
  fmt_path(expected, "%s/expected.tsv", corpus_dir);
  if (!(f = fopen(expected, "r")))
    return 1;
  while (fgets(line, sizeof line, f)) {
    char *name = strtok(line, "\t\n"), *rule = strtok(NULL, "\t\n");
    const hostile_t *h = name ? hostile_find(name) : NULL;
    rows++;
    if (!h || !rule || strcmp(h->rule, rule) != 0) {
      fprintf(stderr, "  expected.tsv: %s %s is not in the test's table\n", name ? name : "?",
                      rule ? rule : "?");
      wrong++;
    }
  }
  fclose(f);
  if (rows != (int)HOSTILE_COUNT) {
    fprintf(stderr, "  expected.tsv has %d rows, the table %zu\n", rows, HOSTILE_COUNT);
    wrong++;
  }
  return wrong;
}

/* No bad_*.fzip in the corpus that the table does not list. */
static int unlisted_packages(void) {
  char cmd[PATH_LEN + 64], line[LINE_MAX_LEN];
  int wrong = 0;
  FILE *p;
  snprintf(cmd, sizeof cmd, "ls '%s'", corpus_dir);
  if (!(p = popen(cmd, "r")))
    return 1;
  while (fgets(line, sizeof line, p)) {
    char *dot = strstr(line, ".fzip");
    if (strncmp(line, "bad_", 4) != 0 || !dot)
      continue;
    *dot = '\0';
    if (!hostile_find(line)) {
      fprintf(stderr, "  %s.fzip is in the corpus but not in the test's table\n", line);
      wrong++;
    }
  }
  pclose(p);
  return wrong;
}

static void test_hostile_corpus_rejected_with_precise_first_issue(void) {
  char path[PATH_LEN];
  fzip_error_t err = {0};
  int wrong = 0;

  for (size_t i = 0; i < HOSTILE_COUNT; i++) {
    const hostile_t *h = &hostile[i];
    pkgv_result_t *res = NULL;
    corpus_path(path, h->name);
    if (!validate(&res, path, NULL, NULL, PKGV_FAIL_ON_CONFLICT, &err)) {
      fprintf(stderr, "  %s: validation failed to run: %s\n", h->name, err.message);
      wrong++;
      continue;
    }
    const pkgv_issue_t *is = first_error(res);
    if (res->passed || !is || strcmp(is->rule, h->rule) != 0 ||
        !field_matches(is->entry, h->entry) || !field_matches(is->field, h->field)) {
      fprintf(stderr, "  %s: want %s entry=%s field=%s\n", h->name, h->rule, h->entry, h->field);
      dump(res, stderr);
      wrong++;
    }
    pkgv_result_destroy(res);
  }
  wrong += tsv_disagreements() + unlisted_packages();
  fprintf(stderr, "  %zu hostile packages checked\n", HOSTILE_COUNT);
  CHECK(wrong == 0);
}

static void test_entity_ids_are_reported_on_entity_issues(void) {
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  char path[PATH_LEN];

  corpus_path(path, "bad_ref_transaction_account");
  CHECK_OK(validate(&res, path, NULL, NULL, PKGV_FAIL_ON_CONFLICT, &err), err);
  const pkgv_issue_t *is = first_error(res);
  bool ok = is && strcmp(is->entity_id, "c0ffee00-0000-4000-8000-000000000001") == 0 &&
            is->kind == FZIP_KIND_TRANSACTION && res->counts[FZIP_KIND_TRANSACTION].valid == 2 &&
            res->counts[FZIP_KIND_TRANSACTION].errors == 1;
  if (!ok)
    dump(res, stderr);
  pkgv_result_destroy(res);
  CHECK(ok);
}

/* Transaction ids in and out of order, validated with the default run
 * (everything fits the buffer: no temporary file) and with sorted runs of
 * SMALL_ID_RUN ids, so that 40 ids span ten runs spilled to a temporary
 * file under the test's directory: no false duplicate, and each bad
 * package's duplicate reported once, with its id, whichever way the check
 * meets it (make_packages.py: adjacent in ascending order; far apart out
 * of order; out of order after an ascending prefix holding the first). */
#define SMALL_ID_RUN 4

static bool validate_with_runs(pkgv_result_t **res, const char *name, size_t run,
                               const char *temp_dir, fzip_error_t *err) {
  char path[PATH_LEN];
  pkgv_options_t opt = {0};
  opt.temp_dir = temp_dir;
  opt.id_run_max = run;
  corpus_path(path, name);
  return pkgv_validate(res, path, &opt, err);
}

static void test_transaction_ids_unique_in_any_order_across_sorted_runs(void) {
  static const struct {
    const char *name, *dup_id;
    uint64_t in_package;
  } cases[] = {
      {"good_transactions_out_of_order", NULL, 40},
      {"bad_duplicate_transaction_id_adjacent", "c0ffee00-0000-4000-8000-000000000001", 3},
      {"bad_duplicate_transaction_id_far", "c0ffee00-0000-4000-8000-000000000013", 41},
      {"bad_duplicate_transaction_id_after_sorted_prefix",
       "c0ffee00-0000-4000-8000-000000000007", 41},
      {"bad_duplicate_transaction_id", "c0ffee00-0000-4000-8000-000000000001", 3},
  };
  static const size_t runs[] = {0, SMALL_ID_RUN};
  fzip_error_t err = {0};
  int wrong = 0;

  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (size_t j = 0; j < sizeof runs / sizeof runs[0]; j++) {
      pkgv_result_t *res = NULL;
      CHECK_OK(validate_with_runs(&res, cases[i].name, runs[j], tmp_dir, &err), err);
      const pkgv_issue_t *is = first_error(res);
      const pkgv_counts_t *c = &res->counts[FZIP_KIND_TRANSACTION];
      bool ok = c->in_package == cases[i].in_package;
      if (cases[i].dup_id)
        ok = ok && !res->passed && res->errors_total == 1 && c->errors == 1 && is &&
             strcmp(is->rule, "id.duplicate") == 0 && is->kind == FZIP_KIND_TRANSACTION &&
             strcmp(is->entry, "data/transactions.json") == 0 &&
             strcmp(is->field, "transactionId") == 0 &&
             strcmp(is->entity_id, cases[i].dup_id) == 0 &&
             strcmp(is->reason, "id appears more than once in the package") == 0;
      else
        ok = ok && res->passed && c->created == cases[i].in_package;
      if (!ok) {
        fprintf(stderr, "  %s, runs of %zu:\n", cases[i].name, runs[j]);
        dump(res, stderr);
        wrong++;
      }
      pkgv_result_destroy(res);
    }
  }
  CHECK(wrong == 0);
}

/* Spilling a run needs the temporary directory: one that cannot be
 * written fails the validation, naming it, and never passes the package;
 * a package whose ids fit one run never needs it. */
static void test_unwritable_id_run_directory_fails_validation(void) {
  static const char missing[] = "/nonexistent/fzip-idrun-test";
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;

  CHECK_FAILS(validate_with_runs(&res, "good_transactions_out_of_order", SMALL_ID_RUN, missing,
                                 &err),
              err, FZIP_ERR_INTERNAL);
  CHECK(res == NULL && err.domain == FZIP_DOMAIN_SYS && strstr(err.message, missing) != NULL);
  CHECK_OK(validate_with_runs(&res, "good_transactions_out_of_order", 0, missing, &err), err);
  bool passed = res->passed;
  pkgv_result_destroy(res);
  CHECK(passed);
}

static void test_writer_package_from_seeded_store_validates_clean(void) {
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  seed_stats_t st;
  char path[PATH_LEN];

  fmt_path(path, "%s/seeded.fzip", tmp_dir);
  CHECK_OK(seeded_package(&st, "alice", 500, path, &err), err);
  /* Into another user's (empty) profile: everything is created. */
  CHECK_OK(validate(&res, path, store, "bob", PKGV_FAIL_ON_CONFLICT, &err), err);
  bool ok = res->passed && res->errors_total == 0 && res->warnings_total == 0 &&
            res->preview_from_store &&
            res->counts[FZIP_KIND_ACCOUNT].created == st.accounts &&
            res->counts[FZIP_KIND_CATEGORY].created == st.categories &&
            res->counts[FZIP_KIND_FILE_MAP].created == st.file_maps &&
            res->counts[FZIP_KIND_TRANSACTION_FILE].created == st.files &&
            res->counts[FZIP_KIND_TRANSACTION].created == st.transactions &&
            res->counts[FZIP_KIND_TRANSACTION].valid == st.transactions &&
            res->counts[FZIP_KIND_ANALYTICS].in_package == st.analytics &&
            res->files_in_package == st.files && res->file_bytes == st.file_bytes;
  if (!ok)
    dump(res, stderr);
  pkgv_result_destroy(res);
  CHECK(ok);
}

/* What the progress calls of one validation saw. */
typedef struct {
  size_t calls, moving; /* moving: calls with 0 < done < declared */
  bool backwards, wrong_declared;
  uint64_t last_done, first_declared, entities_declared, files_declared;
  char first_phase[32];
} progress_seen_t;

static void on_progress(void *ctx, const pkgv_progress_t *p) {
  progress_seen_t *seen = ctx;
  if (seen->calls++ == 0) {
    snprintf(seen->first_phase, sizeof seen->first_phase, "%s", p->phase);
    seen->first_declared = p->entities_declared;
  } else if (seen->entities_declared == 0) {
    seen->entities_declared = p->entities_declared;
    seen->files_declared = p->files_declared;
  } else if (p->entities_declared != seen->entities_declared ||
             p->files_declared != seen->files_declared) {
    seen->wrong_declared = true;
  }
  seen->backwards |= p->entities_done < seen->last_done;
  seen->last_done = p->entities_done;
  if (p->entities_done > 0 && p->entities_done < p->entities_declared)
    seen->moving++;
}

/* A progress bar needs its end before the validation has counted: every
 * call after the first (the archive's, before the manifest is read)
 * carries the manifest's entity and file counts, which for a package
 * that passes are what the validation counted, and the entities read
 * rise to their sum. */
static void test_progress_reports_the_manifests_counts_as_entities_are_read(void) {
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  pkgv_options_t opt = {0};
  progress_seen_t seen = {0};
  seed_stats_t st;
  char path[PATH_LEN];
  uint64_t counted = 0;

  fmt_path(path, "%s/progress.fzip", tmp_dir);
  CHECK_OK(seeded_package(&st, "progress", 2500, path, &err), err);
  opt.progress = on_progress;
  opt.progress_ctx = &seen;
  CHECK_OK(pkgv_validate(&res, path, &opt, &err), err);
  for (int k = 0; k < FZIP_KIND_COUNT; k++)
    counted += res->counts[k].in_package;
  bool ok = res->passed && strcmp(seen.first_phase, "archive") == 0 &&
            seen.first_declared == 0 && !seen.wrong_declared && !seen.backwards &&
            seen.entities_declared == counted && counted > 2500 &&
            seen.files_declared == res->files_in_package && st.files > 0 &&
            seen.last_done == counted && seen.moving >= 2;
  if (!ok) {
    fprintf(stderr, "  calls=%zu moving=%zu backwards=%d wrong_declared=%d first=%s/%llu "
                    "declared=%llu/%llu counted=%llu/%llu last_done=%llu\n",
            seen.calls, seen.moving, seen.backwards, seen.wrong_declared, seen.first_phase,
            (unsigned long long)seen.first_declared, (unsigned long long)seen.entities_declared,
            (unsigned long long)seen.files_declared, (unsigned long long)counted,
            (unsigned long long)res->files_in_package, (unsigned long long)seen.last_done);
    dump(res, stderr);
  }
  pkgv_result_destroy(res);
  CHECK(ok);
}

/* Where the stored bytes of entry `name` begin in the zip at `path` (its
 * local header read by hand), and how many there are; false if absent. */
static bool entry_data_span(long *off, uint64_t *len, const char *path, const char *name) {
  zip_t *za = zip_open(path, ZIP_RDONLY, NULL);
  zip_stat_t st;
  unsigned char *file = NULL;
  size_t n = 0, name_len = strlen(name);
  bool found = false;
  FILE *f = NULL;
  struct stat sb;

  if (!za)
    return false;
  zip_stat_init(&st);
  found = zip_stat(za, name, 0, &st) == 0;
  zip_discard(za);
  if (!found || stat(path, &sb) != 0 || !(file = malloc((size_t)sb.st_size)) ||
      !(f = fopen(path, "rb")) || (n = fread(file, 1, (size_t)sb.st_size, f)) == 0) {
    found = false;
    goto done;
  }
  found = false;
  for (size_t i = 0; i + 30 + name_len <= n; i++) {
    if (memcmp(file + i, "PK\x03\x04", 4) == 0 &&
        (size_t)(file[i + 26] | file[i + 27] << 8) == name_len &&
        memcmp(file + i + 30, name, name_len) == 0) {
      *off = (long)(i + 30 + name_len + (size_t)(file[i + 28] | file[i + 29] << 8));
      *len = st.comp_size;
      found = true;
      break;
    }
  }
done:
  if (f)
    fclose(f);
  free(file);
  return found;
}

/* A data entry past PKGR_AHEAD_MIN is read ahead on a thread of its own
 * (pkg_readahead): it validates like any other, and inflate's refusal in
 * its middle reaches the validator after the entities before it, as the
 * entry's corruption (not a hang, not the end of the entry), with the
 * entries after it still read. */
static void test_large_entry_read_ahead_validates_and_reports_damage(void) {
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  seed_stats_t st;
  char path[PATH_LEN], bad[PATH_LEN];
  long off = 0;
  uint64_t len = 0;
  zip_t *za = NULL;
  zip_stat_t zs;
  bool ok, damaged = false;

  fmt_path(path, "%s/ahead.fzip", tmp_dir);
  CHECK_OK(seeded_package(&st, "ahead", 12000, path, &err), err);
  za = zip_open(path, ZIP_RDONLY, NULL);
  CHECK(za != NULL);
  zip_stat_init(&zs);
  CHECK(za && zip_stat(za, "data/transactions.json", 0, &zs) == 0);
  CHECK(zs.size >= PKGR_AHEAD_MIN); /* the read-ahead runs */
  zip_discard(za);
  CHECK_OK(validate(&res, path, store, "ahead-into", PKGV_FAIL_ON_CONFLICT, &err), err);
  ok = res->passed && res->errors_total == 0 &&
       res->counts[FZIP_KIND_TRANSACTION].valid == st.transactions &&
       res->counts[FZIP_KIND_ANALYTICS].in_package == st.analytics;
  if (!ok)
    dump(res, stderr);
  pkgv_result_destroy(res);
  res = NULL;
  CHECK(ok);

  /* The entry is parallel deflate blocks, each ended by a sync flush
   * (00 00 ff ff) so the next starts on a byte: the first such start past
   * the middle gets block type 11, which inflate refuses there, after
   * every byte before it. */
  fmt_path(bad, "%s/ahead-damaged.fzip", tmp_dir);
  CHECK(entry_data_span(&off, &len, path, "data/transactions.json"));
  {
    FILE *in = fopen(path, "rb"), *out = fopen(bad, "wb");
    unsigned char *z = malloc((size_t)len);
    size_t at = (size_t)len / 2;
    CHECK(in && out && z);
    if (in && out && z && fseek(in, off, SEEK_SET) == 0 && fread(z, 1, (size_t)len, in) == len) {
      while (at + 5 < len && memcmp(z + at, "\x00\x00\xff\xff", 4) != 0)
        at++;
      CHECK(at + 5 < len);
      z[at + 4] |= 0x06;
      rewind(in);
      for (long i = 0; i < off; i++)
        fputc(fgetc(in), out);
      fwrite(z, 1, (size_t)len, out);
      fseek(in, off + (long)len, SEEK_SET);
      for (int c; (c = fgetc(in)) != EOF;)
        fputc(c, out);
    }
    free(z);
    if (in)
      fclose(in);
    if (out)
      fclose(out);
  }
  CHECK_OK(validate(&res, bad, store, "ahead-into", PKGV_FAIL_ON_CONFLICT, &err), err);
  for (size_t i = 0; i < res->n_issues; i++) {
    const pkgv_issue_t *is = &res->issues[i];
    if (strcmp(is->entry, "data/transactions.json") == 0 &&
        strcmp(is->rule, "archive.corrupt") == 0)
      damaged = true;
  }
  ok = !res->passed && damaged && res->counts[FZIP_KIND_TRANSACTION].in_package > 0 &&
       res->counts[FZIP_KIND_TRANSACTION].in_package < st.transactions &&
       res->counts[FZIP_KIND_ANALYTICS].in_package == st.analytics;
  if (!ok)
    dump(res, stderr);
  pkgv_result_destroy(res);
  CHECK(ok);
}

/* An exists callback of the test's own, no store: the user "has" every
 * account and nothing else; `fail` makes the question itself fail. */
typedef struct {
  bool fail;
  int calls;
  size_t max_n;
  int calls_of[FZIP_KIND_COUNT];
  int any_calls;
  bool any_fails;
} has_accounts_t;

/* The user has every account, each with only its id (so each differs
 * from the package's). */
static bool has_accounts(void *ctx, bool *exists, bson_t **docs, fzip_kind_t kind,
                         const char *const *ids, size_t n, fzip_error_t *error) {
  has_accounts_t *h = ctx;
  h->calls++;
  h->calls_of[kind]++;
  h->max_n = n > h->max_n ? n : h->max_n;
  if (h->fail)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_UNAVAILABLE, "store gone");
  for (size_t i = 0; i < n; i++) {
    exists[i] = kind == FZIP_KIND_ACCOUNT && ids[i] && *ids[i];
    if (docs)
      docs[i] = exists[i] ? BCON_NEW("accountId", BCON_UTF8(ids[i])) : NULL;
  }
  return true;
}

static void test_exists_callback_decides_conflicts_and_preview(void) {
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  has_accounts_t h = {0};
  pkgv_options_t opt = {.exists = has_accounts, .exists_ctx = &h};
  seed_stats_t st;
  char path[PATH_LEN];

  fmt_path(path, "%s/exists.fzip", tmp_dir);
  CHECK_OK(seeded_package(&st, "dave", 50, path, &err), err);
  opt.strategy = PKGV_FAIL_ON_CONFLICT;
  CHECK_OK(pkgv_validate(&res, path, &opt, &err), err);
  const pkgv_issue_t *is = first_error(res);
  bool ok = !res->passed && res->preview_from_store && res->conflicts_total == st.accounts &&
            is && strcmp(is->rule, "conflict.exists") == 0 && is->kind == FZIP_KIND_ACCOUNT &&
            strcmp(is->field, "accountId") == 0 && res->counts[FZIP_KIND_ACCOUNT].created == 0 &&
            res->counts[FZIP_KIND_TRANSACTION].created == st.transactions &&
            h.calls >= FZIP_KIND_COUNT - 1 && h.max_n <= PKGV_EXISTS_BATCH_MAX;
  if (!ok)
    dump(res, stderr);
  pkgv_result_destroy(res);
  CHECK(ok);

  opt.strategy = PKGV_SKIP_EXISTING;
  CHECK_OK(pkgv_validate(&res, path, &opt, &err), err);
  ok = res->passed && res->conflicts_total == 0 &&
       res->counts[FZIP_KIND_ACCOUNT].skipped == st.accounts &&
       res->counts[FZIP_KIND_CATEGORY].created == st.categories;
  pkgv_result_destroy(res);
  CHECK(ok);

  /* The stored accounts lack every field but the id: each is changed, the
   * first PKGV_DIFFS_PER_KIND listed with accountName among their fields,
   * and merge_fields takes the missing fields of each. */
  opt.strategy = PKGV_MERGE_FIELDS;
  CHECK_OK(pkgv_validate(&res, path, &opt, &err), err);
  ok = res->passed && res->counts[FZIP_KIND_ACCOUNT].changed == st.accounts &&
       res->counts[FZIP_KIND_ACCOUNT].merged == st.accounts &&
       res->counts[FZIP_KIND_ACCOUNT].identical == 0 &&
       res->n_diffs == (st.accounts < PKGV_DIFFS_PER_KIND ? st.accounts : PKGV_DIFFS_PER_KIND) &&
       res->n_diffs > 0 && res->diffs[0].kind == FZIP_KIND_ACCOUNT &&
       res->diffs[0].n_fields >= 2 && strcmp(res->diffs[0].fields[0], "accountName") == 0;
  if (!ok)
    dump(res, stderr);
  pkgv_result_destroy(res);
  CHECK(ok);

  h.fail = true;
  CHECK_FAILS(pkgv_validate(&res, path, &opt, &err), err, FZIP_ERR_UNAVAILABLE);
  CHECK(res == NULL && strstr(err.message, "store gone"));
}

/* has_accounts's pkgv_any_fn: accounts, nothing else. */
static bool any_accounts(void *ctx, bool *any, fzip_kind_t kind, fzip_error_t *error) {
  has_accounts_t *h = ctx;
  h->any_calls++;
  if (h->any_fails)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_UNAVAILABLE, "store gone");
  *any = kind == FZIP_KIND_ACCOUNT;
  return true;
}

/* A kind the user has none of is counted as created without one exists
 * call for its ids; the kinds it has are still asked, conflicts found. */
static void test_kinds_the_user_has_none_of_ask_no_exists(void) {
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  has_accounts_t h = {0};
  pkgv_options_t opt = {.exists = has_accounts, .any = any_accounts, .exists_ctx = &h};
  seed_stats_t st;
  char path[PATH_LEN];

  fmt_path(path, "%s/any.fzip", tmp_dir);
  CHECK_OK(seeded_package(&st, "erin", 2500, path, &err), err);
  opt.strategy = PKGV_FAIL_ON_CONFLICT;
  CHECK_OK(pkgv_validate(&res, path, &opt, &err), err);
  bool ok = !res->passed && res->conflicts_total == st.accounts &&
            res->counts[FZIP_KIND_ACCOUNT].created == 0 &&
            res->counts[FZIP_KIND_TRANSACTION].created == st.transactions &&
            res->counts[FZIP_KIND_CATEGORY].created == st.categories &&
            h.any_calls == FZIP_KIND_COUNT && h.calls_of[FZIP_KIND_ACCOUNT] >= 1;
  for (int k = 0; k < FZIP_KIND_COUNT; k++)
    ok = ok && (k == FZIP_KIND_ACCOUNT || h.calls_of[k] == 0);
  if (!ok)
    dump(res, stderr);
  pkgv_result_destroy(res);
  CHECK(ok);

  h.any_fails = true;
  CHECK_FAILS(pkgv_validate(&res, path, &opt, &err), err, FZIP_ERR_UNAVAILABLE);
  CHECK(res == NULL && strstr(err.message, "store gone") && strstr(err.message, "accounts"));
}

static void test_conflict_preview_under_each_strategy(void) {
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  seed_stats_t st;
  char path[PATH_LEN];
  uint64_t total;

  fmt_path(path, "%s/conflicts.fzip", tmp_dir);
  CHECK_OK(seeded_package(&st, "carol", 200, path, &err), err);
  total = st.accounts + st.categories + st.file_maps + st.files + st.transactions + st.analytics;

  /* carol already has every entity. */
  CHECK_OK(validate(&res, path, store, "carol", PKGV_FAIL_ON_CONFLICT, &err), err);
  const pkgv_issue_t *is = first_error(res);
  bool ok = !res->passed && res->conflicts_total == total &&
            res->n_conflicting_ids == PKGV_CONFLICT_IDS_MAX && is &&
            strcmp(is->rule, "conflict.exists") == 0 &&
            strcmp(is->entry, "data/accounts.json") == 0 &&
            strcmp(is->field, "accountId") == 0 && res->counts[FZIP_KIND_ACCOUNT].created == 0 &&
            strncmp(res->conflicting_ids[0], "accounts/", 9) == 0;
  if (!ok)
    dump(res, stderr);
  pkgv_result_destroy(res);
  CHECK(ok);

  CHECK_OK(validate(&res, path, store, "carol", PKGV_SKIP_EXISTING, &err), err);
  ok = res->passed && res->counts[FZIP_KIND_TRANSACTION].skipped == st.transactions &&
       res->counts[FZIP_KIND_TRANSACTION].created == 0 &&
       res->counts[FZIP_KIND_ACCOUNT].skipped == st.accounts && res->conflicts_total == 0;
  pkgv_result_destroy(res);
  CHECK(ok);

  /* The package is carol's own data: every entity is identical, so
   * overwrite and merge_fields would write nothing. */
  CHECK_OK(validate(&res, path, store, "carol", PKGV_OVERWRITE, &err), err);
  ok = res->passed && res->counts[FZIP_KIND_TRANSACTION].identical == st.transactions &&
       res->counts[FZIP_KIND_CATEGORY].identical == st.categories &&
       res->counts[FZIP_KIND_TRANSACTION_FILE].identical == st.files &&
       res->counts[FZIP_KIND_TRANSACTION].overwritten == 0 &&
       res->counts[FZIP_KIND_TRANSACTION].changed == 0 &&
       res->counts[FZIP_KIND_TRANSACTION].created == 0 && res->n_diffs == 0;
  if (!ok)
    dump(res, stderr);
  pkgv_result_destroy(res);
  CHECK(ok);
  CHECK_OK(validate(&res, path, store, "carol", PKGV_MERGE_FIELDS, &err), err);
  ok = res->passed && res->counts[FZIP_KIND_ACCOUNT].identical == st.accounts &&
       res->counts[FZIP_KIND_ACCOUNT].merged == 0 && res->counts[FZIP_KIND_ACCOUNT].skipped == 0;
  pkgv_result_destroy(res);
  CHECK(ok);

  /* dave has exactly one of the package's accounts: a partial overlap. */
  bson_t *acc = NULL;
  store_cursor_t *cur = NULL;
  const bson_t *doc;
  CHECK_OK(store_cursor_new(&cur, store, "carol", FZIP_KIND_ACCOUNT, NULL, &err), err);
  if (store_cursor_next(cur, &doc, &err))
    acc = bson_copy(doc);
  store_cursor_destroy(cur);
  CHECK(acc != NULL);
  const bson_t *one[1] = {acc};
  bool put = store_entity_put_batch(store, "dave", FZIP_KIND_ACCOUNT, one, 1,
                                    STORE_WRITE_REPLACE, NULL, &err);
  bson_destroy(acc);
  CHECK_OK(put, err);
  CHECK_OK(validate(&res, path, store, "dave", PKGV_SKIP_EXISTING, &err), err);
  ok = res->passed && res->counts[FZIP_KIND_ACCOUNT].skipped == 1 &&
       res->counts[FZIP_KIND_ACCOUNT].created == st.accounts - 1 &&
       res->counts[FZIP_KIND_TRANSACTION].created == st.transactions && total_in(res) == total;
  pkgv_result_destroy(res);
  CHECK(ok);
}

static void test_restore_streams_entities_in_dependency_order(void) {
  fzip_error_t err = {0};
  pkgr_t *r = NULL;
  seed_stats_t st;
  char path[PATH_LEN], hex[FZIP_SHA256_HEX_LEN + 1], buf[4096];
  uint64_t counts[FZIP_KIND_COUNT] = {0}, bytes = 0;

  fmt_path(path, "%s/stream.fzip", tmp_dir);
  CHECK_OK(seeded_package(&st, "erin", 120, path, &err), err);
  CHECK_OK(pkgr_open(&r, path, NULL, NULL, NULL, &err), err);
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    pkgr_entities_t *it = NULL;
    const bson_t *doc;
    bool ok;
    CHECK_OK(pkgr_entities_open(&it, r, (fzip_kind_t)k, &err), err);
    while (pkgr_entities_next(it, &doc, &err)) {
      bson_iter_t id;
      if (!bson_iter_init_find(&id, doc, fzip_kind_info((fzip_kind_t)k)->id_field))
        break;
      counts[k]++;
    }
    ok = !fzip_error_is_set(&err) && pkgr_entities_finish(hex, it, &err);
    pkgr_entities_destroy(it);
    CHECK_OK(ok, err);
    CHECK(strlen(hex) == FZIP_SHA256_HEX_LEN);
  }
  for (size_t i = 0; i < pkgr_file_count(r); i++) {
    pkgr_file_t *f = NULL;
    size_t n;
    bool ok = pkgr_file_open(&f, r, pkgr_file_at(r, i)->file_id, &err);
    while (ok && (ok = pkgr_file_read(f, buf, sizeof buf, &n, &err)) && n)
      bytes += n;
    pkgr_file_destroy(f);
    CHECK_OK(ok, err);
  }
  size_t files = pkgr_file_count(r);
  pkgr_destroy(r);
  CHECK(counts[FZIP_KIND_ACCOUNT] == st.accounts);
  CHECK(counts[FZIP_KIND_CATEGORY] == st.categories);
  CHECK(counts[FZIP_KIND_TRANSACTION] == st.transactions);
  CHECK(counts[FZIP_KIND_ANALYTICS] == st.analytics);
  CHECK(files == st.files);
  CHECK(bytes == st.file_bytes);
}

static void test_refused_archive_reports_every_problem(void) {
  fzip_error_t err = {0};
  pkgr_t *r = NULL;
  char path[PATH_LEN];

  corpus_path(path, "bad_dotdot_path");
  CHECK_FAILS(pkgr_open(&r, path, NULL, NULL, NULL, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK(err.domain == FZIP_DOMAIN_VALIDATION);
  CHECK(r == NULL);
  fmt_path(path, "%s/does-not-exist.fzip", tmp_dir);
  CHECK_FAILS(pkgr_open(&r, path, NULL, NULL, NULL, &err), err, FZIP_ERR_NOT_FOUND);
  pkgv_result_t *res = NULL;
  CHECK(!validate(&res, path, NULL, NULL, PKGV_FAIL_ON_CONFLICT, &err));
  CHECK(res == NULL);
}

/* The Fifield bomb (300 entries sharing one deflate stream, 37 KB that
 * would inflate to 300 MB) is refused from the central directory alone:
 * no entry is inflated, every overlapping entry is named. */
static void test_overlap_bomb_refused_before_anything_is_inflated(void) {
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  pkgr_t *r = NULL;
  char path[PATH_LEN];
  uint64_t overlaps = 0;

  corpus_path(path, "bad_fifield_overlap_bomb");
  /* Its first error is an overlap; its ratio is a limit, which decides. */
  CHECK_FAILS(pkgr_open(&r, path, NULL, NULL, NULL, &err), err, FZIP_ERR_RESOURCE_EXHAUSTED);
  CHECK(err.domain == FZIP_DOMAIN_VALIDATION);
  CHECK_OK(validate(&res, path, NULL, NULL, PKGV_FAIL_ON_CONFLICT, &err), err);
  for (size_t i = 0; i < res->n_issues; i++)
    overlaps += strcmp(res->issues[i].rule, "archive.overlap") == 0;
  bool ok = !res->passed && !res->has_info && overlaps == 299 && res->file_bytes == 0 &&
            res->files_in_package == 0 && total_in(res) == 0;
  if (!ok)
    dump(res, stderr);
  pkgv_result_destroy(res);
  CHECK(ok);
}

/* limit.* refusals are RESOURCE_EXHAUSTED, from pkgr_open and for the
 * import job (pkgv_result_error_code); other refusals are not. */
static void test_limit_refusals_are_resource_exhausted(void) {
  static const char *limit_cases[] = {"bad_zip_bomb", "bad_archive_ratio_small_entries",
                                      "bad_entry_name_too_long", "bad_external_refs_over_limit"};
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  pkgr_t *r = NULL;
  pkgr_limits_t lim;
  pkgv_options_t opt = {0};
  char path[PATH_LEN];

  for (size_t i = 0; i < sizeof limit_cases / sizeof limit_cases[0]; i++) {
    corpus_path(path, limit_cases[i]);
    CHECK_FAILS(pkgr_open(&r, path, NULL, NULL, NULL, &err), err, FZIP_ERR_RESOURCE_EXHAUSTED);
    CHECK_OK(validate(&res, path, NULL, NULL, PKGV_FAIL_ON_CONFLICT, &err), err);
    fzip_code_t code = pkgv_result_error_code(res);
    pkgv_result_destroy(res);
    CHECK(code == FZIP_ERR_RESOURCE_EXHAUSTED);
  }
  /* A limit set by the caller: 3 entries for a package of 7. */
  corpus_path(path, "good_design_doc");
  pkgr_limits_default(&lim);
  lim.max_entries = 3;
  CHECK_FAILS(pkgr_open(&r, path, &lim, NULL, NULL, &err), err, FZIP_ERR_RESOURCE_EXHAUSTED);
  opt.limits = &lim;
  CHECK_OK(pkgv_validate(&res, path, &opt, &err), err);
  const pkgv_issue_t *is = first_error(res);
  bool ok = is && strcmp(is->rule, "limit.entries") == 0 &&
            pkgv_result_error_code(res) == FZIP_ERR_RESOURCE_EXHAUSTED;
  pkgv_result_destroy(res);
  CHECK(ok);
  pkgr_limits_default(&lim);
  lim.max_files = 0;
  CHECK_OK(pkgv_validate(&res, path, &opt, &err), err);
  is = first_error(res);
  ok = is && strcmp(is->rule, "limit.files") == 0 &&
       pkgv_result_error_code(res) == FZIP_ERR_RESOURCE_EXHAUSTED;
  pkgv_result_destroy(res);
  CHECK(ok);
  /* A limit broken after another error still decides the code: the
   * Fifield bomb's first error is an overlap, its ratio is a limit. */
  corpus_path(path, "bad_fifield_overlap_bomb");
  CHECK_FAILS(pkgr_open(&r, path, NULL, NULL, NULL, &err), err, FZIP_ERR_RESOURCE_EXHAUSTED);
  CHECK_OK(validate(&res, path, NULL, NULL, PKGV_FAIL_ON_CONFLICT, &err), err);
  is = first_error(res);
  ok = is && strcmp(is->rule, "archive.overlap") == 0 &&
       pkgv_result_error_code(res) == FZIP_ERR_RESOURCE_EXHAUSTED;
  pkgv_result_destroy(res);
  CHECK(ok);
  /* Not a limit. */
  corpus_path(path, "bad_nul_in_name");
  CHECK_FAILS(pkgr_open(&r, path, NULL, NULL, NULL, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK_OK(validate(&res, path, NULL, NULL, PKGV_FAIL_ON_CONFLICT, &err), err);
  ok = pkgv_result_error_code(res) == FZIP_ERR_FAILED_PRECONDITION;
  pkgv_result_destroy(res);
  CHECK(ok);
}

static bool has_field(const bson_t *doc, const char *dotted) {
  bson_iter_t it, found;
  return bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, dotted, &found);
}

/* Reads the first entity of `kind` and sanitises it into *out. */
static bool first_sanitized(bson_t *out, pkgr_t *r, fzip_kind_t kind, fzip_error_t *err) {
  pkgr_entities_t *it = NULL;
  const bson_t *doc = NULL;
  bool ok = pkgr_entities_open(&it, r, kind, err) && pkgr_entities_next(it, &doc, err) &&
            pkgv_entity_sanitize(out, kind, doc, err);
  pkgr_entities_destroy(it);
  return ok;
}

/* Unknown fields are accepted with a warning each and never make it into
 * what the import stores. */
static void test_unknown_entity_fields_are_warned_and_never_stored(void) {
  static const char *warned[] = {"user_id", "userId", "rules[0].owner", "categories[0].debug"};
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  pkgr_t *r = NULL;
  char path[PATH_LEN];
  bson_t acc, cat, txn;

  corpus_path(path, "good_unknown_entity_fields");
  CHECK_OK(validate(&res, path, NULL, NULL, PKGV_FAIL_ON_CONFLICT, &err), err);
  /* unknown_fields counts them: the import sanitizes only when it is not 0 */
  bool ok = res->passed && res->warnings_total == 4 && res->unknown_fields == 4;
  for (size_t i = 0; i < sizeof warned / sizeof warned[0]; i++) {
    bool seen = false;
    for (size_t j = 0; j < res->n_issues; j++)
      seen |= strcmp(res->issues[j].rule, "schema.unknown_field") == 0 &&
              strcmp(res->issues[j].field, warned[i]) == 0;
    ok = ok && seen;
  }
  if (!ok)
    dump(res, stderr);
  pkgv_result_destroy(res);
  CHECK(ok);

  bson_init(&acc);
  bson_init(&cat);
  bson_init(&txn);
  CHECK_OK(pkgr_open(&r, path, NULL, NULL, NULL, &err), err);
  CHECK_OK(first_sanitized(&acc, r, FZIP_KIND_ACCOUNT, &err), err);
  CHECK_OK(first_sanitized(&cat, r, FZIP_KIND_CATEGORY, &err), err);
  CHECK_OK(first_sanitized(&txn, r, FZIP_KIND_TRANSACTION, &err), err);
  pkgr_destroy(r);
  CHECK(!has_field(&acc, "user_id") && !has_field(&acc, "userId"));
  CHECK(has_field(&acc, "accountId") && has_field(&acc, "accountName") &&
        has_field(&acc, "balance") && has_field(&acc, "updatedAt"));
  CHECK(has_field(&cat, "rules.0.ruleId") && has_field(&cat, "rules.1.value") &&
        !has_field(&cat, "rules.0.owner"));
  CHECK(has_field(&txn, "categories.0.categoryId") && !has_field(&txn, "categories.0.debug") &&
        has_field(&txn, "transactionHash"));
  bson_destroy(&acc);
  bson_destroy(&cat);
  bson_destroy(&txn);
}

/* Design flavour: a files/ entry without a manifest checksum passes only
 * when its record's sha256 vouches for the bytes; fzip's own flavour has
 * no such exception. */
static void test_design_flavour_file_checked_against_its_record(void) {
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  char path[PATH_LEN];

  corpus_path(path, "good_design_file_checksum_from_record");
  CHECK_OK(validate(&res, path, NULL, NULL, PKGV_FAIL_ON_CONFLICT, &err), err);
  bool ok = res->passed && res->info.design_flavour && res->files_in_package == 1 &&
            res->file_bytes > 0;
  pkgv_result_destroy(res);
  CHECK(ok);
  corpus_path(path, "good_fzip_flavour");
  CHECK_OK(validate(&res, path, NULL, NULL, PKGV_FAIL_ON_CONFLICT, &err), err);
  ok = res->passed && !res->info.design_flavour;
  pkgv_result_destroy(res);
  CHECK(ok);
}

/* ---- heavy: memory ---------------------------------------------------- */

static long vm_hwm_kb(void) {
  char line[256];
  long kb = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "VmHWM:", 6) == 0)
      kb = strtol(line + 6, NULL, 10);
  }
  fclose(f);
  return kb;
}

#define HEAVY_TRANSACTIONS 200000
/* ids of referenced kinds and the conflict batch; transaction ids are
 * not kept (ascending in the writer's package: pkg_idrun keeps one) */
#define HEAVY_HWM_GROWTH_KB (48 * 1024)

static void test_heavy_validation_memory_stays_small(void) {
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  seed_stats_t st;
  char path[PATH_LEN];
  struct stat sb;

  fmt_path(path, "%s/heavy.fzip", tmp_dir);
  CHECK_OK(seeded_package(&st, "heavy", HEAVY_TRANSACTIONS, path, &err), err);
  CHECK(stat(path, &sb) == 0);
  /* The writer and the seed have used memory of their own; reset HWM. */
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (f) {
    fputs("5\n", f);
    fclose(f);
  }
  long before = vm_hwm_kb();
  int64_t t0 = fzip_monotonic_ms();
  CHECK_OK(validate(&res, path, store, "heavy-import", PKGV_FAIL_ON_CONFLICT, &err), err);
  int64_t ms = fzip_monotonic_ms() - t0;
  long after = vm_hwm_kb();
  bool ok = res->passed && res->counts[FZIP_KIND_TRANSACTION].created == HEAVY_TRANSACTIONS;
  if (!ok)
    dump(res, stderr);
  pkgv_result_destroy(res);
  fprintf(stderr, "  %d transactions, package %lld bytes, validated in %lld ms, "
          "VmHWM %ld -> %ld kB (+%ld kB)\n", HEAVY_TRANSACTIONS, (long long)sb.st_size,
          (long long)ms, before, after, after - before);
  CHECK(ok);
  CHECK(before > 0 && after - before < HEAVY_HWM_GROWTH_KB);
}

/* ---- main ------------------------------------------------------------- */

static int dump_file(const char *path) {
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  if (!validate(&res, path, NULL, NULL, PKGV_FAIL_ON_CONFLICT, &err)) {
    fprintf(stderr, "%s\n", err.message);
    return 1;
  }
  dump(res, stdout);
  pkgv_result_destroy(res);
  return 0;
}

static bool setup(void) {
  char cmd[PATH_LEN * 2], uri[PATH_LEN];
  fzip_error_t err = {0};
  store_options_t so = {0};
  const char *base = getenv("TMPDIR");

  snprintf(tmp_dir, sizeof tmp_dir, "%s/fzip-pkgv-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmp_dir))
    return false;
  fmt_path(corpus_dir, "%s/corpus", tmp_dir);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/make_packages.py %s", FZIP_PKG_TEST_DIR,
           corpus_dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "make_packages.py failed\n");
    return false;
  }
  fmt_path(uri, "sqlite:%s/store.db", tmp_dir);
  so.uri = uri;
  if (!store_open(&store, &so, &err)) {
    fprintf(stderr, "store_open: %s\n", err.message);
    return false;
  }
  return true;
}

static void teardown(void) {
  char cmd[PATH_LEN];
  store_destroy(store);
  if (!getenv("FZIP_TEST_KEEP")) {
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0)
      fprintf(stderr, "could not remove %s\n", tmp_dir);
  } else {
    fprintf(stderr, "kept %s\n", tmp_dir);
  }
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--dump") == 0)
    return dump_file(argv[2]);
  if (!setup())
    return 1;
  if (argc == 2 && strcmp(argv[1], "--heavy") == 0) {
    RUN(test_heavy_validation_memory_stays_small);
  } else {
    RUN(test_design_document_packages_validate_clean);
    RUN(test_design_document_package_counts_and_warnings);
    RUN(test_hostile_corpus_rejected_with_precise_first_issue);
    RUN(test_entity_ids_are_reported_on_entity_issues);
    RUN(test_transaction_ids_unique_in_any_order_across_sorted_runs);
    RUN(test_unwritable_id_run_directory_fails_validation);
    RUN(test_refused_archive_reports_every_problem);
    RUN(test_overlap_bomb_refused_before_anything_is_inflated);
    RUN(test_limit_refusals_are_resource_exhausted);
    RUN(test_unknown_entity_fields_are_warned_and_never_stored);
    RUN(test_design_flavour_file_checked_against_its_record);
    RUN(test_writer_package_from_seeded_store_validates_clean);
    RUN(test_progress_reports_the_manifests_counts_as_entities_are_read);
    RUN(test_large_entry_read_ahead_validates_and_reports_damage);
    RUN(test_conflict_preview_under_each_strategy);
    RUN(test_exists_callback_decides_conflicts_and_preview);
    RUN(test_kinds_the_user_has_none_of_ask_no_exists);
    RUN(test_restore_streams_entities_in_dependency_order);
  }
  teardown();
  return fzip_test_summary();
}
