/* fzip_util: see fzip_util.h. */
#include "fzip_util.h"

#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int64_t fzip_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t fzip_monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void fzip_sleep_ms(int64_t ms) {
  struct timespec ts;
  if (ms <= 0)
    return;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

const char *fzip_tmp_root(const char *dir) {
  if (!dir || !*dir)
    dir = getenv("TMPDIR");
  return dir && *dir ? dir : "/tmp";
}

bool fzip_tmp_error(fzip_error_t *error, const char *what, const char *doing, const char *root) {
  int e = errno;
  return fzip_error_set(error, FZIP_DOMAIN_SYS,
                        e == ENOSPC || e == EDQUOT ? FZIP_ERR_RESOURCE_EXHAUSTED
                                                   : FZIP_ERR_INTERNAL,
                        "%s: %s its temporary file in %s: %s", what, doing, root,
                        e ? strerror(e) : "short read");
}

int fzip_cond_init_monotonic(pthread_cond_t *cv) {
  pthread_condattr_t attr;
  int rc = pthread_condattr_init(&attr);

  if (rc != 0)
    return rc;
  rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  if (rc == 0)
    rc = pthread_cond_init(cv, &attr);
  pthread_condattr_destroy(&attr);
  return rc;
}

struct timespec fzip_monotonic_deadline(int64_t ms) {
  struct timespec t;

  clock_gettime(CLOCK_MONOTONIC, &t);
  t.tv_sec += (time_t)(ms / 1000);
  t.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (t.tv_nsec >= 1000000000L) {
    t.tv_sec++;
    t.tv_nsec -= 1000000000L;
  }
  return t;
}

bool fzip_uuid_v4(char out[FZIP_UUID_LEN + 1], fzip_error_t *error) {
  unsigned char b[16];
  size_t got = 0;

  while (got < sizeof b) {
    ssize_t n = getrandom(b + got, sizeof b - got, 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "getrandom: %s",
                            strerror(errno));
    }
    got += (size_t)n;
  }
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  snprintf(out, FZIP_UUID_LEN + 1,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
           b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
  return true;
}

struct fzip_sha256 {
  EVP_MD_CTX *ctx;
};

fzip_sha256_t *fzip_sha256_new(void) {
  fzip_sha256_t *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  h->ctx = EVP_MD_CTX_new();
  if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
    fzip_sha256_destroy(h);
    return NULL;
  }
  return h;
}

void fzip_sha256_update(fzip_sha256_t *h, const void *data, size_t len) {
  if (len)
    EVP_DigestUpdate(h->ctx, data, len);
}

void fzip_sha256_final_hex(fzip_sha256_t *h, char out[FZIP_SHA256_HEX_LEN + 1]) {
  unsigned char md[FZIP_SHA256_HEX_LEN / 2];
  unsigned int mdlen = 0;
  static const char hex[] = "0123456789abcdef";

  EVP_DigestFinal_ex(h->ctx, md, &mdlen);
  for (unsigned i = 0; i < sizeof md; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[FZIP_SHA256_HEX_LEN] = '\0';
}

void fzip_sha256_reset(fzip_sha256_t *h) { EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL); }

void fzip_sha256_destroy(fzip_sha256_t *h) {
  if (!h)
    return;
  EVP_MD_CTX_free(h->ctx);
  free(h);
}

void fzip_sha256_hex(char out[FZIP_SHA256_HEX_LEN + 1], const void *data, size_t len) {
  fzip_sha256_t *h = fzip_sha256_new();
  if (!h)
    abort(); /* allocation of a few bytes at start-up; nothing sane to do */
  fzip_sha256_update(h, data, len);
  fzip_sha256_final_hex(h, out);
  fzip_sha256_destroy(h);
}

char *fzip_strndup(const char *s, size_t max) {
  if (!s)
    return NULL;
  return strndup(s, max);
}

bool fzip_read_small_file(char **out, size_t *len, const char *path, size_t max,
                          fzip_error_t *error) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t n = 0;
  bool ok = false;

  if (!f)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT, "%s: %s", path,
                          strerror(errno));
  buf = malloc(max + 1);
  if (!buf) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  n = fread(buf, 1, max + 1, f);
  if (ferror(f)) {
    fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT, "%s: read error", path);
    goto done;
  }
  if (n > max) {
    fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                   "%s: larger than %zu bytes", path, max);
    goto done;
  }
  buf[n] = '\0';
  if (len)
    *len = n;
  *out = buf;
  buf = NULL;
  ok = true;
done:
  free(buf);
  fclose(f);
  return ok;
}

void fzip_release_memory(void) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

void fzip_limit_malloc_arenas(void) {
#ifdef __GLIBC__
  const char *env = getenv("MALLOC_ARENA_MAX");
  if (!env || !*env)
    mallopt(M_ARENA_MAX, FZIP_MALLOC_ARENAS);
#endif
}
