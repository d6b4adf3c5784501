/*
 * pkg_seal: the FZIPENC1 envelope (see pkg_seal.h and docs/FORMAT.md
 * "Encrypted packages").
 *
 * Layout, integers little-endian:
 *   "FZIPENC1" | u8 version | u8 n_stanzas | u32 chunk_size
 *   n_stanzas x ( u8 type | [passphrase: salt[16] | u64 ops | u64 mem]
 *                 | crypto_box_seal(file key) [80] )
 *   secretstream header [24]
 *   chunks: chunk_size + 17 bytes each, the last (FINAL) 17..chunk_size+17
 *   (empty only when the package is)
 * The header (everything before the first chunk) is the first chunk's
 * additional data.
 */
#include "pkg_seal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIXED_LEN (PKGS_MAGIC_LEN + 1 + 1 + 4)
#define SEALED_KEY_LEN (crypto_box_SEALBYTES + crypto_secretstream_xchacha20poly1305_KEYBYTES)
#define PASS_PARAMS_LEN (PKGS_SALT_LEN + 8 + 8)
#define STANZA_MAX_LEN (1 + PASS_PARAMS_LEN + SEALED_KEY_LEN)
#define STREAM_HEADER_LEN crypto_secretstream_xchacha20poly1305_HEADERBYTES
/* The largest header a reader accepts, by construction of the layout. */
#define HEADER_MAX (FIXED_LEN + PKGS_STANZAS_MAX * STANZA_MAX_LEN + STREAM_HEADER_LEN)
#define CHUNK_OUT_LEN (PKGS_CHUNK_SIZE + crypto_secretstream_xchacha20poly1305_ABYTES)
#define FILE_IO_LEN (64 * 1024)

_Static_assert(PKGS_SALT_LEN == crypto_pwhash_SALTBYTES, "salt length");
_Static_assert(PKGS_KEY_LEN == crypto_box_PUBLICKEYBYTES, "key length");
_Static_assert(PKGS_KEY_LEN == crypto_box_SEEDBYTES, "seed length");

static bool fail(fzip_error_t *error, fzip_code_t code, const char *msg) {
  return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, code, "encrypted package: %s", msg);
}

bool pkgs_init(fzip_error_t *error) {
  if (sodium_init() < 0)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "libsodium did not start");
  return true;
}

/* A zeroed handle, libsodium started: what _new of both handles begin with. */
static void *handle_new(size_t size, const char *what, fzip_error_t *error) {
  void *h = NULL;
  if (!pkgs_init(error))
    return NULL;
  h = calloc(1, size);
  if (!h)
    fzip_error_oom(error, what);
  return h;
}

bool pkgs_keypair_generate(uint8_t public_key[PKGS_KEY_LEN], uint8_t secret_key[PKGS_KEY_LEN],
                           fzip_error_t *error) {
  if (!pkgs_init(error))
    return false;
  crypto_box_keypair(public_key, secret_key);
  return true;
}

/* The X25519 key pair a passphrase gives under a stanza's parameters. */
static bool derive_keypair(uint8_t pk[PKGS_KEY_LEN], uint8_t sk[PKGS_KEY_LEN],
                           const char *passphrase, const uint8_t salt[PKGS_SALT_LEN],
                           uint64_t ops, uint64_t mem, fzip_error_t *error) {
  uint8_t seed[crypto_box_SEEDBYTES];
  if (crypto_pwhash(seed, sizeof seed, passphrase, strlen(passphrase), salt, ops, (size_t)mem,
                    crypto_pwhash_ALG_ARGON2ID13) != 0)
    return fzip_error_oom(error, "Argon2id");
  crypto_box_seed_keypair(pk, sk, seed);
  sodium_memzero(seed, sizeof seed);
  return true;
}

/* Type and Argon2id limits: what a reader can check of a stanza. */
static bool params_check(const pkgs_recipient_t *r, fzip_error_t *error) {
  if (r->type == PKGS_STANZA_X25519)
    return true;
  if (r->type != PKGS_STANZA_PASSPHRASE)
    return fail(error, FZIP_ERR_INVALID_ARGUMENT, "unknown recipient type");
  if (r->opslimit < crypto_pwhash_OPSLIMIT_MIN || r->opslimit > PKGS_PWHASH_OPS_MAX ||
      r->memlimit < crypto_pwhash_MEMLIMIT_MIN || r->memlimit > PKGS_PWHASH_MEM_MAX)
    return fail(error, FZIP_ERR_RESOURCE_EXHAUSTED, "Argon2id parameters out of bounds");
  return true;
}

/* crypto_box_seal to `pk`; it fails for a low-order key (all-zero shared
 * secret), which would otherwise leave a stanza nobody can open. */
static bool seal_key(uint8_t out[SEALED_KEY_LEN], const uint8_t *file_key,
                     const uint8_t pk[PKGS_KEY_LEN], fzip_error_t *error) {
  if (crypto_box_seal(out, file_key, crypto_secretstream_xchacha20poly1305_KEYBYTES, pk) != 0)
    return fail(error, FZIP_ERR_INVALID_ARGUMENT, "recipient public key is not usable");
  return true;
}

bool pkgs_recipient_check(const pkgs_recipient_t *r, fzip_error_t *error) {
  uint8_t probe[SEALED_KEY_LEN], zero[crypto_secretstream_xchacha20poly1305_KEYBYTES] = {0};
  return params_check(r, error) && pkgs_init(error) && seal_key(probe, zero, r->public_key, error);
}

bool pkgs_passphrase_recipient(pkgs_recipient_t *out, const char *passphrase, uint64_t opslimit,
                               uint64_t memlimit, fzip_error_t *error) {
  uint8_t sk[PKGS_KEY_LEN];
  bool ok = false;
  if (!pkgs_init(error))
    return false;
  if (strlen(passphrase) == 0 || strlen(passphrase) > PKGS_PASSPHRASE_MAX)
    return fail(error, FZIP_ERR_INVALID_ARGUMENT, "passphrase empty or too long");
  memset(out, 0, sizeof *out);
  out->type = PKGS_STANZA_PASSPHRASE;
  out->opslimit = opslimit ? opslimit : PKGS_PWHASH_OPS_DEFAULT;
  out->memlimit = memlimit ? memlimit : PKGS_PWHASH_MEM_DEFAULT;
  randombytes_buf(out->salt, sizeof out->salt);
  if (!params_check(out, error))
    goto done;
  ok = derive_keypair(out->public_key, sk, passphrase, out->salt, out->opslimit, out->memlimit,
                      error);
done:
  sodium_memzero(sk, sizeof sk);
  return ok;
}

bool pkgs_key_format(char out[PKGS_KEY_TEXT_MAX], const uint8_t key[PKGS_KEY_LEN], bool secret) {
  char hex[2 * PKGS_KEY_LEN + 1];
  sodium_bin2hex(hex, sizeof hex, key, PKGS_KEY_LEN);
  const char *prefix = secret ? PKGS_SECRET_PREFIX : PKGS_PUBLIC_PREFIX;
  int n = snprintf(out, PKGS_KEY_TEXT_MAX, "%s%s\n", prefix, hex);
  sodium_memzero(hex, sizeof hex);
  return n > 0 && n < PKGS_KEY_TEXT_MAX;
}

bool pkgs_key_parse(uint8_t key[PKGS_KEY_LEN], const char *text, bool secret, fzip_error_t *error) {
  const char *prefix = secret ? PKGS_SECRET_PREFIX : PKGS_PUBLIC_PREFIX;
  size_t bin_len = 0;
  const char *end = NULL;
  while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
    text++;
  if (strncmp(text, prefix, strlen(prefix)) != 0)
    return fail(error, FZIP_ERR_INVALID_ARGUMENT,
                secret ? "not an fzip secret key (fzip-x25519-secret:...)"
                       : "not an fzip public key (fzip-x25519-public:...)");
  text += strlen(prefix);
  if (sodium_hex2bin(key, PKGS_KEY_LEN, text, strlen(text), NULL, &bin_len, &end) != 0 ||
      bin_len != PKGS_KEY_LEN || strspn(end, " \t\r\n") != strlen(end))
    return fail(error, FZIP_ERR_INVALID_ARGUMENT, "key is not 64 hex digits");
  return true;
}

bool pkgs_is_sealed(const void *head, size_t len) {
  return len >= PKGS_MAGIC_LEN && memcmp(head, PKGS_MAGIC, PKGS_MAGIC_LEN) == 0;
}

static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

/* ---- writer ------------------------------------------------------------ */

struct pkgs_writer {
  pkgs_sink_fn sink;
  void *sink_ctx;
  crypto_secretstream_xchacha20poly1305_state st;
  uint8_t header[HEADER_MAX]; /* the first chunk's additional data */
  size_t header_len;
  bool first_sent, finished;
  uint8_t plain[PKGS_CHUNK_SIZE];
  size_t plain_len;
  uint8_t out[CHUNK_OUT_LEN];
  uint64_t bytes_out;
};

static bool writer_emit(pkgs_writer_t *w, const void *data, size_t len, fzip_error_t *error) {
  if (!w->sink(w->sink_ctx, data, len, error))
    return false;
  w->bytes_out += len;
  return true;
}

static bool stanza_encode(size_t *len, uint8_t *p, const pkgs_recipient_t *r,
                          const uint8_t *file_key, fzip_error_t *error) {
  size_t n = 0;
  p[n++] = (uint8_t)r->type;
  if (r->type == PKGS_STANZA_PASSPHRASE) {
    memcpy(p + n, r->salt, PKGS_SALT_LEN);
    put_u64(p + n + PKGS_SALT_LEN, r->opslimit);
    put_u64(p + n + PKGS_SALT_LEN + 8, r->memlimit);
    n += PASS_PARAMS_LEN;
  }
  *len = n + SEALED_KEY_LEN;
  return seal_key(p + n, file_key, r->public_key, error);
}

static bool writer_header(pkgs_writer_t *w, const pkgs_recipient_t *rs, size_t n_rs,
                          fzip_error_t *error) {
  uint8_t key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
  uint8_t *h = w->header;
  size_t n = 0;
  crypto_secretstream_xchacha20poly1305_keygen(key);
  memcpy(h, PKGS_MAGIC, PKGS_MAGIC_LEN);
  n = PKGS_MAGIC_LEN;
  h[n++] = PKGS_VERSION;
  h[n++] = (uint8_t)n_rs;
  for (int i = 0; i < 4; i++)
    h[n++] = (uint8_t)((uint32_t)PKGS_CHUNK_SIZE >> (8 * i));
  for (size_t i = 0; i < n_rs; i++) {
    size_t len = 0;
    if (!stanza_encode(&len, h + n, &rs[i], key, error)) {
      sodium_memzero(key, sizeof key);
      return false;
    }
    n += len;
  }
  crypto_secretstream_xchacha20poly1305_init_push(&w->st, h + n, key);
  n += STREAM_HEADER_LEN;
  sodium_memzero(key, sizeof key);
  w->header_len = n;
  return writer_emit(w, h, n, error);
}

pkgs_writer_t *pkgs_writer_new(pkgs_sink_fn sink, void *sink_ctx,
                               const pkgs_recipient_t *recipients, size_t n_recipients,
                               fzip_error_t *error) {
  pkgs_writer_t *w = NULL;
  if (n_recipients == 0 || n_recipients > PKGS_STANZAS_MAX) {
    fail(error, FZIP_ERR_INVALID_ARGUMENT, "1 to PKGS_STANZAS_MAX recipients");
    return NULL;
  }
  for (size_t i = 0; i < n_recipients; i++) {
    if (!pkgs_recipient_check(&recipients[i], error))
      return NULL;
  }
  w = handle_new(sizeof *w, "envelope writer", error);
  if (!w)
    return NULL;
  w->sink = sink;
  w->sink_ctx = sink_ctx;
  if (!writer_header(w, recipients, n_recipients, error)) {
    pkgs_writer_destroy(w);
    return NULL;
  }
  return w;
}

static bool writer_push(pkgs_writer_t *w, uint8_t tag, fzip_error_t *error) {
  unsigned long long clen = 0;
  const uint8_t *ad = w->first_sent ? NULL : w->header;
  size_t ad_len = w->first_sent ? 0 : w->header_len;
  crypto_secretstream_xchacha20poly1305_push(&w->st, w->out, &clen, w->plain, w->plain_len, ad,
                                             ad_len, tag);
  w->first_sent = true;
  w->plain_len = 0;
  return writer_emit(w, w->out, (size_t)clen, error);
}

bool pkgs_writer_write(pkgs_writer_t *w, const void *data, size_t len, fzip_error_t *error) {
  const uint8_t *p = data;
  if (w->finished)
    return fail(error, FZIP_ERR_INTERNAL, "write after finish");
  while (len > 0) {
    /* A full chunk goes out only once more data comes: the last chunk,
     * full or not, must carry FINAL. */
    if (w->plain_len == PKGS_CHUNK_SIZE &&
        !writer_push(w, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, error))
      return false;
    size_t k = PKGS_CHUNK_SIZE - w->plain_len;
    if (k > len)
      k = len;
    memcpy(w->plain + w->plain_len, p, k);
    w->plain_len += k;
    p += k;
    len -= k;
  }
  return true;
}

bool pkgs_writer_finish(pkgs_writer_t *w, fzip_error_t *error) {
  if (w->finished)
    return fail(error, FZIP_ERR_INTERNAL, "finished twice");
  w->finished = true;
  return writer_push(w, crypto_secretstream_xchacha20poly1305_TAG_FINAL, error);
}

uint64_t pkgs_writer_bytes_out(const pkgs_writer_t *w) {
  return w->bytes_out;
}

void pkgs_writer_destroy(pkgs_writer_t *w) {
  if (!w)
    return;
  sodium_memzero(w, sizeof *w);
  free(w);
}

/* ---- reader ------------------------------------------------------------ */

struct pkgs_reader {
  pkgs_source_fn source;
  void *source_ctx;
  crypto_secretstream_xchacha20poly1305_state st;
  uint8_t header[HEADER_MAX];
  size_t header_len;
  uint64_t chunk_no;
  bool final_seen;
  uint8_t in[CHUNK_OUT_LEN];
  uint8_t plain[PKGS_CHUNK_SIZE];
  size_t plain_len, plain_pos;
};

/* Reads until `len` bytes or the end of the source; *got says how many. */
static bool read_full(pkgs_reader_t *r, uint8_t *buf, size_t len, size_t *got,
                      fzip_error_t *error) {
  *got = 0;
  while (*got < len) {
    size_t n = 0;
    if (!r->source(r->source_ctx, buf + *got, len - *got, &n, error))
      return false;
    if (n == 0)
      break;
    *got += n;
  }
  return true;
}

/* Appends exactly `len` header bytes; a short source is a broken header. */
static bool header_take(pkgs_reader_t *r, size_t len, fzip_error_t *error) {
  size_t got = 0;
  if (r->header_len + len > HEADER_MAX)
    return fail(error, FZIP_ERR_RESOURCE_EXHAUSTED, "header too large");
  if (!read_full(r, r->header + r->header_len, len, &got, error))
    return false;
  if (got != len)
    return fail(error, FZIP_ERR_DATA_LOSS, "header cut short");
  r->header_len += len;
  return true;
}

static bool header_fixed(size_t *n_stanzas, pkgs_reader_t *r, fzip_error_t *error) {
  const uint8_t *h = r->header;
  uint32_t chunk = 0;
  if (!header_take(r, FIXED_LEN, error))
    return fzip_error_prefix(error, "not an FZIPENC1 envelope: ");
  if (!pkgs_is_sealed(h, FIXED_LEN))
    return fail(error, FZIP_ERR_INVALID_ARGUMENT, "not an FZIPENC1 envelope");
  if (h[PKGS_MAGIC_LEN] != PKGS_VERSION)
    return fail(error, FZIP_ERR_FAILED_PRECONDITION, "envelope version not supported");
  *n_stanzas = h[PKGS_MAGIC_LEN + 1];
  for (int i = 3; i >= 0; i--)
    chunk = (chunk << 8) | h[PKGS_MAGIC_LEN + 2 + i];
  if (*n_stanzas == 0 || *n_stanzas > PKGS_STANZAS_MAX)
    return fail(error, FZIP_ERR_RESOURCE_EXHAUSTED, "recipient stanzas out of bounds");
  if (chunk != PKGS_CHUNK_SIZE)
    return fail(error, FZIP_ERR_INVALID_ARGUMENT, "chunk size not PKGS_CHUNK_SIZE");
  return true;
}

/* Reads one stanza and, if `id` fits it, unwraps the file key. */
static bool header_stanza(bool *opened, uint8_t key[crypto_secretstream_xchacha20poly1305_KEYBYTES],
                          pkgs_reader_t *r, const pkgs_identity_t *id, fzip_error_t *error) {
  pkgs_recipient_t rc = {0};
  uint8_t pk[PKGS_KEY_LEN], sk[PKGS_KEY_LEN];
  bool have = false, ok = false;
  if (!header_take(r, 1, error))
    return false;
  rc.type = r->header[r->header_len - 1];
  if (rc.type == PKGS_STANZA_PASSPHRASE) {
    if (!header_take(r, PASS_PARAMS_LEN, error))
      return false;
    const uint8_t *p = r->header + r->header_len - PASS_PARAMS_LEN;
    memcpy(rc.salt, p, PKGS_SALT_LEN);
    rc.opslimit = get_u64(p + PKGS_SALT_LEN);
    rc.memlimit = get_u64(p + PKGS_SALT_LEN + 8);
  }
  if (!params_check(&rc, error) || !header_take(r, SEALED_KEY_LEN, error))
    return false;
  if (*opened)
    return true; /* the key is in hand; the rest is only read, for the AD */
  if (rc.type == PKGS_STANZA_X25519 && id->has_secret_key) {
    memcpy(sk, id->secret_key, PKGS_KEY_LEN);
    crypto_scalarmult_base(pk, sk);
    have = true;
  } else if (rc.type == PKGS_STANZA_PASSPHRASE && id->passphrase) {
    if ((id->pwhash_ops_max && rc.opslimit > id->pwhash_ops_max) ||
        (id->pwhash_mem_max && rc.memlimit > id->pwhash_mem_max)) {
      fail(error, FZIP_ERR_RESOURCE_EXHAUSTED, "Argon2id parameters past this reader's bounds");
      goto done;
    }
    if (!derive_keypair(pk, sk, id->passphrase, rc.salt, rc.opslimit, rc.memlimit, error))
      goto done;
    have = true;
  }
  if (have && crypto_box_seal_open(key, r->header + r->header_len - SEALED_KEY_LEN, SEALED_KEY_LEN,
                                   pk, sk) == 0)
    *opened = true;
  ok = true;
done:
  sodium_memzero(sk, sizeof sk);
  return ok;
}

/* Authenticates the next chunk into r->plain. */
static bool reader_chunk(pkgs_reader_t *r, fzip_error_t *error) {
  size_t got = 0;
  unsigned long long plen = 0;
  uint8_t tag = 0;
  const uint8_t *ad = r->chunk_no == 0 ? r->header : NULL;
  size_t ad_len = r->chunk_no == 0 ? r->header_len : 0;
  if (!read_full(r, r->in, CHUNK_OUT_LEN, &got, error))
    return false;
  if (got < crypto_secretstream_xchacha20poly1305_ABYTES)
    return fail(error, FZIP_ERR_DATA_LOSS, "truncated (no final chunk)");
  if (crypto_secretstream_xchacha20poly1305_pull(&r->st, r->plain, &plen, &tag, r->in, got, ad,
                                                 ad_len) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_DATA_LOSS,
                          "encrypted package: chunk %llu does not authenticate (changed, reordered "
                          "or cut)", (unsigned long long)r->chunk_no);
  r->chunk_no++;
  r->plain_len = (size_t)plen;
  r->plain_pos = 0;
  if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
    uint8_t extra = 0;
    r->final_seen = true;
    if (!read_full(r, &extra, 1, &got, error))
      return false;
    if (got != 0)
      return fail(error, FZIP_ERR_DATA_LOSS, "bytes after the final chunk");
    return true;
  }
  if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE || plen != PKGS_CHUNK_SIZE)
    return fail(error, FZIP_ERR_DATA_LOSS, "short or mis-tagged chunk before the final one");
  return true;
}

static bool reader_open(pkgs_reader_t *r, const pkgs_identity_t *id, fzip_error_t *error) {
  uint8_t key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
  size_t n_stanzas = 0;
  bool opened = false, ok = false;
  if (!header_fixed(&n_stanzas, r, error))
    return false;
  for (size_t i = 0; i < n_stanzas; i++) {
    if (!header_stanza(&opened, key, r, id, error))
      goto done;
  }
  if (!header_take(r, STREAM_HEADER_LEN, error))
    goto done;
  if (!opened) {
    fail(error, FZIP_ERR_PERMISSION_DENIED,
         "no recipient stanza opens with this key or passphrase");
    fzip_error_set_reason(error, "PACKAGE_KEY_MISMATCH");
    goto done;
  }
  if (crypto_secretstream_xchacha20poly1305_init_pull(
          &r->st, r->header + r->header_len - STREAM_HEADER_LEN, key) != 0) {
    fail(error, FZIP_ERR_DATA_LOSS, "bad stream header");
    goto done;
  }
  /* The first chunk now, so that a changed header is refused here. */
  ok = reader_chunk(r, error);
done:
  sodium_memzero(key, sizeof key);
  return ok;
}

pkgs_reader_t *pkgs_reader_new(pkgs_source_fn source, void *source_ctx, const pkgs_identity_t *id,
                               fzip_error_t *error) {
  pkgs_reader_t *r = handle_new(sizeof *r, "envelope reader", error);
  if (r) {
    r->source = source;
    r->source_ctx = source_ctx;
  }
  if (r && !reader_open(r, id, error)) {
    pkgs_reader_destroy(r); /* wipes what the header gave */
    r = NULL;
  }
  return r;
}

bool pkgs_reader_read(size_t *n, pkgs_reader_t *r, void *buf, size_t cap, fzip_error_t *error) {
  *n = 0;
  if (r->plain_pos == r->plain_len) {
    if (r->final_seen)
      return true;
    if (!reader_chunk(r, error))
      return false;
  }
  size_t k = r->plain_len - r->plain_pos;
  if (k > cap)
    k = cap;
  memcpy(buf, r->plain + r->plain_pos, k);
  r->plain_pos += k;
  *n = k;
  return true;
}

void pkgs_reader_destroy(pkgs_reader_t *r) {
  if (!r)
    return;
  sodium_memzero(r, sizeof *r);
  free(r);
}

/* ---- files ------------------------------------------------------------- */

static bool file_source(void *ctx, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  FILE *f = ctx;
  *n = fread(buf, 1, cap, f);
  if (*n == 0 && ferror(f))
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "reading: %s",
                          strerror(errno));
  return true;
}

static bool copy_out(pkgs_reader_t *r, int fd, fzip_error_t *error) {
  uint8_t buf[FILE_IO_LEN];
  for (;;) {
    size_t n = 0;
    if (!pkgs_reader_read(&n, r, buf, sizeof buf, error))
      return false;
    if (n == 0)
      return true;
    for (size_t off = 0; off < n;) {
      ssize_t w = write(fd, buf + off, n - off);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "writing: %s",
                              strerror(errno));
      off += (size_t)w;
    }
  }
}

bool pkgs_open_file(const char *out_path, const char *in_path, const pkgs_identity_t *id,
                    fzip_error_t *error) {
  FILE *in = NULL;
  pkgs_reader_t *r = NULL;
  char *part = NULL;
  int fd = -1;
  bool ok = false, created = false;
  size_t part_len = strlen(out_path) + sizeof ".part";
  in = fopen(in_path, "rb");
  if (!in) {
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_NOT_FOUND, "%s: %s", in_path, strerror(errno));
    goto done;
  }
  part = malloc(part_len);
  if (!part) {
    fzip_error_oom(error, "path");
    goto done;
  }
  snprintf(part, part_len, "%s.part", out_path);
  r = pkgs_reader_new(file_source, in, id, error);
  if (!r)
    goto done;
  fd = open(part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: %s", part, strerror(errno));
    goto done;
  }
  created = true;
  if (!copy_out(r, fd, error))
    goto done;
  if (close(fd) != 0) {
    fd = -1;
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: %s", part, strerror(errno));
    goto done;
  }
  fd = -1;
  /* link, not rename: an existing output is never replaced */
  if (link(part, out_path) != 0) {
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: %s", out_path, strerror(errno));
    goto done;
  }
  ok = true;
  unlink(part);
done:
  if (fd >= 0)
    close(fd);
  if (!ok && created)
    unlink(part);
  pkgs_reader_destroy(r);
  free(part);
  if (in)
    fclose(in);
  return ok;
}
