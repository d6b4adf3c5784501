/*
 * Fuzz target for the FZIPENC1 envelope reader (pkg_seal): the input is
 * read as an envelope through a source that hands out odd-sized pieces,
 * opened with a fixed X25519 secret key and with a passphrase, to the end
 * or the first refusal.  The seed corpus holds envelopes sealed to that
 * key and to that passphrase (Argon2id at libsodium's minimum limits, so
 * that the fuzzer spends its time in the parser, not in the KDF), so the
 * mutations reach the stream and not only the header checks; they are
 * written by `tests/pkg/test_pkg_seal --write-corpus fuzz/corpus/pkg_seal`.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_source.h"
#include "pkg_seal.h"

#define FUZZ_PIECE 4099 /* bytes per source read: chunks are assembled from several */
#define FUZZ_PASSPHRASE "fuzz"
/* Argon2id is slow and large on purpose: inputs asking for more than
 * this are refused before the KDF runs (pkgs_identity_t's bounds). */
#define FUZZ_PWHASH_OPS_MAX 2
#define FUZZ_PWHASH_MEM_MAX (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The secret key of the corpus's envelopes: 32 bytes 0x01..0x20. */
static void fuzz_identity(pkgs_identity_t *id, bool with_key) {
  memset(id, 0, sizeof *id);
  id->has_secret_key = with_key;
  for (int i = 0; i < PKGS_KEY_LEN; i++)
    id->secret_key[i] = (uint8_t)(i + 1);
  id->passphrase = with_key ? NULL : FUZZ_PASSPHRASE;
  id->pwhash_ops_max = FUZZ_PWHASH_OPS_MAX;
  id->pwhash_mem_max = FUZZ_PWHASH_MEM_MAX;
}

static void open_all(const uint8_t *data, size_t size, bool with_key) {
  static uint8_t out[PKGS_CHUNK_SIZE];
  fuzz_source_t s = {data, size, 0, FUZZ_PIECE};
  pkgs_identity_t id;
  fzip_error_t err = {0};
  fuzz_identity(&id, with_key);
  pkgs_reader_t *r = pkgs_reader_new(fuzz_source_read, &s, &id, &err);
  for (size_t n = 1; r && n > 0;) {
    if (!pkgs_reader_read(&n, r, out, sizeof out, &err))
      break;
  }
  pkgs_reader_destroy(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  open_all(data, size, true);
  open_all(data, size, false);
  return 0;
}
