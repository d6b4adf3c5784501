/* core/fzip_util: clocks, timed waits on the monotonic clock, UUIDs, SHA-256 (one-shot and
 * incremental, known vectors), bounded string copy, the small-file reader's limits, the scratch
 * directory and its errors. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fzip_test.h"
#include "fzip_util.h"

/* FIPS 180-2 vectors. */
#define SHA256_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA256_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/* 2020-01-01T00:00:00Z: any wall clock this code runs under is later. */
#define SOME_PAST_EPOCH_MS 1577836800000LL
#define UUIDS_COMPARED 64
#define SMALL_FILE_MAX 16
#define TIMED_WAIT_MS 50

static char tmpdir[] = "/tmp/fzip-core-util-XXXXXX";

static void test_wall_clock_is_epoch_milliseconds_and_monotonic_never_goes_back(void) {
  int64_t a = fzip_monotonic_ms();
  int64_t now = fzip_now_ms();
  int64_t b = fzip_monotonic_ms();
  CHECK(now > SOME_PAST_EPOCH_MS);
  CHECK(b >= a);
}

/* A deadline from fzip_monotonic_deadline on a cond from
 * fzip_cond_init_monotonic times out after its interval: were the cond on
 * the wall clock, that deadline (seconds since boot) would be decades past
 * and the wait would return at once. */
static void test_timed_wait_on_the_monotonic_clock_lasts_its_interval(void) {
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cv;
  int rc;

  CHECK(fzip_cond_init_monotonic(&cv) == 0);
  int64_t start = fzip_monotonic_ms();
  struct timespec until = fzip_monotonic_deadline(TIMED_WAIT_MS);
  pthread_mutex_lock(&mu);
  do
    rc = pthread_cond_timedwait(&cv, &mu, &until);
  while (rc == 0); /* spurious wake-ups */
  pthread_mutex_unlock(&mu);
  int64_t took = fzip_monotonic_ms() - start;
  CHECK(rc == ETIMEDOUT);
  CHECK(took >= TIMED_WAIT_MS - 1);
  pthread_cond_destroy(&cv);
}

static void test_uuid_is_version_4_lowercase_with_dashes_and_never_repeats(void) {
  char ids[UUIDS_COMPARED][FZIP_UUID_LEN + 1];
  fzip_error_t err = {0};
  for (int i = 0; i < UUIDS_COMPARED; i++) {
    char *u = ids[i];
    CHECK_OK(fzip_uuid_v4(u, &err), err);
    CHECK(strlen(u) == FZIP_UUID_LEN);
    for (int j = 0; j < FZIP_UUID_LEN; j++) {
      if (j == 8 || j == 13 || j == 18 || j == 23)
        CHECK(u[j] == '-');
      else
        CHECK(strchr("0123456789abcdef", u[j]) != NULL);
    }
    CHECK(u[14] == '4');               /* version */
    CHECK(strchr("89ab", u[19]) != NULL); /* RFC 4122 variant */
    for (int k = 0; k < i; k++)
      CHECK(strcmp(ids[k], u) != 0);
  }
}

static void test_sha256_one_shot_matches_the_standard_vectors(void) {
  char hex[FZIP_SHA256_HEX_LEN + 1];
  fzip_sha256_hex(hex, "", 0);
  CHECK(strcmp(hex, SHA256_EMPTY) == 0);
  fzip_sha256_hex(hex, "abc", 3);
  CHECK(strcmp(hex, SHA256_ABC) == 0);
}

static void test_sha256_in_pieces_equals_one_shot_and_reset_starts_over(void) {
  char hex[FZIP_SHA256_HEX_LEN + 1];
  fzip_sha256_t *h = fzip_sha256_new();
  CHECK(h != NULL);
  fzip_sha256_update(h, "a", 1);
  fzip_sha256_update(h, NULL, 0);
  fzip_sha256_update(h, "bc", 2);
  fzip_sha256_final_hex(h, hex);
  bool pieces_ok = strcmp(hex, SHA256_ABC) == 0;
  fzip_sha256_reset(h);
  fzip_sha256_final_hex(h, hex);
  bool reset_ok = strcmp(hex, SHA256_EMPTY) == 0;
  fzip_sha256_destroy(h);
  fzip_sha256_destroy(NULL);
  CHECK(pieces_ok);
  CHECK(reset_ok);
}

static void test_strndup_copies_at_most_max_bytes_and_passes_null_through(void) {
  char *s = fzip_strndup("abcdef", 3);
  CHECK(s != NULL);
  bool ok = strcmp(s, "abc") == 0;
  free(s);
  CHECK(ok);
  CHECK(fzip_strndup(NULL, 3) == NULL);
}

static bool write_file(const char *path, const char *data, size_t len) {
  FILE *f = fopen(path, "wb");
  bool ok = f && fwrite(data, 1, len, f) == len;
  if (f)
    ok = (fclose(f) == 0) && ok;
  return ok;
}

#define FIXTURE_PATH_MAX (sizeof tmpdir + 16)

/* Writes `len` bytes of `data` (NULL: no file at all) to tmpdir/name and
 * reads it back with the SMALL_FILE_MAX limit; `path` gets the file's path. */
static bool read_fixture(char **buf, size_t *len, char path[FIXTURE_PATH_MAX], const char *name,
                         const char *data, size_t n, fzip_error_t *err) {
  snprintf(path, FIXTURE_PATH_MAX, "%s/%s", tmpdir, name);
  if (data && !write_file(path, data, n))
    return fzip_error_set(err, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "cannot write %s", path);
  return fzip_read_small_file(buf, len, path, SMALL_FILE_MAX, err);
}

static void test_small_file_of_exactly_max_bytes_is_read_whole_and_terminated(void) {
  char path[FIXTURE_PATH_MAX];
  char *buf = NULL;
  size_t len = 0;
  fzip_error_t err = {0};
  CHECK_OK(read_fixture(&buf, &len, path, "exact", "0123456789abcdef", SMALL_FILE_MAX, &err),
           err);
  bool ok = len == SMALL_FILE_MAX && strcmp(buf, "0123456789abcdef") == 0;
  free(buf);
  CHECK(ok);
}

static void test_small_file_one_byte_over_max_is_refused_naming_file_and_limit(void) {
  char path[FIXTURE_PATH_MAX];
  char *buf = NULL;
  fzip_error_t err = {0};
  CHECK_FAILS(read_fixture(&buf, NULL, path, "over", "0123456789abcdefX", SMALL_FILE_MAX + 1,
                           &err),
              err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK(buf == NULL);
  CHECK(err.domain == FZIP_DOMAIN_CONFIG);
  CHECK(strstr(err.message, path) != NULL && strstr(err.message, "16 bytes") != NULL);
}

static void test_missing_small_file_is_invalid_argument_naming_it(void) {
  char path[FIXTURE_PATH_MAX];
  char *buf = NULL;
  fzip_error_t err = {0};
  CHECK_FAILS(read_fixture(&buf, NULL, path, "absent", NULL, 0, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  CHECK(buf == NULL && strstr(err.message, path) != NULL);
}

static void test_empty_small_file_reads_as_an_empty_string(void) {
  char path[FIXTURE_PATH_MAX];
  char *buf = NULL;
  size_t len = 1;
  fzip_error_t err = {0};
  CHECK_OK(read_fixture(&buf, &len, path, "empty", "", 0, &err), err);
  bool ok = len == 0 && buf && buf[0] == '\0';
  free(buf);
  CHECK(ok);
}

static void test_tmp_root_is_dir_then_tmpdir_then_slash_tmp(void) {
  const char *saved = getenv("TMPDIR");
  char *keep = saved ? strdup(saved) : NULL;
  CHECK(strcmp(fzip_tmp_root("/given"), "/given") == 0);
  CHECK(setenv("TMPDIR", "/from-env", 1) == 0);
  CHECK(strcmp(fzip_tmp_root(NULL), "/from-env") == 0);
  CHECK(strcmp(fzip_tmp_root(""), "/from-env") == 0); /* an empty dir is no dir */
  CHECK(setenv("TMPDIR", "", 1) == 0);
  CHECK(strcmp(fzip_tmp_root(NULL), "/tmp") == 0);
  CHECK(unsetenv("TMPDIR") == 0);
  CHECK(strcmp(fzip_tmp_root(NULL), "/tmp") == 0);
  if (keep)
    setenv("TMPDIR", keep, 1);
  free(keep);
}

static void test_tmp_error_says_a_full_disk_is_resource_exhausted_naming_the_dir(void) {
  fzip_error_t err = {0};
  errno = ENOSPC;
  CHECK(!fzip_tmp_error(&err, "uploaded package", "writing", "/scratch"));
  CHECK(err.domain == FZIP_DOMAIN_SYS && err.code == FZIP_ERR_RESOURCE_EXHAUSTED);
  CHECK(strstr(err.message, "uploaded package: writing its temporary file in /scratch: ") ==
        err.message);
  errno = EACCES;
  CHECK(!fzip_tmp_error(&err, "spool", "creating", "/ro"));
  CHECK(err.code == FZIP_ERR_INTERNAL && strstr(err.message, "/ro") != NULL);
  errno = 0;
  CHECK(!fzip_tmp_error(&err, "spool", "reading", "/d"));
  CHECK(strstr(err.message, "short read") != NULL);
}

int main(void) {
  char cmd[sizeof tmpdir + 16];
  int rc;
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  RUN(test_wall_clock_is_epoch_milliseconds_and_monotonic_never_goes_back);
  RUN(test_timed_wait_on_the_monotonic_clock_lasts_its_interval);
  RUN(test_uuid_is_version_4_lowercase_with_dashes_and_never_repeats);
  RUN(test_sha256_one_shot_matches_the_standard_vectors);
  RUN(test_sha256_in_pieces_equals_one_shot_and_reset_starts_over);
  RUN(test_strndup_copies_at_most_max_bytes_and_passes_null_through);
  RUN(test_small_file_of_exactly_max_bytes_is_read_whole_and_terminated);
  RUN(test_small_file_one_byte_over_max_is_refused_naming_file_and_limit);
  RUN(test_missing_small_file_is_invalid_argument_naming_it);
  RUN(test_empty_small_file_reads_as_an_empty_string);
  RUN(test_tmp_root_is_dir_then_tmpdir_then_slash_tmp);
  RUN(test_tmp_error_says_a_full_disk_is_resource_exhausted_naming_the_dir);
  rc = fzip_test_summary();
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmpdir);
  return rc;
}
