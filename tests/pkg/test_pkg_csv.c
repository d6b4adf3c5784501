/*
 * Tests for pkg_csv: the exact bytes of cells and rows (RFC 4180 quoting,
 * CRLF, the BOM and header, the formula guard on text but not on amounts,
 * decimal strings kept exactly, ISO 8601 times, names looked up by id).
 */
#include <stdlib.h>
#include <string.h>

#include "fzip_test.h"
#include "pkg_csv.h"

typedef struct {
  char buf[4096];
  size_t len;
} out_t;

static bool sink(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  out_t *o = ctx;
  if (o->len + len >= sizeof o->buf)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "test buffer full");
  memcpy(o->buf + o->len, data, len);
  o->len += len;
  o->buf[o->len] = '\0';
  return true;
}

/* One cell alone, as a string. */
static const char *cell(out_t *o, bool text, const char *s) {
  fzip_error_t err = {0};
  o->len = 0;
  o->buf[0] = '\0';
  if (!pkg_csv_cell(sink, o, true, text, s, strlen(s), &err))
    return "<pkg_csv_cell failed>";
  return o->buf;
}

static void test_quoting_follows_rfc4180(void) {
  out_t o;
  CHECK(strcmp(cell(&o, true, "plain"), "plain") == 0);
  CHECK(strcmp(cell(&o, true, "a,b"), "\"a,b\"") == 0);
  CHECK(strcmp(cell(&o, true, "say \"hi\""), "\"say \"\"hi\"\"\"") == 0);
  CHECK(strcmp(cell(&o, true, "two\r\nlines"), "\"two\r\nlines\"") == 0);
  CHECK(strcmp(cell(&o, true, "lf\nonly"), "\"lf\nonly\"") == 0);
  CHECK(strcmp(cell(&o, true, ""), "") == 0);
  CHECK(strcmp(cell(&o, true, "Caf\xC3\xA9 \xE6\x9D\xB1"), "Caf\xC3\xA9 \xE6\x9D\xB1") == 0);
  /* an invalid UTF-8 byte becomes U+FFFD, the rest is kept */
  CHECK(strcmp(cell(&o, true, "a\xFF" "b"), "a\xEF\xBF\xBD" "b") == 0);
}

static void test_formula_guard_on_text_only(void) {
  out_t o;
  CHECK(strcmp(cell(&o, true, "=1+2"), "'=1+2") == 0);
  CHECK(strcmp(cell(&o, true, "+1"), "'+1") == 0);
  CHECK(strcmp(cell(&o, true, "-12.50"), "'-12.50") == 0); /* text: a memo that looks like one */
  CHECK(strcmp(cell(&o, true, "@SUM(A1)"), "'@SUM(A1)") == 0);
  CHECK(strcmp(cell(&o, true, "\tx"), "'\tx") == 0);
  CHECK(strcmp(cell(&o, true, "\rx"), "\"'\rx\"") == 0);
  CHECK(strcmp(cell(&o, true, "=\"a,b\""), "\"'=\"\"a,b\"\"\"") == 0);
  CHECK(strcmp(cell(&o, true, "a=b"), "a=b") == 0);
  {
    fzip_error_t err = {0};
    o.len = 0; /* a NUL first is no formula: written as it is, unguarded */
    CHECK(pkg_csv_cell(sink, &o, true, true, "\0=", 2, &err));
    CHECK(o.len == 2 && memcmp(o.buf, "\0=", 2) == 0);
  }
  /* amounts stay numbers, exactly as written */
  CHECK(strcmp(cell(&o, false, "-12.50"), "-12.50") == 0);
  CHECK(strcmp(cell(&o, false, "123456789012345678901234567890.000000000001"),
               "123456789012345678901234567890.000000000001") == 0);
  CHECK(strcmp(cell(&o, false, "0"), "0") == 0);
  /* ... unless they are not plain decimals: then guarded text */
  CHECK(strcmp(cell(&o, false, "-1+1"), "'-1+1") == 0);
  CHECK(strcmp(cell(&o, false, "=1"), "'=1") == 0);
  CHECK(strcmp(cell(&o, false, "1e5"), "1e5") == 0);
  CHECK(strcmp(cell(&o, false, "-"), "'-") == 0);
  CHECK(strcmp(cell(&o, false, "1."), "1.") == 0);
}

static void test_rows_header_bom_and_lookups(void) {
  pkg_csv_t *csv = pkg_csv_new();
  fzip_error_t err = {0};
  out_t o = {.len = 0};
  bson_t *acc = BCON_NEW("accountId", "acc-1", "accountName", "=Main, \"EUR\"",
                         "accountType", "checking", "balance", "-0.10", "isActive",
                         BCON_BOOL(true), "createdAt", BCON_INT64(1700000000123));
  bson_t *cat = BCON_NEW("categoryId", "cat-1", "name", "Food", "type", "EXPENSE", "rules", "[",
                         "{", "ruleId", "rule_1", "}", "{", "ruleId", "rule_2", "}", "]");
  bson_t *tx = BCON_NEW("transactionId", "t-1", "accountId", "acc-1", "date",
                        BCON_INT64(-1), "description", "@coffee", "amount", "-3.999999999999",
                        "primaryCategoryId", "cat-1", "categories", "[", "{", "categoryId",
                        "cat-1", "}", "{", "categoryId", "cat-9", "}", "]", "importOrder",
                        BCON_INT32(7));

  CHECK(csv != NULL);
  CHECK(strcmp(pkg_csv_entry(FZIP_KIND_TRANSACTION), "csv/transactions.csv") == 0);
  CHECK(pkg_csv_entry(FZIP_KIND_FILE_MAP) == NULL);
  CHECK(pkg_csv_begin(csv, FZIP_KIND_ACCOUNT, sink, &o, &err));
  CHECK(memcmp(o.buf, "\xEF\xBB\xBF" "accountId,accountName,accountType,", 37) == 0);
  CHECK(strstr(o.buf, ",createdAt,updatedAt\r\n") != NULL);
  o.len = 0;
  CHECK(pkg_csv_row(csv, FZIP_KIND_ACCOUNT, acc, sink, &o, &err));
  CHECK(strcmp(o.buf, "acc-1,\"'=Main, \"\"EUR\"\"\",checking,,,-0.10,true,,,,,"
                      "2023-11-14T22:13:20.123Z,\r\n") == 0);
  o.len = 0;
  CHECK(pkg_csv_row(csv, FZIP_KIND_CATEGORY, cat, sink, &o, &err));
  CHECK(strcmp(o.buf, "cat-1,Food,EXPENSE,,,,,,2,,\r\n") == 0);
  o.len = 0;
  CHECK(pkg_csv_row(csv, FZIP_KIND_TRANSACTION, tx, sink, &o, &err));
  CHECK(strcmp(o.buf, "t-1,1969-12-31T23:59:59.999Z,-1,acc-1,\"'=Main, \"\"EUR\"\"\","
                      "'@coffee,-3.999999999999,,,,,,,,cat-1,Food,cat-1;cat-9,,7,,\r\n") == 0);
  bson_destroy(acc);
  bson_destroy(cat);
  bson_destroy(tx);
  pkg_csv_destroy(csv);
  pkg_csv_destroy(NULL);
}

int main(void) {
  RUN(test_quoting_follows_rfc4180);
  RUN(test_formula_guard_on_text_only);
  RUN(test_rows_header_bom_and_lookups);
  return fzip_test_summary();
}
