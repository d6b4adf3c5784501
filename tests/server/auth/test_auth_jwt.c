/*
 * test_auth_jwt: the JWT verifier against real tokens.
 *
 * Tokens are signed here with libjwt; RSA and EC key pairs are generated
 * with OpenSSL into a temporary directory, exactly as an operator would
 * produce PEM files.  Each rejection test also checks the reason given,
 * since that message is what a client developer sees.
 */
#include "auth_jwt.h"

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fzip_entity.h"
#include "fzip_test.h"

#define PATH_MAX_LEN 512
#define PEM_MAX (16 * 1024)

static char g_dir[64]; /* mkdtemp result: short by construction */
static char g_secret_file[PATH_MAX_LEN];
static char g_short_secret_file[PATH_MAX_LEN];
static char g_rsa_pub_file[PATH_MAX_LEN];
static char g_ec_pub_file[PATH_MAX_LEN];
static char g_rsa_priv[PEM_MAX];
static char g_rsa_pub[PEM_MAX];
static char g_ec_priv[PEM_MAX];
static const char *SECRET = "0123456789abcdef0123456789abcdef-test-secret";

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(2);
  }
  fputs(text, f);
  fclose(f);
}

/* Generates a key pair, keeps both PEMs in memory, writes the public one. */
static void make_keypair(char *priv, char *pub, const char *pub_path, EVP_PKEY *key) {
  BIO *b = BIO_new(BIO_s_mem());
  char *data = NULL;
  long n = 0;

  PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
  n = BIO_get_mem_data(b, &data);
  if (n <= 0 || n >= PEM_MAX)
    exit(2);
  memcpy(priv, data, (size_t)n);
  priv[n] = '\0';
  BIO_free(b);
  b = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(b, key);
  n = BIO_get_mem_data(b, &data);
  if (n <= 0 || n >= PEM_MAX)
    exit(2);
  memcpy(pub, data, (size_t)n);
  pub[n] = '\0';
  BIO_free(b);
  write_file(pub_path, pub);
}

static void setup(void) {
  char tmpl[] = "/tmp/fzip-auth-test-XXXXXX";
  char ec_pub[PEM_MAX];
  EVP_PKEY *rsa = NULL, *ec = NULL;

  if (!mkdtemp(tmpl))
    exit(2);
  snprintf(g_dir, sizeof g_dir, "%s", tmpl);
  snprintf(g_secret_file, sizeof g_secret_file, "%s/secret", g_dir);
  snprintf(g_short_secret_file, sizeof g_short_secret_file, "%s/short", g_dir);
  snprintf(g_rsa_pub_file, sizeof g_rsa_pub_file, "%s/rsa.pub.pem", g_dir);
  snprintf(g_ec_pub_file, sizeof g_ec_pub_file, "%s/ec.pub.pem", g_dir);
  write_file(g_secret_file, SECRET);
  write_file(g_short_secret_file, "tooshort\n");
  rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  if (!rsa || !ec)
    exit(2);
  make_keypair(g_rsa_priv, g_rsa_pub, g_rsa_pub_file, rsa);
  make_keypair(g_ec_priv, ec_pub, g_ec_pub_file, ec);
  EVP_PKEY_free(rsa);
  EVP_PKEY_free(ec);
}

static void teardown(void) {
  const char *names[] = {"secret", "short", "rsa.pub.pem", "ec.pub.pem", "minted"};
  char p[PATH_MAX_LEN + 32];
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    snprintf(p, sizeof p, "%s/%s", g_dir, names[i]);
    unlink(p);
  }
  rmdir(g_dir);
}

/* Claims for a token; a field at its zero value is left out. */
typedef struct {
  const char *sub;
  int64_t exp, nbf, iat;
  const char *iss;
  const char *aud;      /* one string */
  const char *aud_json; /* or raw JSON, e.g. an array */
} claims_t;

static int64_t now_s(void) { return (int64_t)time(NULL); }

static char *sign(jwt_alg_t alg, const void *key, size_t key_len, const claims_t *c) {
  jwt_t *jwt = NULL;
  char *tok = NULL;

  jwt_new(&jwt);
  if (c->sub)
    jwt_add_grant(jwt, "sub", c->sub);
  if (c->exp)
    jwt_add_grant_int(jwt, "exp", (long)c->exp);
  if (c->nbf)
    jwt_add_grant_int(jwt, "nbf", (long)c->nbf);
  if (c->iat)
    jwt_add_grant_int(jwt, "iat", (long)c->iat);
  if (c->iss)
    jwt_add_grant(jwt, "iss", c->iss);
  if (c->aud)
    jwt_add_grant(jwt, "aud", c->aud);
  if (c->aud_json) {
    char buf[256];
    snprintf(buf, sizeof buf, "{\"aud\": %s}", c->aud_json);
    jwt_add_grants_json(jwt, buf);
  }
  jwt_set_alg(jwt, alg, key, (int)key_len);
  tok = jwt_encode_str(jwt);
  jwt_free(jwt);
  return tok;
}

static char *sign_hs(const claims_t *c) { return sign(JWT_ALG_HS256, SECRET, strlen(SECRET), c); }

/* Clock skew the test verifiers allow (auth_options_t.leeway_s). */
#define TEST_LEEWAY_S 60

/* A verifier the test cannot do without: exits on failure. */
static auth_verifier_t *verifier_or_exit(const auth_options_t *o) {
  auth_verifier_t *v = NULL;
  fzip_error_t err = {0};
  if (!auth_verifier_new(&v, o, &err)) {
    fprintf(stderr, "verifier: %s\n", err.message);
    exit(2);
  }
  return v;
}

static auth_verifier_t *hs_verifier(const char *iss, const char *aud) {
  auth_options_t o = {.secret_file = g_secret_file, .issuer = iss, .audience = aud,
                      .leeway_s = TEST_LEEWAY_S};
  return verifier_or_exit(&o);
}

static auth_verifier_t *pem_verifier(const char *file) {
  auth_options_t o = {.public_key_file = file, .leeway_s = TEST_LEEWAY_S};
  return verifier_or_exit(&o);
}

/* Verifies `tok` and returns the error message ("" on success). */
static const char *verify(auth_verifier_t *v, const char *tok, char *user) {
  static fzip_error_t err;
  fzip_error_clear(&err);
  if (auth_verify_token(user, FZIP_USER_ID_MAX + 1, v, tok, now_s(), &err))
    return "";
  if (err.code != FZIP_ERR_UNAUTHENTICATED)
    return "WRONG CODE";
  return err.message;
}

/* True if `v` refuses `tok` with a message containing `why` (says what
 * it got otherwise). */
static bool rejected_with(auth_verifier_t *v, const char *tok, const char *why) {
  char user[FZIP_USER_ID_MAX + 1];
  const char *msg = verify(v, tok, user);
  if (*msg && strstr(msg, why))
    return true;
  fprintf(stderr, "  got message: \"%s\", want it to contain \"%s\"\n", msg, why);
  return false;
}

#define CHECK_REJECTED(v, tok, why) CHECK(rejected_with((v), (tok), (why)))

/* A token with claims `c` signed under `alg` with `key` (a string, or NULL
 * for none) is refused by `v` for reason `why`.  Destroys `v`. */
static bool signed_token_rejected(auth_verifier_t *v, jwt_alg_t alg, const char *key,
                                  const claims_t *c, const char *why) {
  char *tok = sign(alg, key, key ? strlen(key) : 0, c);
  bool ok = rejected_with(v, tok, why);
  free(tok);
  auth_verifier_destroy(v);
  return ok;
}

/* An HS256 token with claims `c`, signed with the right secret, is refused
 * by a verifier with no issuer or audience set, for reason `why`. */
static bool hs256_claims_rejected(const claims_t *c, const char *why) {
  return signed_token_rejected(hs_verifier(NULL, NULL), JWT_ALG_HS256, SECRET, c, why);
}

/* The same token is accepted. */
static bool hs256_claims_accepted(const claims_t *c) {
  auth_verifier_t *v = hs_verifier(NULL, NULL);
  char *tok = sign_hs(c);
  char user[FZIP_USER_ID_MAX + 1];
  bool ok = strcmp(verify(v, tok, user), "") == 0;
  free(tok);
  auth_verifier_destroy(v);
  return ok;
}

static void test_hs256_valid_token_is_accepted_and_yields_sub(void) {
  auth_verifier_t *v = hs_verifier(NULL, NULL);
  claims_t c = {.sub = "user-42", .exp = now_s() + 300, .iat = now_s()};
  char *tok = sign_hs(&c);
  char user[FZIP_USER_ID_MAX + 1] = "";
  const char *msg = verify(v, tok, user);
  free(tok);
  auth_verifier_destroy(v);
  CHECK(strcmp(msg, "") == 0);
  CHECK(strcmp(user, "user-42") == 0);
}

/* A token signed with `priv` under `alg` verifies against the public key
 * in `pub_file`: the verifier names `alg_name` and yields the sub. */
static void check_public_key_token_accepted(const char *pub_file, jwt_alg_t alg,
                                            const char *priv, const char *alg_name) {
  auth_verifier_t *v = pem_verifier(pub_file);
  claims_t c = {.sub = alg_name, .exp = now_s() + 300};
  char *tok = sign(alg, priv, strlen(priv), &c);
  char user[FZIP_USER_ID_MAX + 1] = "";
  const char *msg = verify(v, tok, user);
  bool alg_ok = strcmp(auth_verifier_alg(v), alg_name) == 0;
  free(tok);
  auth_verifier_destroy(v);
  CHECK(alg_ok);
  CHECK(strcmp(msg, "") == 0);
  CHECK(strcmp(user, alg_name) == 0);
}

static void test_rs256_valid_token_is_accepted(void) {
  check_public_key_token_accepted(g_rsa_pub_file, JWT_ALG_RS256, g_rsa_priv, "RS256");
}

static void test_es256_valid_token_is_accepted(void) {
  check_public_key_token_accepted(g_ec_pub_file, JWT_ALG_ES256, g_ec_priv, "ES256");
}

static void test_missing_authorization_header_is_rejected(void) {
  auth_verifier_t *v = hs_verifier(NULL, NULL);
  char user[FZIP_USER_ID_MAX + 1];
  fzip_error_t err = {0};
  bool ok = auth_rpc_authenticate(v, NULL, user, sizeof user, &err);
  auth_verifier_destroy(v);
  CHECK(!ok);
  CHECK(err.code == FZIP_ERR_UNAUTHENTICATED);
  CHECK(strstr(err.message, "missing authorization") != NULL);
}

static void test_non_bearer_scheme_is_rejected(void) {
  auth_verifier_t *v = hs_verifier(NULL, NULL);
  char user[FZIP_USER_ID_MAX + 1];
  fzip_error_t err = {0};
  bool ok = auth_rpc_authenticate(v, "Basic dXNlcjpwYXNz", user, sizeof user, &err);
  auth_verifier_destroy(v);
  CHECK(!ok);
  CHECK(strstr(err.message, "not a Bearer") != NULL);
}

static void test_bearer_header_with_valid_token_authenticates(void) {
  auth_verifier_t *v = hs_verifier(NULL, NULL);
  claims_t c = {.sub = "u1", .exp = now_s() + 60};
  char *tok = sign_hs(&c);
  char header[AUTH_TOKEN_MAX + 16];
  char user[FZIP_USER_ID_MAX + 1] = "";
  fzip_error_t err = {0};
  bool ok = false;
  snprintf(header, sizeof header, "Bearer %s", tok);
  ok = auth_rpc_authenticate(v, header, user, sizeof user, &err);
  free(tok);
  auth_verifier_destroy(v);
  CHECK_OK(ok, err);
  CHECK(strcmp(user, "u1") == 0);
}

static void test_malformed_token_is_rejected(void) {
  auth_verifier_t *v = hs_verifier(NULL, NULL);
  char user[FZIP_USER_ID_MAX + 1];
  const char *m1 = verify(v, "not-a-jwt", user);
  const char *m1_copy = strstr(m1, "malformed") ? "ok" : m1;
  const char *m2 = verify(v, "abc.def.ghi", user);
  bool m2_ok = strstr(m2, "malformed") != NULL;
  auth_verifier_destroy(v);
  CHECK(strcmp(m1_copy, "ok") == 0);
  CHECK(m2_ok);
}

static void test_expired_token_is_rejected(void) {
  claims_t c = {.sub = "u1", .exp = now_s() - 3600};
  CHECK(hs256_claims_rejected(&c, "expired"));
}

static void test_token_expired_within_leeway_is_accepted(void) {
  claims_t c = {.sub = "u1", .exp = now_s() - 10};
  CHECK(hs256_claims_accepted(&c));
}

static void test_token_without_exp_is_rejected(void) {
  claims_t c = {.sub = "u1"};
  CHECK(hs256_claims_rejected(&c, "no exp"));
}

static void test_not_yet_valid_token_is_rejected(void) {
  claims_t c = {.sub = "u1", .exp = now_s() + 7200, .nbf = now_s() + 3600};
  CHECK(hs256_claims_rejected(&c, "not yet valid"));
}

static void test_token_issued_in_the_future_is_rejected(void) {
  claims_t c = {.sub = "u1", .exp = now_s() + 7200, .iat = now_s() + 3600};
  CHECK(hs256_claims_rejected(&c, "issued in the future"));
}

static void test_wrong_signature_is_rejected(void) {
  const char *other = "another-secret-another-secret-another-secret";
  claims_t c = {.sub = "u1", .exp = now_s() + 300};
  CHECK(signed_token_rejected(hs_verifier(NULL, NULL), JWT_ALG_HS256, other, &c,
                              "bad signature"));
}

static void test_tampered_payload_is_rejected(void) {
  auth_verifier_t *v = pem_verifier(g_rsa_pub_file);
  claims_t c = {.sub = "alice", .exp = now_s() + 300};
  claims_t evil = {.sub = "mallory", .exp = now_s() + 300};
  char *tok = sign(JWT_ALG_RS256, g_rsa_priv, strlen(g_rsa_priv), &c);
  char *tok2 = sign(JWT_ALG_RS256, g_rsa_priv, strlen(g_rsa_priv), &evil);
  /* Graft mallory's payload onto alice's signature. */
  char forged[AUTH_TOKEN_MAX];
  const char *p1 = strchr(tok2, '.'), *p2 = strrchr(tok2, '.'), *s = strrchr(tok, '.');
  snprintf(forged, sizeof forged, "%.*s%.*s%s", (int)(p1 - tok2), tok2, (int)(p2 - p1), p1, s);
  free(tok);
  free(tok2);
  CHECK_REJECTED(v, forged, "bad signature");
  auth_verifier_destroy(v);
}

static void test_wrong_audience_is_rejected(void) {
  auth_verifier_t *v = hs_verifier(NULL, "fzip");
  claims_t c = {.sub = "u1", .exp = now_s() + 300, .aud = "someone-else"};
  claims_t none = {.sub = "u1", .exp = now_s() + 300};
  char *tok = sign_hs(&c);
  char *tok2 = sign_hs(&none);
  CHECK_REJECTED(v, tok, "wrong audience");
  CHECK_REJECTED(v, tok2, "wrong audience");
  free(tok);
  free(tok2);
  auth_verifier_destroy(v);
}

static void test_audience_in_array_is_accepted(void) {
  auth_verifier_t *v = hs_verifier(NULL, "fzip");
  claims_t c = {.sub = "u1", .exp = now_s() + 300, .aud_json = "[\"web\", \"fzip\"]"};
  claims_t bad = {.sub = "u1", .exp = now_s() + 300, .aud_json = "[\"web\", \"api\"]"};
  char *tok = sign_hs(&c);
  char *tok2 = sign_hs(&bad);
  char user[FZIP_USER_ID_MAX + 1];
  const char *msg = verify(v, tok, user);
  bool accepted = strcmp(msg, "") == 0;
  CHECK_REJECTED(v, tok2, "wrong audience");
  free(tok);
  free(tok2);
  auth_verifier_destroy(v);
  CHECK(accepted);
}

static void test_wrong_issuer_is_rejected(void) {
  auth_verifier_t *v = hs_verifier("https://auth.housef3.example", NULL);
  claims_t c = {.sub = "u1", .exp = now_s() + 300, .iss = "https://evil.example"};
  claims_t good = {.sub = "u1", .exp = now_s() + 300, .iss = "https://auth.housef3.example"};
  char *tok = sign_hs(&c);
  char *tok2 = sign_hs(&good);
  char user[FZIP_USER_ID_MAX + 1];
  bool good_ok = strcmp(verify(v, tok2, user), "") == 0;
  CHECK_REJECTED(v, tok, "wrong issuer");
  free(tok);
  free(tok2);
  auth_verifier_destroy(v);
  CHECK(good_ok);
}

static void test_alg_none_is_rejected(void) {
  claims_t c = {.sub = "u1", .exp = now_s() + 300};
  CHECK(signed_token_rejected(hs_verifier(NULL, NULL), JWT_ALG_NONE, NULL, &c, "alg none"));
}

static void test_hs256_signed_with_rsa_public_key_is_rejected(void) {
  /* The alg-confusion attack: the RSA public key is public, so an attacker
   * can HMAC with it; a naive verifier would accept that. */
  claims_t c = {.sub = "admin", .exp = now_s() + 300};
  CHECK(signed_token_rejected(pem_verifier(g_rsa_pub_file), JWT_ALG_HS256, g_rsa_pub, &c,
                              "HS256 not accepted"));
}

static void test_rs256_token_against_hs256_verifier_is_rejected(void) {
  claims_t c = {.sub = "u1", .exp = now_s() + 300};
  CHECK(signed_token_rejected(hs_verifier(NULL, NULL), JWT_ALG_RS256, g_rsa_priv, &c,
                              "RS256 not accepted"));
}

static void test_missing_or_invalid_sub_is_rejected(void) {
  auth_verifier_t *v = hs_verifier(NULL, NULL);
  char long_sub[FZIP_USER_ID_MAX + 2];
  claims_t none = {.exp = now_s() + 300};
  claims_t empty = {.sub = "", .exp = now_s() + 300};
  claims_t space = {.sub = "a b", .exp = now_s() + 300};
  claims_t longc = {.sub = long_sub, .exp = now_s() + 300};
  char *t1, *t2, *t3, *t4;
  memset(long_sub, 'x', sizeof long_sub - 1);
  long_sub[sizeof long_sub - 1] = '\0';
  t1 = sign_hs(&none);
  t2 = sign_hs(&empty);
  t3 = sign_hs(&space);
  t4 = sign_hs(&longc);
  CHECK_REJECTED(v, t1, "no sub");
  CHECK_REJECTED(v, t2, "no sub");
  CHECK_REJECTED(v, t3, "not a valid user id");
  CHECK_REJECTED(v, t4, "not a valid user id");
  free(t1);
  free(t2);
  free(t3);
  free(t4);
  auth_verifier_destroy(v);
}

static void test_bad_configuration_is_refused_with_reason(void) {
  auth_verifier_t *v = NULL;
  fzip_error_t err = {0};
  auth_options_t both = {.secret_file = g_secret_file, .public_key_file = g_rsa_pub_file};
  auth_options_t neither = {0};
  auth_options_t missing = {.secret_file = "/nonexistent/secret"};
  auth_options_t shortk = {.secret_file = g_short_secret_file};
  auth_options_t notpem = {.public_key_file = g_secret_file};
  CHECK_FAILS(auth_verifier_new(&v, &both, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK_FAILS(auth_verifier_new(&v, &neither, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK_FAILS(auth_verifier_new(&v, &missing, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "/nonexistent/secret") != NULL);
  CHECK_FAILS(auth_verifier_new(&v, &shortk, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "at least") != NULL);
  CHECK_FAILS(auth_verifier_new(&v, &notpem, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK(v == NULL);
}

static void test_minted_dev_token_verifies(void) {
  char path[PATH_MAX_LEN + 16];
  fzip_error_t err = {0};
  auth_verifier_t *v = NULL;
  auth_options_t o = {.issuer = "dev", .audience = "fzip", .leeway_s = 0};
  auth_mint_options_t m = {.user_id = "dev-user", .ttl_s = 120, .issuer = "dev", .audience = "fzip"};
  char *tok = NULL;
  char user[FZIP_USER_ID_MAX + 1] = "";
  bool ok = false;

  snprintf(path, sizeof path, "%s/minted", g_dir);
  CHECK_OK(auth_write_random_secret(path, &err), err);
  /* A second write must not clobber an existing secret. */
  CHECK_FAILS(auth_write_random_secret(path, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK_OK(auth_mint_hs256(&tok, path, &m, &err), err);
  o.secret_file = path;
  CHECK_OK(auth_verifier_new(&v, &o, &err), err);
  ok = auth_verify_token(user, sizeof user, v, tok, now_s(), &err);
  free(tok);
  auth_verifier_destroy(v);
  CHECK_OK(ok, err);
  CHECK(strcmp(user, "dev-user") == 0);
}

int main(void) {
  setup();
  RUN(test_hs256_valid_token_is_accepted_and_yields_sub);
  RUN(test_rs256_valid_token_is_accepted);
  RUN(test_es256_valid_token_is_accepted);
  RUN(test_missing_authorization_header_is_rejected);
  RUN(test_non_bearer_scheme_is_rejected);
  RUN(test_bearer_header_with_valid_token_authenticates);
  RUN(test_malformed_token_is_rejected);
  RUN(test_expired_token_is_rejected);
  RUN(test_token_expired_within_leeway_is_accepted);
  RUN(test_token_without_exp_is_rejected);
  RUN(test_not_yet_valid_token_is_rejected);
  RUN(test_token_issued_in_the_future_is_rejected);
  RUN(test_wrong_signature_is_rejected);
  RUN(test_tampered_payload_is_rejected);
  RUN(test_wrong_audience_is_rejected);
  RUN(test_audience_in_array_is_accepted);
  RUN(test_wrong_issuer_is_rejected);
  RUN(test_alg_none_is_rejected);
  RUN(test_hs256_signed_with_rsa_public_key_is_rejected);
  RUN(test_rs256_token_against_hs256_verifier_is_rejected);
  RUN(test_missing_or_invalid_sub_is_rejected);
  RUN(test_bad_configuration_is_refused_with_reason);
  RUN(test_minted_dev_token_verifies);
  teardown();
  return fzip_test_summary();
}
