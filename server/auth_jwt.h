/*
 * auth_jwt: bearer-token verification for fzipd, and dev token minting.
 *
 * A verifier is built once from configuration and is immutable afterwards,
 * so many handler threads may verify tokens with it at once.  It holds
 * exactly one key, and the key decides the only algorithm accepted:
 * an HMAC secret file means HS256, a PEM public key means RS256 (RSA) or
 * ES256 (EC P-256).  Tokens announcing any other "alg" (including "none")
 * are rejected before their signature is looked at, which is what closes
 * the classic alg-confusion hole (an RS256 public key used as an HMAC
 * secret).  Signatures are checked by libjwt; key files are parsed by
 * OpenSSL: no crypto is written here.
 *
 * Claims: `exp` is required; `nbf` and `iat` are checked when present;
 * `iss` and `aud` when the verifier is configured with them; all with a
 * small leeway for clock skew.  `sub` becomes the user id and must be
 * non-empty printable ASCII without spaces, at most FZIP_USER_ID_MAX bytes.
 *
 * Every rejection is FZIP_ERR_UNAUTHENTICATED with a message saying why;
 * messages never echo the token.
 */
#ifndef FZIP_AUTH_JWT_H
#define FZIP_AUTH_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_error.h"

/* Longest "authorization" value / token accepted, in bytes. */
#define AUTH_TOKEN_MAX 8192
/* HMAC secrets shorter than this are refused (RFC 7518 3.2: >= hash size). */
#define AUTH_SECRET_MIN 32
/* Largest secret or PEM key file read. */
#define AUTH_KEY_FILE_MAX (64 * 1024)
/* Clock skew tolerated on exp/nbf/iat, seconds. */
#define AUTH_DEFAULT_LEEWAY_S 60
/* Longest issuer/audience configured or compared. */
#define AUTH_CLAIM_MAX 1024

typedef struct auth_verifier auth_verifier_t;

typedef struct {
  const char *secret_file;     /* HS256 shared secret (exclusive with public_key_file) */
  const char *public_key_file; /* PEM public key: RSA -> RS256, EC -> ES256 */
  const char *issuer;          /* required `iss` when non-NULL and non-empty */
  const char *audience;        /* must appear in `aud` when non-NULL and non-empty */
  int leeway_s;                /* < 0: AUTH_DEFAULT_LEEWAY_S */
  bool log_every_call;         /* insecure dev mode: warn on every verified call */
} auth_options_t;

/* Reads the key file and builds a verifier; *out is the caller's
 * (auth_verifier_destroy).  Fails with CONFIG errors naming the file. */
bool auth_verifier_new(auth_verifier_t **out, const auth_options_t *options,
                       fzip_error_t *error);
void auth_verifier_destroy(auth_verifier_t *verifier); /* accepts NULL */

/* "HS256", "RS256" or "ES256": the one algorithm this verifier accepts. */
const char *auth_verifier_alg(const auth_verifier_t *verifier);

/* Verifies a compact JWS `token` at time now_s (epoch seconds) and writes
 * its `sub` into user_id (NUL-terminated; user_id_size must be at least
 * FZIP_USER_ID_MAX + 1). */
bool auth_verify_token(char *user_id, size_t user_id_size, const auth_verifier_t *verifier,
                       const char *token, int64_t now_s, fzip_error_t *error);

/* An rpc_auth_fn (server/rpc.h): auth_data is an auth_verifier_t*; parses
 * "Bearer <token>" and verifies it at the current time. */
bool auth_rpc_authenticate(void *auth_data, const char *authorization, char *user_id,
                           size_t user_id_size, fzip_error_t *error);

/* Reads an HMAC secret file (trailing whitespace trimmed).  *out (malloc'd,
 * NUL-terminated, caller frees) has *out_len bytes, at least AUTH_SECRET_MIN. */
bool auth_read_secret_file(char **out, size_t *out_len, const char *path, fzip_error_t *error);

/* Writes a fresh random secret (64 hex digits) to `path` with mode 0600.
 * Fails if the file already exists, so a real secret is never replaced. */
bool auth_write_random_secret(const char *path, fzip_error_t *error);

typedef struct {
  const char *user_id;  /* `sub`, required */
  int64_t ttl_s;        /* exp = now + ttl_s; <= 0: 3600 */
  const char *issuer;   /* optional `iss` */
  const char *audience; /* optional `aud` */
  int64_t now_s;        /* 0: current time */
} auth_mint_options_t;

/* Development tokens: signs an HS256 token with the secret in secret_file.
 * *out is malloc'd; the caller frees it. */
bool auth_mint_hs256(char **out, const char *secret_file, const auth_mint_options_t *options,
                     fzip_error_t *error);

#endif
