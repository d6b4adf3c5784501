/*
 * fzip_test_bson: value equality of BSON documents for C tests that
 * compare what a conversion gave with what it should give.
 *
 *   CHECK(fzip_test_same_doc(got, want));
 *
 * Two documents are the same when they have the same keys, in any order
 * (a mapping may reorder an object's keys; an array's keys are its
 * indexes, so arrays compare element by element), and each key's values
 * have the same BSON type and are equal: strings, int32, int64, doubles
 * (==), booleans, null, and nested documents and arrays recursively.
 * Any other type is never the same (the tests hold none).  The first
 * differing key is printed to stderr.
 *
 *   fzip_test_numbered_doc(&doc, k, n, memo_len);
 *
 * builds document n of kind k for tests that stream many documents and
 * check them back byte for byte: {id "k<k>-<n, 6 digits>", kind, n, memo
 * of memo_len copies of one letter}; the caller picks memo_len so that
 * documents end its buffers at many offsets, and bson_destroy's it.
 */
#ifndef FZIP_TEST_BSON_H
#define FZIP_TEST_BSON_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline bool fzip_test_same_doc(const bson_t *a, const bson_t *b);

static inline bool fzip_test_same_value(const bson_iter_t *a, const bson_iter_t *b) {
  const uint8_t *pa, *pb;
  uint32_t la, lb;
  bson_t da, db;
  if (bson_iter_type(a) != bson_iter_type(b))
    return false;
  switch (bson_iter_type(a)) {
  case BSON_TYPE_DOCUMENT:
    bson_iter_document(a, &la, &pa);
    bson_iter_document(b, &lb, &pb);
    return bson_init_static(&da, pa, la) && bson_init_static(&db, pb, lb) &&
           fzip_test_same_doc(&da, &db);
  case BSON_TYPE_ARRAY:
    bson_iter_array(a, &la, &pa);
    bson_iter_array(b, &lb, &pb);
    return bson_init_static(&da, pa, la) && bson_init_static(&db, pb, lb) &&
           fzip_test_same_doc(&da, &db);
  case BSON_TYPE_UTF8: return strcmp(bson_iter_utf8(a, NULL), bson_iter_utf8(b, NULL)) == 0;
  case BSON_TYPE_INT32: return bson_iter_int32(a) == bson_iter_int32(b);
  case BSON_TYPE_INT64: return bson_iter_int64(a) == bson_iter_int64(b);
  case BSON_TYPE_DOUBLE: return bson_iter_double(a) == bson_iter_double(b);
  case BSON_TYPE_BOOL: return bson_iter_bool(a) == bson_iter_bool(b);
  case BSON_TYPE_NULL: return true;
  default: return false;
  }
}

static inline bool fzip_test_same_doc(const bson_t *a, const bson_t *b) {
  bson_iter_t ia, ib;
  if (bson_count_keys(a) != bson_count_keys(b) || !bson_iter_init(&ia, a))
    return false;
  while (bson_iter_next(&ia)) {
    if (!bson_iter_init_find(&ib, b, bson_iter_key(&ia)) || !fzip_test_same_value(&ia, &ib)) {
      fprintf(stderr, "    field %s differs\n", bson_iter_key(&ia));
      return false;
    }
  }
  return true;
}

static inline void fzip_test_numbered_doc(bson_t *doc, int k, unsigned n, size_t memo_len) {
  char id[32];
  char *memo = malloc(memo_len + 1);
  if (!memo) {
    fprintf(stderr, "fzip_test_numbered_doc: out of memory\n");
    abort();
  }
  snprintf(id, sizeof id, "k%d-%06u", k, n);
  memset(memo, 'a' + (int)(n % 26), memo_len);
  memo[memo_len] = '\0';
  bson_init(doc);
  BSON_APPEND_UTF8(doc, "id", id);
  BSON_APPEND_INT32(doc, "kind", k);
  BSON_APPEND_INT64(doc, "n", n);
  BSON_APPEND_UTF8(doc, "memo", memo);
  free(memo);
}

#endif
