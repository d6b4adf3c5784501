/*
 * Tests for pkg_seal, the FZIPENC1 envelope: round trips for a recipient
 * key and a passphrase at chunk-boundary sizes, and every tampering the
 * format promises to refuse (wrong key or passphrase, a flipped byte in the
 * header and in a chunk, truncation at a chunk boundary and mid-chunk,
 * reordered chunks, appended bytes, a header out of bounds), each through
 * pkgs_open_file, which must leave nothing at the output path.
 *
 *   test_pkg_seal                      the suite
 *   test_pkg_seal --write-corpus DIR   the fuzz seeds of fuzz/fuzz_pkg_seal.c
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fzip_test.h"
#include "pkg_seal.h"

#define CHUNK_OUT (PKGS_CHUNK_SIZE + 17) /* a sealed chunk: plaintext + ABYTES */
#define PLAIN_LEN (3 * PKGS_CHUNK_SIZE + 1000)
#define TEST_OPS 1ULL          /* crypto_pwhash_OPSLIMIT_MIN: keeps the tests fast */
#define TEST_MEM (8ULL * 1024) /* crypto_pwhash_MEMLIMIT_MIN */
#define PATH_LEN 512

typedef struct {
  unsigned char *data;
  size_t len, cap, pos;
} buf_t;

static bool buf_sink(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  buf_t *b = ctx;
  if (len == 0)
    return true;
  if (b->len + len > b->cap) {
    size_t cap = (b->len + len) * 2;
    unsigned char *p = realloc(b->data, cap);
    if (!p)
      return fzip_error_oom(error, "test buffer");
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, len);
  b->len += len;
  return true;
}

/* Odd-sized reads, so that chunks are assembled from several. */
static bool buf_source(void *ctx, void *out, size_t cap, size_t *n, fzip_error_t *error) {
  (void)error;
  buf_t *b = ctx;
  size_t k = b->len - b->pos;
  if (k > 4093)
    k = 4093;
  if (k > cap)
    k = cap;
  memcpy(out, b->data + b->pos, k);
  b->pos += k;
  *n = k;
  return true;
}

static char tmp_dir[PATH_LEN];
static uint8_t key_pk[PKGS_KEY_LEN], key_sk[PKGS_KEY_LEN];
static pkgs_recipient_t recipients[2];
static unsigned char plain[PLAIN_LEN];
static const char *passphrase = "correct horse battery staple";
static size_t header_len; /* of a package sealed to `recipients` */

static bool seal(buf_t *out, const unsigned char *data, size_t len, fzip_error_t *err) {
  pkgs_writer_t *w = pkgs_writer_new(buf_sink, out, recipients, 2, err);
  bool ok = w != NULL;
  /* In uneven pieces, as a package writer hands them out. */
  for (size_t off = 0; ok && off < len; off += 7777)
    ok = pkgs_writer_write(w, data + off, len - off < 7777 ? len - off : 7777, err);
  ok = ok && pkgs_writer_finish(w, err);
  pkgs_writer_destroy(w);
  return ok;
}

/* Opens `b` through the streaming reader into `out`. */
static bool open_mem(buf_t *out, buf_t *b, const pkgs_identity_t *id, fzip_error_t *err) {
  unsigned char chunk[5000];
  b->pos = 0;
  pkgs_reader_t *r = pkgs_reader_new(buf_source, b, id, err);
  bool ok = r != NULL;
  for (size_t n = 1; ok && n > 0;) {
    ok = pkgs_reader_read(&n, r, chunk, sizeof chunk, err) && buf_sink(out, chunk, n, err);
  }
  pkgs_reader_destroy(r);
  return ok;
}

static bool write_file(const char *path, const buf_t *b) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return false;
  bool ok = fwrite(b->data, 1, b->len, f) == b->len;
  return fclose(f) == 0 && ok;
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static pkgs_identity_t key_identity(void) {
  pkgs_identity_t id = {.has_secret_key = true};
  memcpy(id.secret_key, key_sk, PKGS_KEY_LEN);
  return id;
}

static void test_round_trip_with_key_and_passphrase_at_chunk_boundaries(void) {
  static const size_t sizes[] = {0, 1, PKGS_CHUNK_SIZE - 1, PKGS_CHUNK_SIZE, PKGS_CHUNK_SIZE + 1,
                                 2 * PKGS_CHUNK_SIZE, PLAIN_LEN};
  fzip_error_t err = {0};
  pkgs_identity_t by_key = key_identity();
  pkgs_identity_t by_pass = {.passphrase = passphrase};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    buf_t sealed = {0}, a = {0}, b = {0};
    bool ok = seal(&sealed, plain, sizes[i], &err) && open_mem(&a, &sealed, &by_key, &err) &&
              open_mem(&b, &sealed, &by_pass, &err);
    if (!ok)
      fprintf(stderr, "  size %zu: %s\n", sizes[i], err.message);
    CHECK(ok);
    CHECK(a.len == sizes[i] && b.len == sizes[i]);
    CHECK(sizes[i] == 0 ||
          (memcmp(a.data, plain, sizes[i]) == 0 && memcmp(b.data, plain, sizes[i]) == 0));
    /* chunks of PKGS_CHUNK_SIZE, the last (FINAL) 1..PKGS_CHUNK_SIZE, or
     * one empty FINAL chunk for an empty package */
    size_t chunks = sizes[i] == 0 ? 1 : (sizes[i] + PKGS_CHUNK_SIZE - 1) / PKGS_CHUNK_SIZE;
    CHECK(sealed.len == header_len + sizes[i] + chunks * 17);
    CHECK(pkgs_is_sealed(sealed.data, sealed.len));
    free(sealed.data);
    free(a.data);
    free(b.data);
  }
}

static void test_two_seals_of_the_same_bytes_differ(void) {
  fzip_error_t err = {0};
  buf_t a = {0}, b = {0};
  CHECK_OK(seal(&a, plain, 100, &err) && seal(&b, plain, 100, &err), err);
  CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) != 0); /* random file key */
  free(a.data);
  free(b.data);
}

/* Writes `b` to a file, opens it with `id` and expects `code` with no
 * output file (nor its .part) left behind. */
static bool refused(const buf_t *b, const pkgs_identity_t *id, fzip_code_t code, const char *what) {
  char in[PATH_LEN], out[PATH_LEN], part[PATH_LEN + 8];
  fzip_error_t err = {0};
  snprintf(in, sizeof in, "%s/in.fzipenc", tmp_dir);
  snprintf(out, sizeof out, "%s/out.fzip", tmp_dir);
  snprintf(part, sizeof part, "%s.part", out);
  unlink(out);
  if (!write_file(in, b))
    return false;
  bool opened = pkgs_open_file(out, in, id, &err);
  bool ok = !opened && err.code == (uint32_t)code && !exists(out) && !exists(part);
  if (!ok)
    fprintf(stderr, "  %s: opened=%d code=%s (want %s) out=%d part=%d: %s\n", what, opened,
            fzip_code_name((fzip_code_t)err.code), fzip_code_name(code), exists(out), exists(part),
            err.message);
  return ok;
}

static void sealed_copy(buf_t *out, const buf_t *src) {
  out->data = malloc(src->len + 64);
  memcpy(out->data, src->data, src->len);
  out->len = src->len;
  out->cap = src->len + 64;
}

static void test_open_file_writes_the_plaintext_only_when_whole(void) {
  char in[PATH_LEN], out[PATH_LEN];
  fzip_error_t err = {0};
  buf_t sealed = {0};
  pkgs_identity_t id = key_identity();
  CHECK_OK(seal(&sealed, plain, PLAIN_LEN, &err), err);
  snprintf(in, sizeof in, "%s/good.fzipenc", tmp_dir);
  snprintf(out, sizeof out, "%s/good.fzip", tmp_dir);
  CHECK(write_file(in, &sealed));
  CHECK_OK(pkgs_open_file(out, in, &id, &err), err);
  FILE *f = fopen(out, "rb");
  CHECK(f);
  unsigned char *back = malloc(PLAIN_LEN + 1);
  size_t n = fread(back, 1, PLAIN_LEN + 1, f);
  fclose(f);
  CHECK(n == PLAIN_LEN && memcmp(back, plain, PLAIN_LEN) == 0);
  free(back);
  /* an existing output is not overwritten through .part games */
  CHECK_FAILS(pkgs_open_file(out, in, &id, &err), err, FZIP_ERR_INTERNAL);
  free(sealed.data);
}

static void test_wrong_key_or_passphrase_is_refused(void) {
  fzip_error_t err = {0};
  buf_t sealed = {0};
  uint8_t other_pk[PKGS_KEY_LEN];
  pkgs_identity_t wrong_key = {.has_secret_key = true};
  pkgs_identity_t wrong_pass = {.passphrase = "correct horse battery stapler"};
  pkgs_identity_t nothing = {0};
  CHECK_OK(pkgs_keypair_generate(other_pk, wrong_key.secret_key, &err), err);
  CHECK_OK(seal(&sealed, plain, PLAIN_LEN, &err), err);
  CHECK(refused(&sealed, &wrong_key, FZIP_ERR_PERMISSION_DENIED, "wrong key"));
  CHECK(refused(&sealed, &wrong_pass, FZIP_ERR_PERMISSION_DENIED, "wrong passphrase"));
  CHECK(refused(&sealed, &nothing, FZIP_ERR_PERMISSION_DENIED, "no identity"));
  free(sealed.data);
}

static void test_tampered_envelopes_are_refused_before_anything_is_written(void) {
  fzip_error_t err = {0};
  buf_t sealed = {0}, t = {0};
  pkgs_identity_t id = key_identity();
  pkgs_identity_t by_pass = {.passphrase = passphrase};
  CHECK_OK(seal(&sealed, plain, PLAIN_LEN, &err), err);
  size_t chunk1 = header_len + CHUNK_OUT, chunk2 = header_len + 2 * CHUNK_OUT;

  /* header: the passphrase stanza's salt, read (not used) by the key holder */
  sealed_copy(&t, &sealed);
  t.data[14 + 81 + 1] ^= 1;
  CHECK(refused(&t, &id, FZIP_ERR_DATA_LOSS, "flipped salt"));
  CHECK(refused(&t, &by_pass, FZIP_ERR_PERMISSION_DENIED, "flipped salt, by passphrase"));
  free(t.data);
  /* header: the stream header, the last header byte */
  sealed_copy(&t, &sealed);
  t.data[header_len - 1] ^= 0x80;
  CHECK(refused(&t, &id, FZIP_ERR_DATA_LOSS, "flipped stream header"));
  free(t.data);
  /* header: the sealed file key of the key holder's stanza */
  sealed_copy(&t, &sealed);
  t.data[14 + 1 + 40] ^= 4;
  CHECK(refused(&t, &id, FZIP_ERR_PERMISSION_DENIED, "flipped sealed key"));
  free(t.data);
  /* header: version and magic */
  sealed_copy(&t, &sealed);
  t.data[PKGS_MAGIC_LEN] = PKGS_VERSION + 1;
  CHECK(refused(&t, &id, FZIP_ERR_FAILED_PRECONDITION, "version 2"));
  t.data[0] = 'P';
  CHECK(refused(&t, &id, FZIP_ERR_INVALID_ARGUMENT, "not an envelope"));
  free(t.data);
  /* a chunk in the middle (the first two are authentic: still nothing out) */
  sealed_copy(&t, &sealed);
  t.data[chunk2 + 500] ^= 1;
  CHECK(refused(&t, &id, FZIP_ERR_DATA_LOSS, "flipped chunk 2"));
  free(t.data);
  /* truncation at a chunk boundary (no FINAL chunk) and mid-chunk */
  sealed_copy(&t, &sealed);
  t.len = chunk2;
  CHECK(refused(&t, &id, FZIP_ERR_DATA_LOSS, "cut at a chunk boundary"));
  t.len = header_len + 3 * CHUNK_OUT;
  CHECK(refused(&t, &id, FZIP_ERR_DATA_LOSS, "cut before the final chunk"));
  t.len = chunk1 + 1000;
  CHECK(refused(&t, &id, FZIP_ERR_DATA_LOSS, "cut mid-chunk"));
  t.len = sealed.len - 1;
  CHECK(refused(&t, &id, FZIP_ERR_DATA_LOSS, "last byte cut"));
  t.len = header_len - 3;
  CHECK(refused(&t, &id, FZIP_ERR_DATA_LOSS, "cut in the header"));
  free(t.data);
  /* chunks 1 and 2 swapped */
  sealed_copy(&t, &sealed);
  memcpy(t.data + chunk1, sealed.data + chunk2, CHUNK_OUT);
  memcpy(t.data + chunk2, sealed.data + chunk1, CHUNK_OUT);
  CHECK(refused(&t, &id, FZIP_ERR_DATA_LOSS, "reordered chunks"));
  free(t.data);
  /* bytes after the FINAL chunk */
  sealed_copy(&t, &sealed);
  t.data[t.len++] = 0;
  CHECK(refused(&t, &id, FZIP_ERR_DATA_LOSS, "appended byte"));
  free(t.data);
  free(sealed.data);
}

static void test_headers_out_of_bounds_are_refused(void) {
  fzip_error_t err = {0};
  buf_t sealed = {0}, t = {0};
  pkgs_identity_t by_pass = {.passphrase = passphrase};
  pkgs_identity_t id = key_identity();
  CHECK_OK(seal(&sealed, plain, 10, &err), err);
  sealed_copy(&t, &sealed);
  t.data[PKGS_MAGIC_LEN + 1] = PKGS_STANZAS_MAX + 1;
  CHECK(refused(&t, &id, FZIP_ERR_RESOURCE_EXHAUSTED, "too many stanzas"));
  t.data[PKGS_MAGIC_LEN + 1] = 0;
  CHECK(refused(&t, &id, FZIP_ERR_RESOURCE_EXHAUSTED, "no stanza"));
  free(t.data);
  /* an Argon2 memory limit past PKGS_PWHASH_MEM_MAX (u64 at salt + 8) */
  sealed_copy(&t, &sealed);
  t.data[14 + 81 + 1 + PKGS_SALT_LEN + 8 + 7] = 0x7f;
  CHECK(refused(&t, &by_pass, FZIP_ERR_RESOURCE_EXHAUSTED, "huge memlimit"));
  free(t.data);
  /* an unknown stanza type and another chunk size */
  sealed_copy(&t, &sealed);
  t.data[14] = 9;
  CHECK(refused(&t, &id, FZIP_ERR_INVALID_ARGUMENT, "stanza type 9"));
  t.data[14] = PKGS_STANZA_X25519;
  t.data[PKGS_MAGIC_LEN + 2] = 1;
  CHECK(refused(&t, &id, FZIP_ERR_INVALID_ARGUMENT, "chunk size"));
  free(t.data);
  free(sealed.data);
  /* the writer refuses recipients out of bounds too */
  pkgs_recipient_t bad = recipients[1];
  bad.opslimit = PKGS_PWHASH_OPS_MAX + 1;
  CHECK(pkgs_writer_new(buf_sink, &t, &bad, 1, &err) == NULL);
  CHECK(err.code == FZIP_ERR_RESOURCE_EXHAUSTED);
  CHECK(pkgs_writer_new(buf_sink, &t, recipients, 0, &err) == NULL);
  /* a low-order public key would make a stanza nobody can open */
  bad = recipients[0];
  memset(bad.public_key, 0, sizeof bad.public_key);
  CHECK_FAILS(pkgs_recipient_check(&bad, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  buf_t none = {0};
  CHECK(pkgs_writer_new(buf_sink, &none, &bad, 1, &err) == NULL);
  CHECK(err.code == FZIP_ERR_INVALID_ARGUMENT && none.len == 0);
}

static void test_key_text_round_trips_and_refuses_the_other_kind(void) {
  char text[PKGS_KEY_TEXT_MAX];
  uint8_t back[PKGS_KEY_LEN];
  fzip_error_t err = {0};
  CHECK(pkgs_key_format(text, key_sk, true));
  CHECK(strncmp(text, PKGS_SECRET_PREFIX, strlen(PKGS_SECRET_PREFIX)) == 0);
  CHECK_OK(pkgs_key_parse(back, text, true, &err), err);
  CHECK(memcmp(back, key_sk, PKGS_KEY_LEN) == 0);
  CHECK_FAILS(pkgs_key_parse(back, text, false, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK(pkgs_key_format(text, key_pk, false));
  CHECK_OK(pkgs_key_parse(back, text, false, &err), err);
  CHECK(memcmp(back, key_pk, PKGS_KEY_LEN) == 0);
  text[strlen(text) - 3] = 'x';
  CHECK_FAILS(pkgs_key_parse(back, text, false, &err), err, FZIP_ERR_INVALID_ARGUMENT);
}

static void test_default_passphrase_parameters_derive_the_same_key(void) {
  pkgs_recipient_t r;
  fzip_error_t err = {0};
  buf_t sealed = {0}, back = {0};
  pkgs_identity_t by_pass = {.passphrase = passphrase};
  CHECK_OK(pkgs_passphrase_recipient(&r, passphrase, 0, 0, &err), err);
  CHECK(r.opslimit == PKGS_PWHASH_OPS_DEFAULT && r.memlimit == PKGS_PWHASH_MEM_DEFAULT);
  pkgs_writer_t *w = pkgs_writer_new(buf_sink, &sealed, &r, 1, &err);
  CHECK(w);
  bool ok = pkgs_writer_write(w, "abc", 3, &err) && pkgs_writer_finish(w, &err);
  pkgs_writer_destroy(w);
  CHECK_OK(ok, err);
  CHECK_OK(open_mem(&back, &sealed, &by_pass, &err), err);
  CHECK(back.len == 3 && memcmp(back.data, "abc", 3) == 0);
  free(sealed.data);
  free(back.data);
}

static void test_reader_bounds_refuse_costly_passphrase_stanzas(void) {
  fzip_error_t err = {0};
  buf_t sealed = {0}, back = {0};
  pkgs_identity_t by_pass = {.passphrase = passphrase, .pwhash_mem_max = TEST_MEM - 1};
  CHECK_OK(seal(&sealed, plain, 10, &err), err);
  CHECK(!open_mem(&back, &sealed, &by_pass, &err));
  CHECK(err.code == FZIP_ERR_RESOURCE_EXHAUSTED && back.len == 0);
  by_pass.pwhash_mem_max = TEST_MEM;
  CHECK_OK(open_mem(&back, &sealed, &by_pass, &err), err);
  free(sealed.data);
  free(back.data);
}

/* The fuzz seeds: sealed to fuzz_pkg_seal.c's key (bytes 1..32) and its
 * passphrase "fuzz" at the minimum Argon2id limits. */
static int write_corpus(const char *dir) {
  static const struct {
    const char *name;
    size_t len;
    bool key, pass;
  } seeds[] = {{"key_small", 100, true, false},
               {"pass_small", 100, false, true},
               {"both_empty", 0, true, true},
               {"key_two_chunks", PKGS_CHUNK_SIZE + 7, true, false}};
  uint8_t sk[PKGS_KEY_LEN];
  fzip_error_t err = {0};
  for (int i = 0; i < PKGS_KEY_LEN; i++)
    sk[i] = (uint8_t)(i + 1);
  for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
    pkgs_recipient_t rs[2];
    size_t n = 0;
    buf_t out = {0};
    char path[PATH_LEN];
    if (seeds[i].key) {
      memset(&rs[n], 0, sizeof rs[n]);
      rs[n].type = PKGS_STANZA_X25519;
      crypto_scalarmult_base(rs[n++].public_key, sk);
    }
    if (seeds[i].pass && !pkgs_passphrase_recipient(&rs[n++], "fuzz", TEST_OPS, TEST_MEM, &err))
      return 1;
    pkgs_writer_t *w = pkgs_writer_new(buf_sink, &out, rs, n, &err);
    bool ok = w && pkgs_writer_write(w, plain, seeds[i].len, &err) &&
              pkgs_writer_finish(w, &err);
    pkgs_writer_destroy(w);
    snprintf(path, sizeof path, "%s/%s.fzipenc", dir, seeds[i].name);
    if (!ok || !write_file(path, &out)) {
      fprintf(stderr, "%s: %s\n", path, err.message);
      return 1;
    }
    free(out.data);
  }
  return 0;
}

int main(int argc, char **argv) {
  fzip_error_t err = {0};
  for (size_t i = 0; i < PLAIN_LEN; i++)
    plain[i] = (unsigned char)(i * 7 + i / 251);
  if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
    return write_corpus(argv[2]);
  snprintf(tmp_dir, sizeof tmp_dir, "/tmp/test_pkg_seal.XXXXXX");
  if (!mkdtemp(tmp_dir) || !pkgs_keypair_generate(key_pk, key_sk, &err))
    return 1;
  recipients[0].type = PKGS_STANZA_X25519;
  memcpy(recipients[0].public_key, key_pk, PKGS_KEY_LEN);
  if (!pkgs_passphrase_recipient(&recipients[1], passphrase, TEST_OPS, TEST_MEM, &err)) {
    fprintf(stderr, "%s\n", err.message);
    return 1;
  }
  /* fixed part, key stanza, passphrase stanza, stream header */
  header_len = (PKGS_MAGIC_LEN + 6) + (1 + 80) + (1 + PKGS_SALT_LEN + 16 + 80) + 24;
  RUN(test_round_trip_with_key_and_passphrase_at_chunk_boundaries);
  RUN(test_two_seals_of_the_same_bytes_differ);
  RUN(test_open_file_writes_the_plaintext_only_when_whole);
  RUN(test_wrong_key_or_passphrase_is_refused);
  RUN(test_tampered_envelopes_are_refused_before_anything_is_written);
  RUN(test_headers_out_of_bounds_are_refused);
  RUN(test_key_text_round_trips_and_refuses_the_other_kind);
  RUN(test_default_passphrase_parameters_derive_the_same_key);
  RUN(test_reader_bounds_refuse_costly_passphrase_stanzas);
  char cmd[PATH_LEN + 16];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmp_dir);
  return fzip_test_summary();
}
