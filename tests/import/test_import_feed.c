/*
 * Tests for import_feed, the hand-off from the import's validation to a
 * restore running beside it: documents cross threads per kind, in order
 * and byte for byte (one larger than a chunk too); a writer ahead of its
 * reader waits with a bounded number of bytes in flight; ready says
 * whether the reader would wait; a halt stops a
 * waiting or a reading reader with ABORTED; an abandon releases a waiting
 * writer and drops what follows; a lower kind or a put after the end is
 * refused.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fzip_test.h"
#include "fzip_test_bson.h"
#include "fzip_util.h"
#include "import_feed.h"

#define DOCS_PER_KIND 4000 /* several chunks per kind */
#define BIG_DOC (IMPORT_FEED_CHUNK + 4096) /* bytes of the one document over a chunk */

/* Document n of kind k: an id, the numbers, and a memo whose length
 * varies so that documents end a chunk at many offsets; document 7 of
 * kind 3 is larger than a chunk. */
static void doc_of(bson_t *doc, int k, unsigned n) {
  fzip_test_numbered_doc(doc, k, n,
                         k == 3 && n == 7 ? BIG_DOC - 100 : (n * 37u + (unsigned)k) % 600);
}

/* Kinds 0, 1, 3 and 5 have documents; 2 and 4 none. */
static unsigned docs_of_kind(int k) { return k == 2 || k == 4 ? 0 : DOCS_PER_KIND; }

typedef struct {
  import_feed_t *feed;
  atomic_uint_fast64_t bytes_put; /* the writer's progress */
  bool ok;
  fzip_error_t err;
} side_t;

static void *write_all(void *arg) {
  side_t *w = arg;
  w->ok = true;
  for (int k = 0; k < FZIP_KIND_COUNT && w->ok; k++) {
    for (unsigned n = 0; n < docs_of_kind(k) && w->ok; n++) {
      bson_t doc;
      doc_of(&doc, k, n);
      w->ok = import_feed_put(w->feed, (fzip_kind_t)k, &doc, &w->err);
      w->bytes_put += doc.len;
      bson_destroy(&doc);
    }
  }
  if (w->ok)
    w->ok = import_feed_close(w->feed, &w->err);
  else
    import_feed_halt(w->feed);
  return NULL;
}

/* Reads every kind, in order, comparing each document with doc_of. */
static bool read_all(import_feed_t *f, fzip_error_t *err) {
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    const bson_t *got;
    unsigned i = 0;
    while (import_feed_next(f, (fzip_kind_t)k, &got, err)) {
      bson_t want;
      doc_of(&want, k, i);
      bool same = got->len == want.len &&
                  memcmp(bson_get_data(got), bson_get_data(&want), want.len) == 0;
      bson_destroy(&want);
      if (!same || ++i > docs_of_kind(k))
        return false;
    }
    if (fzip_error_is_set(err) || i != docs_of_kind(k))
      return false;
  }
  return true;
}

static void test_documents_cross_threads_per_kind_in_order_byte_for_byte(void) {
  fzip_error_t err = {0};
  side_t w = {0};
  pthread_t t;

  CHECK_OK(import_feed_new(&w.feed, NULL, NULL, &err), err);
  CHECK(pthread_create(&t, NULL, write_all, &w) == 0);
  CHECK(read_all(w.feed, &err));
  pthread_join(t, NULL);
  CHECK(w.ok);
  import_feed_destroy(w.feed);
}

static void test_a_writer_ahead_waits_with_bounded_bytes_in_flight(void) {
  fzip_error_t err = {0};
  side_t w = {0};
  pthread_t t;
  uint64_t before;

  CHECK_OK(import_feed_new(&w.feed, NULL, NULL, &err), err);
  CHECK(pthread_create(&t, NULL, write_all, &w) == 0);
  /* Nothing is read: whatever the writer managed meanwhile, it cannot
   * have gone past the published chunks plus the one it fills (and the
   * document that did not fit). */
  fzip_sleep_ms(200);
  before = w.bytes_put;
  CHECK(before > 0);
  CHECK(before <= (IMPORT_FEED_CHUNKS + 1) * (uint64_t)IMPORT_FEED_CHUNK + 1024);
  CHECK(read_all(w.feed, &err)); /* and it goes on once read */
  pthread_join(t, NULL);
  CHECK(w.ok);
  import_feed_destroy(w.feed);
}

typedef struct {
  import_feed_t *feed;
  bool got_end;
  fzip_error_t err;
} reader_t;

static void *read_kind_0(void *arg) {
  reader_t *rd = arg;
  const bson_t *doc;
  while (import_feed_next(rd->feed, (fzip_kind_t)0, &doc, &rd->err))
    ;
  rd->got_end = true;
  return NULL;
}

static void test_a_halt_stops_a_waiting_reader_and_one_with_documents_left(void) {
  fzip_error_t err = {0};
  reader_t rd = {0};
  import_feed_t *f = NULL;
  const bson_t *got;
  pthread_t t;
  bson_t doc;

  /* A reader waiting for documents. */
  CHECK_OK(import_feed_new(&f, NULL, NULL, &err), err);
  rd.feed = f;
  CHECK(pthread_create(&t, NULL, read_kind_0, &rd) == 0);
  CHECK(!import_feed_halted(f, &err) && !fzip_error_is_set(&err));
  import_feed_halt(f);
  pthread_join(t, NULL);
  CHECK(rd.got_end && rd.err.code == FZIP_ERR_ABORTED);
  CHECK(import_feed_halted(f, &err) && err.code == FZIP_ERR_ABORTED);
  import_feed_destroy(f);

  /* Closed with chunks unread (fewer than fill it: nobody reads while
   * this thread puts), then halted: the reader stops at the chunk it
   * holds. */
  CHECK_OK(import_feed_new(&f, NULL, NULL, &err), err);
  for (unsigned n = 0, bytes = 0; bytes < (IMPORT_FEED_CHUNKS - 1) * IMPORT_FEED_CHUNK; n++) {
    doc_of(&doc, 0, n);
    CHECK_OK(import_feed_put(f, (fzip_kind_t)0, &doc, &err), err);
    bytes += doc.len;
    bson_destroy(&doc);
  }
  CHECK_OK(import_feed_close(f, &err), err);
  CHECK_OK(import_feed_next(f, (fzip_kind_t)0, &got, &err), err);
  import_feed_halt(f);
  while (import_feed_next(f, (fzip_kind_t)0, &got, &err))
    ;
  CHECK(err.code == FZIP_ERR_ABORTED);
  import_feed_destroy(f);
}

static void test_an_abandon_releases_a_waiting_writer_and_drops_what_follows(void) {
  fzip_error_t err = {0};
  side_t w = {0};
  pthread_t t;

  CHECK_OK(import_feed_new(&w.feed, NULL, NULL, &err), err);
  CHECK(!import_feed_abandoned(w.feed));
  CHECK(pthread_create(&t, NULL, write_all, &w) == 0);
  fzip_sleep_ms(100); /* the writer fills the feed and waits (or is about to) */
  import_feed_abandon(w.feed);
  pthread_join(t, NULL); /* returns: every put after the abandon drops its document */
  CHECK(import_feed_abandoned(w.feed)); /* what a writer with better to do looks at */
  CHECK(w.ok);
  CHECK(w.bytes_put > (IMPORT_FEED_CHUNKS + 1) * (uint64_t)IMPORT_FEED_CHUNK);
  import_feed_destroy(w.feed);
}

static void test_ready_says_whether_the_next_call_would_wait(void) {
  fzip_error_t err = {0};
  import_feed_t *f = NULL;
  const bson_t *got;
  bson_t doc;

  CHECK_OK(import_feed_new(&f, NULL, NULL, &err), err);
  CHECK(!import_feed_ready(f));
  doc_of(&doc, 0, 1);
  CHECK_OK(import_feed_put(f, (fzip_kind_t)0, &doc, &err), err);
  CHECK(!import_feed_ready(f)); /* in the chunk being filled: not published */
  CHECK_OK(import_feed_put(f, (fzip_kind_t)1, &doc, &err), err); /* a new kind publishes */
  CHECK(import_feed_ready(f));
  CHECK_OK(import_feed_next(f, (fzip_kind_t)0, &got, &err), err);
  CHECK(!import_feed_ready(f)); /* kind 1's document is still being filled */
  CHECK_OK(import_feed_close(f, &err), err);
  CHECK(import_feed_ready(f));
  CHECK_OK(import_feed_next(f, (fzip_kind_t)1, &got, &err), err);
  CHECK(import_feed_ready(f)); /* the end is there */
  CHECK(!import_feed_next(f, (fzip_kind_t)1, &got, &err) && !fzip_error_is_set(&err));
  import_feed_destroy(f);
  bson_destroy(&doc);
}

static int waits_left;

static bool give_up_on_the_third_call(void *ctx) {
  (void)ctx;
  return --waits_left > 0;
}

static void test_a_waiting_writer_asks_its_wait_function_and_gives_up_when_told(void) {
  fzip_error_t err = {0};
  side_t w = {0};

  waits_left = 3;
  CHECK_OK(import_feed_new(&w.feed, give_up_on_the_third_call, NULL, &err), err);
  write_all(&w); /* this thread: nobody reads */
  CHECK(!w.ok && w.err.code == FZIP_ERR_CANCELLED);
  CHECK(waits_left == 0);
  CHECK(import_feed_halted(w.feed, &err)); /* write_all halted it for its reader */
  import_feed_destroy(w.feed);
}

static void test_a_lower_kind_and_a_put_after_the_end_are_refused(void) {
  fzip_error_t err = {0};
  import_feed_t *f = NULL;
  bson_t doc;

  doc_of(&doc, 0, 1);
  CHECK_OK(import_feed_new(&f, NULL, NULL, &err), err);
  CHECK_OK(import_feed_put(f, (fzip_kind_t)2, &doc, &err), err);
  CHECK_FAILS(import_feed_put(f, (fzip_kind_t)1, &doc, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK_OK(import_feed_close(f, &err), err);
  CHECK_FAILS(import_feed_put(f, (fzip_kind_t)2, &doc, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  import_feed_destroy(f);
  bson_destroy(&doc);
}

int main(void) {
  RUN(test_documents_cross_threads_per_kind_in_order_byte_for_byte);
  RUN(test_a_writer_ahead_waits_with_bounded_bytes_in_flight);
  RUN(test_a_halt_stops_a_waiting_reader_and_one_with_documents_left);
  RUN(test_an_abandon_releases_a_waiting_writer_and_drops_what_follows);
  RUN(test_ready_says_whether_the_next_call_would_wait);
  RUN(test_a_waiting_writer_asks_its_wait_function_and_gives_up_when_told);
  RUN(test_a_lower_kind_and_a_put_after_the_end_are_refused);
  return fzip_test_summary();
}
