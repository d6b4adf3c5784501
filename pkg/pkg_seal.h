/*
 * pkg_seal: the FZIPENC1 envelope, a whole FZIP package sealed for its
 * recipients (docs/FORMAT.md "Encrypted packages").
 *
 * The package bytes, names and sizes included, go through libsodium's
 * crypto_secretstream_xchacha20poly1305 in fixed PKGS_CHUNK_SIZE chunks, the
 * last one tagged FINAL, under a random file key.  The header (magic,
 * version, chunk size, one stanza per recipient, the stream header) is the
 * additional data of the first chunk, so a changed header byte fails there;
 * truncation, reordered or flipped chunks and appended bytes are refused by
 * the stream itself.  A stanza wraps the file key with crypto_box_seal to an
 * X25519 public key: a recipient's own key, or one derived from a
 * passphrase with Argon2id (the stanza carries the salt and the Argon2
 * parameters, never the passphrase).  Sealing needs public material only,
 * which is what lets fzipd seal an export without ever holding a secret.
 *
 * The reader hands out plaintext chunk by chunk as each is authenticated;
 * a package is only whole once pkgs_reader_read has returned 0 bytes (the
 * FINAL chunk seen, nothing after it).  pkgs_open_file is the safe way to
 * use it: nothing appears at the output path unless the whole envelope
 * verified.
 */
#ifndef PKG_SEAL_H
#define PKG_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_error.h"

#define PKGS_MAGIC "FZIPENC1"
#define PKGS_MAGIC_LEN 8
#define PKGS_VERSION 1
#define PKGS_CHUNK_SIZE (64 * 1024)   /* plaintext bytes per chunk (all but the last) */
#define PKGS_STANZAS_MAX 16           /* recipients of one package */
#define PKGS_KEY_LEN 32               /* X25519 public and secret keys */
#define PKGS_SALT_LEN 16              /* crypto_pwhash_SALTBYTES */
/* Argon2id parameters the client picks (libsodium's "interactive" pair:
 * about 0.1 s and 64 MiB) and the bounds a reader accepts from a stanza,
 * so a hostile header cannot ask for hours or gigabytes. */
#define PKGS_PWHASH_OPS_DEFAULT 2ULL
#define PKGS_PWHASH_MEM_DEFAULT (64ULL * 1024 * 1024)
#define PKGS_PWHASH_OPS_MAX 10ULL
#define PKGS_PWHASH_MEM_MAX (1024ULL * 1024 * 1024)
/* Longest passphrase accepted (a prompt or FZIP_PASSPHRASE). */
#define PKGS_PASSPHRASE_MAX 1024

typedef enum {
  PKGS_STANZA_X25519 = 1,     /* sealed to a recipient's public key */
  PKGS_STANZA_PASSPHRASE = 2, /* sealed to a key derived from a passphrase */
} pkgs_stanza_type_t;

/* Public material of one recipient: all a sealer needs. */
typedef struct {
  pkgs_stanza_type_t type;
  uint8_t public_key[PKGS_KEY_LEN];
  /* PKGS_STANZA_PASSPHRASE only: how public_key was derived. */
  uint8_t salt[PKGS_SALT_LEN];
  uint64_t opslimit, memlimit;
} pkgs_recipient_t;

/* What opens a package: an X25519 secret key, a passphrase, or both
 * (each stanza is tried with what fits its type).  Borrowed. */
typedef struct {
  bool has_secret_key;
  uint8_t secret_key[PKGS_KEY_LEN];
  const char *passphrase; /* NULL: none */
  /* Stricter Argon2id bounds for this reader (0: PKGS_PWHASH_OPS_MAX,
   * PKGS_PWHASH_MEM_MAX); the fuzz target keeps them small. */
  uint64_t pwhash_ops_max, pwhash_mem_max;
} pkgs_identity_t;

typedef bool (*pkgs_sink_fn)(void *ctx, const void *data, size_t len, fzip_error_t *error);
typedef bool (*pkgs_source_fn)(void *ctx, void *buf, size_t cap, size_t *n, fzip_error_t *error);

/* libsodium's sodium_init; every other call does it too.  False only if
 * the library cannot start (no entropy source). */
bool pkgs_init(fzip_error_t *error);

/* A new X25519 key pair (`fzip key generate`). */
bool pkgs_keypair_generate(uint8_t public_key[PKGS_KEY_LEN], uint8_t secret_key[PKGS_KEY_LEN],
                           fzip_error_t *error);

/* The passphrase recipient a client sends: a random salt, the given
 * Argon2id parameters (0: the defaults) and the public key they derive. */
bool pkgs_passphrase_recipient(pkgs_recipient_t *out, const char *passphrase, uint64_t opslimit,
                               uint64_t memlimit, fzip_error_t *error);

/* A recipient is well formed: known type, Argon2 parameters within the
 * bounds above, a public key a file key can be sealed to (not of low
 * order).  Servers check what a client sent with it. */
bool pkgs_recipient_check(const pkgs_recipient_t *r, fzip_error_t *error);

/* Key text: "fzip-x25519-public:" or "fzip-x25519-secret:" + 64 hex
 * digits (files written by `fzip key generate`; surrounding whitespace and
 * a trailing newline allowed). */
#define PKGS_PUBLIC_PREFIX "fzip-x25519-public:"
#define PKGS_SECRET_PREFIX "fzip-x25519-secret:"
#define PKGS_KEY_TEXT_MAX 128
bool pkgs_key_format(char out[PKGS_KEY_TEXT_MAX], const uint8_t key[PKGS_KEY_LEN], bool secret);
bool pkgs_key_parse(uint8_t key[PKGS_KEY_LEN], const char *text, bool secret, fzip_error_t *error);

/* ---- sealing -------------------------------------------------------- */

typedef struct pkgs_writer pkgs_writer_t;

/* Writes the header to `sink` for 1..PKGS_STANZAS_MAX recipients.  The
 * caller destroys the writer; `sink` is called from _new, _write, _finish. */
pkgs_writer_t *pkgs_writer_new(pkgs_sink_fn sink, void *sink_ctx,
                               const pkgs_recipient_t *recipients, size_t n_recipients,
                               fzip_error_t *error);
bool pkgs_writer_write(pkgs_writer_t *w, const void *data, size_t len, fzip_error_t *error);
/* Seals the last chunk (FINAL).  Without it the envelope is refused as
 * truncated. */
bool pkgs_writer_finish(pkgs_writer_t *w, fzip_error_t *error);
uint64_t pkgs_writer_bytes_out(const pkgs_writer_t *w); /* envelope bytes so far */
void pkgs_writer_destroy(pkgs_writer_t *w);              /* accepts NULL; wipes keys */

/* ---- opening -------------------------------------------------------- */

typedef struct pkgs_reader pkgs_reader_t;

/* Reads and checks the header and unwraps the file key with `id`.  Errors
 * (domain PACKAGE): not an envelope, other version, header out of bounds
 * (INVALID_ARGUMENT / RESOURCE_EXHAUSTED); no stanza opens with `id`
 * (PERMISSION_DENIED, reason PACKAGE_KEY_MISMATCH). */
pkgs_reader_t *pkgs_reader_new(pkgs_source_fn source, void *source_ctx, const pkgs_identity_t *id,
                               fzip_error_t *error);
/* Up to `cap` bytes of authenticated plaintext; *n == 0 once the FINAL
 * chunk was read and the source is at its end.  A chunk that does not
 * authenticate, a missing FINAL chunk or bytes after it are DATA_LOSS. */
bool pkgs_reader_read(size_t *n, pkgs_reader_t *r, void *buf, size_t cap, fzip_error_t *error);
void pkgs_reader_destroy(pkgs_reader_t *r); /* accepts NULL; wipes keys */

/* The first bytes of a file say it is an envelope. */
bool pkgs_is_sealed(const void *head, size_t len);

/* Decrypts `in_path` into `out_path` (a new file, mode 0600): written
 * to "<out_path>.part" and renamed only when the whole envelope verified;
 * on any failure the partial file is removed. */
bool pkgs_open_file(const char *out_path, const char *in_path, const pkgs_identity_t *id,
                    fzip_error_t *error);

#endif
