/*
 * Tests for pkg_spool, the import's spool of the entities its validation
 * read: documents come back per kind, in order and byte for byte, from
 * any kind and more than once; the order of kinds and the end of writing
 * are enforced; a document over the cap and an unwritable directory are
 * errors; nothing is left in the temporary directory.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fzip_test.h"
#include "fzip_test_bson.h"
#include "pkg_spool.h"

#define DOCS_PER_KIND 3000 /* several times the stdio buffer in all */

static char tmp_dir[256];

/* Document n of kind k: an id, the numbers, and a memo whose length
 * varies so that documents straddle the buffer at many offsets. */
static void doc_of(bson_t *doc, int k, unsigned n) {
  fzip_test_numbered_doc(doc, k, n, (n * 37u + (unsigned)k) % 599);
}

static bool same_bytes(const bson_t *a, const bson_t *b) {
  return a->len == b->len && memcmp(bson_get_data(a), bson_get_data(b), a->len) == 0;
}

/* Reads kind k back and compares each document with doc_of. */
static bool reads_back(pkg_spool_t *s, int k, unsigned n, fzip_error_t *err) {
  const bson_t *got;
  unsigned i = 0;
  fzip_error_clear(err); /* an earlier refusal the test wanted */
  if (!pkg_spool_rewind(s, (fzip_kind_t)k, err))
    return false;
  while (pkg_spool_next(s, &got, err)) {
    bson_t want;
    doc_of(&want, k, i);
    bool same = same_bytes(got, &want);
    bson_destroy(&want);
    if (!same || ++i > n)
      return false;
  }
  return !fzip_error_is_set(err) && i == n;
}

static void test_documents_come_back_per_kind_in_order_from_any_kind(void) {
  fzip_error_t err = {0};
  pkg_spool_t *s = NULL;
  bool ok = true;

  CHECK_OK(pkg_spool_new(&s, tmp_dir, &err), err);
  /* Kinds 0, 1 and 4 hold documents; 2 and 3 none. */
  static const int kinds[] = {0, 1, 4};
  for (size_t j = 0; ok && j < sizeof kinds / sizeof kinds[0]; j++) {
    for (unsigned n = 0; ok && n < DOCS_PER_KIND; n++) {
      bson_t d;
      doc_of(&d, kinds[j], n);
      ok = pkg_spool_put(s, (fzip_kind_t)kinds[j], &d, &err);
      bson_destroy(&d);
    }
  }
  if (!ok)
    pkg_spool_destroy(s);
  CHECK_OK(ok, err);
  ok = pkg_spool_count(s, FZIP_KIND_ACCOUNT) == DOCS_PER_KIND &&
       pkg_spool_count(s, (fzip_kind_t)2) == 0 &&
       /* out of order, and one kind twice */
       reads_back(s, 4, DOCS_PER_KIND, &err) && reads_back(s, 0, DOCS_PER_KIND, &err) &&
       reads_back(s, 2, 0, &err) && reads_back(s, 1, DOCS_PER_KIND, &err) &&
       reads_back(s, 4, DOCS_PER_KIND, &err);
  pkg_spool_destroy(s);
  CHECK(ok);
}

static void test_a_lower_kind_and_a_put_after_reading_are_refused(void) {
  fzip_error_t err = {0};
  pkg_spool_t *s = NULL;
  bson_t d;

  doc_of(&d, 0, 1);
  CHECK_OK(pkg_spool_new(&s, tmp_dir, &err), err);
  bool ok = pkg_spool_put(s, (fzip_kind_t)2, &d, &err) &&
            !pkg_spool_put(s, (fzip_kind_t)1, &d, &err) &&
            err.code == FZIP_ERR_INVALID_ARGUMENT && pkg_spool_count(s, (fzip_kind_t)1) == 0 &&
            pkg_spool_rewind(s, (fzip_kind_t)2, &err) &&
            !pkg_spool_put(s, (fzip_kind_t)3, &d, &err) && err.code == FZIP_ERR_INVALID_ARGUMENT &&
            reads_back(s, 3, 0, &err);
  bson_destroy(&d);
  pkg_spool_destroy(s);
  CHECK(ok);
}

static void test_a_document_over_the_cap_is_refused_and_not_written(void) {
  fzip_error_t err = {0};
  pkg_spool_t *s = NULL;
  bson_t big, small;
  size_t len = PKG_SPOOL_DOC_MAX;
  char *text = malloc(len);

  CHECK(text != NULL);
  memset(text, 'x', len - 1);
  text[len - 1] = '\0';
  bson_init(&big);
  bool ok = bson_append_utf8(&big, "memo", -1, text, (int)(len - 1));
  free(text);
  doc_of(&small, 1, 0);
  CHECK_OK(pkg_spool_new(&s, tmp_dir, &err), err);
  ok = ok && big.len > PKG_SPOOL_DOC_MAX && !pkg_spool_put(s, (fzip_kind_t)1, &big, &err) &&
       err.code == FZIP_ERR_RESOURCE_EXHAUSTED && pkg_spool_count(s, (fzip_kind_t)1) == 0 &&
       pkg_spool_put(s, (fzip_kind_t)1, &small, &err) && pkg_spool_count(s, (fzip_kind_t)1) == 1 &&
       reads_back(s, 1, 1, &err);
  bson_destroy(&big);
  bson_destroy(&small);
  pkg_spool_destroy(s);
  CHECK(ok);
}

static void test_unwritable_temp_dir_is_an_error_naming_it(void) {
  static const char missing[] = "/nonexistent/fzip-spool-test";
  fzip_error_t err = {0};
  pkg_spool_t *s = NULL;

  CHECK_FAILS(pkg_spool_new(&s, missing, &err), err, FZIP_ERR_INTERNAL);
  CHECK(s == NULL && err.domain == FZIP_DOMAIN_SYS && strstr(err.message, missing) != NULL);
}

int main(void) {
  const char *base = getenv("TMPDIR");
  snprintf(tmp_dir, sizeof tmp_dir, "%s/fzip-spool-test-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmp_dir)) {
    perror("mkdtemp");
    return 1;
  }
  RUN(test_documents_come_back_per_kind_in_order_from_any_kind);
  RUN(test_a_lower_kind_and_a_put_after_reading_are_refused);
  RUN(test_a_document_over_the_cap_is_refused_and_not_written);
  RUN(test_unwritable_temp_dir_is_an_error_naming_it);
  /* The spool's file is unlinked as it is made: the directory is empty,
   * and rmdir says so. */
  if (rmdir(tmp_dir) != 0) {
    fprintf(stderr, "FAIL %s is not empty: a temporary file was left behind\n", tmp_dir);
    return 1;
  }
  return fzip_test_summary();
}
