/*
 * auth_jwt: JWT verification with libjwt, key handling with OpenSSL.
 *
 * Verification runs in a fixed order so that the reason given is the first
 * thing wrong: shape (decode without a key, to read the header), algorithm
 * (must be the one the key implies), signature (decode again with the
 * key), then claims (exp, nbf, iat, iss, aud, sub).  libjwt 1.10 has no
 * claim validation of its own, so claims are checked here by hand.
 */
#include "auth_jwt.h"

#include "fzip_util.h"

#include <bson/bson.h>
#include <errno.h>
#include <fcntl.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fzip_entity.h"
#include "fzip_log.h"

#define BEARER_PREFIX "Bearer "
#define MINT_DEFAULT_TTL_S 3600
#define AUD_JSON_MAX (AUTH_CLAIM_MAX * 16)

struct auth_verifier {
  jwt_alg_t alg;
  unsigned char *key; /* secret bytes or PEM text, as libjwt wants them */
  size_t key_len;
  char *issuer;   /* NULL: not checked */
  char *audience; /* NULL: not checked */
  int64_t leeway_s;
  bool log_every_call;
};

static bool unauth(fzip_error_t *error, const char *why) {
  return fzip_error_set(error, FZIP_DOMAIN_AUTH, FZIP_ERR_UNAUTHENTICATED, "%s", why);
}

/* Reads a key or secret file (bounded); the error names what it is. */
static bool read_key_file(char **out, size_t *out_len, const char *what, const char *path,
                          fzip_error_t *error) {
  if (!fzip_read_small_file(out, out_len, path, AUTH_KEY_FILE_MAX, error))
    return fzip_error_prefix(error, "%s", what);
  return true;
}

bool auth_read_secret_file(char **out, size_t *out_len, const char *path, fzip_error_t *error) {
  char *buf = NULL;
  size_t n = 0;

  if (!read_key_file(&buf, &n, "JWT secret file", path, error))
    return false;
  /* `echo secret > file` leaves a newline that is not part of the secret. */
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
                   buf[n - 1] == '\t'))
    buf[--n] = '\0';
  if (n < AUTH_SECRET_MIN) {
    free(buf);
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "JWT secret file %s: secret is %zu bytes, need at least %d", path, n,
                          AUTH_SECRET_MIN);
  }
  *out = buf;
  *out_len = n;
  return true;
}

/* The algorithm a PEM public key implies, found by letting OpenSSL parse it. */
static bool pem_key_alg(jwt_alg_t *alg, const char *pem, size_t len, const char *path,
                        fzip_error_t *error) {
  BIO *bio = NULL;
  EVP_PKEY *pkey = NULL;
  bool ok = false;

  bio = BIO_new_mem_buf(pem, (int)len);
  if (bio)
    pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
  if (!pkey) {
    fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                   "JWT public key file %s: not a PEM public key (BEGIN PUBLIC KEY)", path);
    goto done;
  }
  switch (EVP_PKEY_get_base_id(pkey)) {
  case EVP_PKEY_RSA:
    *alg = JWT_ALG_RS256;
    break;
  case EVP_PKEY_EC:
    *alg = JWT_ALG_ES256;
    break;
  default:
    fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                   "JWT public key file %s: only RSA (RS256) and EC (ES256) keys are supported",
                   path);
    goto done;
  }
  ok = true;
done:
  EVP_PKEY_free(pkey);
  BIO_free(bio);
  return ok;
}

static bool dup_claim_option(char **out, const char *value, const char *name,
                             fzip_error_t *error) {
  *out = NULL;
  if (!value || !*value)
    return true;
  if (strlen(value) > AUTH_CLAIM_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "JWT %s longer than %d bytes", name, AUTH_CLAIM_MAX);
  *out = strdup(value);
  if (!*out)
    return fzip_error_oom(error, NULL);
  return true;
}

static bool load_key(auth_verifier_t *v, const auth_options_t *o, fzip_error_t *error) {
  bool has_secret = o->secret_file && *o->secret_file;
  bool has_pem = o->public_key_file && *o->public_key_file;
  char *buf = NULL;
  size_t n = 0;

  if (has_secret && has_pem)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "set either a JWT secret file or a JWT public key file, not both");
  if (!has_secret && !has_pem)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "no JWT key configured (secret file or public key file)");
  if (has_secret) {
    if (!auth_read_secret_file(&buf, &n, o->secret_file, error))
      return false;
    v->alg = JWT_ALG_HS256;
  } else {
    if (!read_key_file(&buf, &n, "JWT public key file", o->public_key_file, error))
      return false;
    if (!pem_key_alg(&v->alg, buf, n, o->public_key_file, error)) {
      free(buf);
      return false;
    }
  }
  v->key = (unsigned char *)buf;
  v->key_len = n;
  return true;
}

bool auth_verifier_new(auth_verifier_t **out, const auth_options_t *options,
                       fzip_error_t *error) {
  auth_verifier_t *v = NULL;
  bool ok = false;

  *out = NULL;
  v = calloc(1, sizeof *v);
  if (!v)
    return fzip_error_oom(error, NULL);
  if (!load_key(v, options, error))
    goto done;
  if (!dup_claim_option(&v->issuer, options->issuer, "issuer", error) ||
      !dup_claim_option(&v->audience, options->audience, "audience", error))
    goto done;
  v->leeway_s = options->leeway_s < 0 ? AUTH_DEFAULT_LEEWAY_S : options->leeway_s;
  v->log_every_call = options->log_every_call;
  *out = v;
  v = NULL;
  ok = true;
done:
  auth_verifier_destroy(v);
  return ok;
}

void auth_verifier_destroy(auth_verifier_t *verifier) {
  if (!verifier)
    return;
  if (verifier->key) {
    /* Do not leave the secret lying in freed memory. */
    OPENSSL_cleanse(verifier->key, verifier->key_len);
    free(verifier->key);
  }
  free(verifier->issuer);
  free(verifier->audience);
  free(verifier);
}

const char *auth_verifier_alg(const auth_verifier_t *verifier) {
  return jwt_alg_str(verifier->alg);
}

/* Step 1 and 2: the token parses, and announces exactly our algorithm. */
static bool check_shape_and_alg(const auth_verifier_t *v, const char *token,
                                fzip_error_t *error) {
  jwt_t *jwt = NULL;
  const char *alg = NULL;
  bool ok = false;

  /* Without a key libjwt only parses; nothing is trusted from this. */
  if (jwt_decode(&jwt, token, NULL, 0) != 0 || !jwt) {
    unauth(error, "malformed token: not a compact JWS (header.payload.signature)");
    goto done;
  }
  alg = jwt_get_header(jwt, "alg");
  if (!alg) {
    unauth(error, "malformed token: header has no alg");
    goto done;
  }
  if (strcmp(alg, "none") == 0) {
    unauth(error, "unsigned token (alg none) rejected");
    goto done;
  }
  if (strcmp(alg, jwt_alg_str(v->alg)) != 0) {
    fzip_error_set(error, FZIP_DOMAIN_AUTH, FZIP_ERR_UNAUTHENTICATED,
                   "token algorithm %.16s not accepted: the server expects %s", alg,
                   jwt_alg_str(v->alg));
    goto done;
  }
  ok = true;
done:
  jwt_free(jwt);
  return ok;
}

/* An integer claim: *present false when absent; error if not an integer. */
static bool int_claim(int64_t *value, bool *present, jwt_t *jwt, const char *name,
                      fzip_error_t *error) {
  char *json = NULL;

  errno = 0;
  *value = jwt_get_grant_int(jwt, name);
  *present = errno != ENOENT;
  if (*present)
    return true;
  /* ENOENT also means "there but not an integer": tell the two apart. */
  json = jwt_get_grants_json(jwt, name);
  if (json) {
    free(json);
    return fzip_error_set(error, FZIP_DOMAIN_AUTH, FZIP_ERR_UNAUTHENTICATED,
                          "malformed token: claim %s is not an integer", name);
  }
  return true;
}

static bool check_times(const auth_verifier_t *v, jwt_t *jwt, int64_t now_s,
                        fzip_error_t *error) {
  int64_t exp = 0, nbf = 0, iat = 0;
  bool has_exp = false, has_nbf = false, has_iat = false;

  if (!int_claim(&exp, &has_exp, jwt, "exp", error) ||
      !int_claim(&nbf, &has_nbf, jwt, "nbf", error) ||
      !int_claim(&iat, &has_iat, jwt, "iat", error))
    return false;
  if (!has_exp)
    return unauth(error, "token has no exp claim (expiry is required)");
  if (now_s > exp + v->leeway_s)
    return unauth(error, "token expired");
  if (has_nbf && now_s + v->leeway_s < nbf)
    return unauth(error, "token not yet valid (nbf is in the future)");
  if (has_iat && now_s + v->leeway_s < iat)
    return unauth(error, "token issued in the future (iat)");
  return true;
}

/* `aud` may be one string or an array of strings (RFC 7519 4.1.3). */
static bool audience_matches(jwt_t *jwt, const char *want) {
  const char *single = jwt_get_grant(jwt, "aud");
  char *json = NULL;
  char *wrapped = NULL;
  bson_t doc = BSON_INITIALIZER;
  bson_iter_t it, child;
  bool match = false;

  if (single)
    return strcmp(single, want) == 0;
  json = jwt_get_grants_json(jwt, "aud");
  if (!json || strlen(json) > AUD_JSON_MAX)
    goto done;
  wrapped = bson_strdup_printf("{\"aud\": %s}", json);
  bson_destroy(&doc);
  if (!bson_init_from_json(&doc, wrapped, -1, NULL)) {
    bson_init(&doc);
    goto done;
  }
  if (!bson_iter_init_find(&it, &doc, "aud") || !BSON_ITER_HOLDS_ARRAY(&it) ||
      !bson_iter_recurse(&it, &child))
    goto done;
  while (!match && bson_iter_next(&child))
    match = BSON_ITER_HOLDS_UTF8(&child) && strcmp(bson_iter_utf8(&child, NULL), want) == 0;
done:
  bson_destroy(&doc);
  bson_free(wrapped);
  free(json);
  return match;
}

static bool sub_is_valid(const char *sub) {
  size_t n = 0;

  for (; sub[n]; n++) {
    unsigned char c = (unsigned char)sub[n];
    if (c <= 0x20 || c >= 0x7f || n >= FZIP_USER_ID_MAX)
      return false;
  }
  return n > 0;
}

static bool check_claims(char *user_id, size_t user_id_size, const auth_verifier_t *v,
                         jwt_t *jwt, int64_t now_s, fzip_error_t *error) {
  const char *iss = NULL;
  const char *sub = NULL;

  if (!check_times(v, jwt, now_s, error))
    return false;
  if (v->issuer) {
    iss = jwt_get_grant(jwt, "iss");
    if (!iss || strcmp(iss, v->issuer) != 0)
      return unauth(error, "wrong issuer: token iss does not match the configured issuer");
  }
  if (v->audience && !audience_matches(jwt, v->audience))
    return unauth(error, "wrong audience: token aud does not include the configured audience");
  sub = jwt_get_grant(jwt, "sub");
  if (!sub || !*sub)
    return unauth(error, "token has no sub claim (the user id)");
  if (!sub_is_valid(sub) || strlen(sub) + 1 > user_id_size)
    return fzip_error_set(error, FZIP_DOMAIN_AUTH, FZIP_ERR_UNAUTHENTICATED,
                          "token sub is not a valid user id (printable ASCII, no spaces, "
                          "at most %d bytes)", FZIP_USER_ID_MAX);
  memcpy(user_id, sub, strlen(sub) + 1);
  return true;
}

bool auth_verify_token(char *user_id, size_t user_id_size, const auth_verifier_t *verifier,
                       const char *token, int64_t now_s, fzip_error_t *error) {
  jwt_t *jwt = NULL;
  bool ok = false;

  if (!token || !*token)
    return unauth(error, "empty bearer token");
  if (strlen(token) > AUTH_TOKEN_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_AUTH, FZIP_ERR_UNAUTHENTICATED,
                          "token longer than %d bytes", AUTH_TOKEN_MAX);
  if (!check_shape_and_alg(verifier, token, error))
    return false;
  if (jwt_decode(&jwt, token, verifier->key, (int)verifier->key_len) != 0 || !jwt ||
      jwt_get_alg(jwt) != verifier->alg) {
    unauth(error, "bad signature");
    goto done;
  }
  ok = check_claims(user_id, user_id_size, verifier, jwt, now_s, error);
done:
  jwt_free(jwt);
  return ok;
}

bool auth_rpc_authenticate(void *auth_data, const char *authorization, char *user_id,
                           size_t user_id_size, fzip_error_t *error) {
  const auth_verifier_t *v = auth_data;
  const char *token = NULL;

  if (!authorization || !*authorization)
    return unauth(error, "missing authorization header (want \"Bearer <JWT>\")");
  /* RFC 6750: the scheme name is case-insensitive. */
  if (strncasecmp(authorization, BEARER_PREFIX, strlen(BEARER_PREFIX)) != 0)
    return unauth(error, "authorization header is not a Bearer token");
  token = authorization + strlen(BEARER_PREFIX);
  while (*token == ' ')
    token++;
  if (!auth_verify_token(user_id, user_id_size, v, token, (int64_t)time(NULL), error))
    return false;
  if (v->log_every_call)
    fzip_log(FZIP_LOG_WARN, "auth", "call authenticated with the INSECURE development key",
             "user", user_id, "insecure_dev_auth", "true", NULL);
  return true;
}

bool auth_write_random_secret(const char *path, fzip_error_t *error) {
  unsigned char raw[32];
  char hex[sizeof raw * 2 + 2];
  int fd = -1;
  bool ok = false;

  if (RAND_bytes(raw, (int)sizeof raw) != 1)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "no randomness");
  for (size_t i = 0; i < sizeof raw; i++)
    snprintf(hex + 2 * i, 3, "%02x", raw[i]);
  hex[sizeof raw * 2] = '\n';
  hex[sizeof raw * 2 + 1] = '\0';
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                   "creating JWT secret file %s: %s", path, strerror(errno));
    goto done;
  }
  if (write(fd, hex, strlen(hex)) != (ssize_t)strlen(hex)) {
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "writing %s: %s", path,
                   strerror(errno));
    goto done;
  }
  ok = true;
done:
  if (fd >= 0)
    close(fd);
  OPENSSL_cleanse(raw, sizeof raw);
  OPENSSL_cleanse(hex, sizeof hex);
  return ok;
}

static bool add_grants(jwt_t *jwt, const auth_mint_options_t *o, fzip_error_t *error) {
  int64_t now = o->now_s > 0 ? o->now_s : (int64_t)time(NULL);
  int64_t ttl = o->ttl_s > 0 ? o->ttl_s : MINT_DEFAULT_TTL_S;
  int rc = 0;

  rc |= jwt_add_grant(jwt, "sub", o->user_id);
  rc |= jwt_add_grant_int(jwt, "iat", (long)now);
  rc |= jwt_add_grant_int(jwt, "exp", (long)(now + ttl));
  if (o->issuer && *o->issuer)
    rc |= jwt_add_grant(jwt, "iss", o->issuer);
  if (o->audience && *o->audience)
    rc |= jwt_add_grant(jwt, "aud", o->audience);
  if (rc != 0)
    return fzip_error_set(error, FZIP_DOMAIN_AUTH, FZIP_ERR_INTERNAL, "building token claims");
  return true;
}

bool auth_mint_hs256(char **out, const char *secret_file, const auth_mint_options_t *options,
                     fzip_error_t *error) {
  char *secret = NULL;
  size_t secret_len = 0;
  jwt_t *jwt = NULL;
  char *token = NULL;
  bool ok = false;

  *out = NULL;
  if (!options->user_id || !sub_is_valid(options->user_id))
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "user id must be printable ASCII without spaces, 1..%d bytes",
                          FZIP_USER_ID_MAX);
  if (!auth_read_secret_file(&secret, &secret_len, secret_file, error))
    return false;
  if (jwt_new(&jwt) != 0) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  if (!add_grants(jwt, options, error))
    goto done;
  if (jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)secret_len) != 0 ||
      !(token = jwt_encode_str(jwt))) {
    fzip_error_set(error, FZIP_DOMAIN_AUTH, FZIP_ERR_INTERNAL, "signing token failed");
    goto done;
  }
  *out = token;
  ok = true;
done:
  jwt_free(jwt);
  if (secret) {
    OPENSSL_cleanse(secret, secret_len);
    free(secret);
  }
  return ok;
}
