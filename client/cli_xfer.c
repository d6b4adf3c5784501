/*
 * cli_xfer: see cli_xfer.h.  Files are hashed in fixed buffers so memory
 * stays flat whatever the package size.
 */
#include "cli_xfer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HASH_BUFFER (256 * 1024)

bool cli_xfer_hash_stream(fzip_sha256_t *h, FILE *f, int64_t len, const char *path,
                          fzip_error_t *error) {
  char *buf = malloc(HASH_BUFFER);
  bool ok = false;
  if (!buf)
    return fzip_error_oom(error, NULL);
  while (len > 0) {
    size_t want = len < HASH_BUFFER ? (size_t)len : HASH_BUFFER;
    size_t n = fread(buf, 1, want, f);
    if (n == 0) {
      fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: read failed or file shrank",
                     path);
      goto done;
    }
    fzip_sha256_update(h, buf, n);
    len -= (int64_t)n;
  }
  ok = true;
done:
  free(buf);
  return ok;
}

bool cli_xfer_hash_file(char hex[FZIP_SHA256_HEX_LEN + 1], int64_t *size, const char *path,
                        fzip_error_t *error) {
  fzip_sha256_t *h = NULL;
  bool ok = false;
  FILE *f = fopen(path, "rb");
  if (!f)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_NOT_FOUND, "%s: %s", path,
                          strerror(errno));
  if (fseeko(f, 0, SEEK_END) != 0 || (*size = ftello(f)) < 0 || fseeko(f, 0, SEEK_SET) != 0) {
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: cannot size: %s", path,
                   strerror(errno));
    goto done;
  }
  h = fzip_sha256_new();
  if (!h) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  if (!cli_xfer_hash_stream(h, f, *size, path, error))
    goto done;
  fzip_sha256_final_hex(h, hex);
  ok = true;
done:
  fzip_sha256_destroy(h);
  fclose(f);
  return ok;
}

void cli_xfer_throttle(int64_t moved, int64_t started_ms, int64_t rate) {
  if (rate <= 0)
    return;
  int64_t due_ms = moved * 1000 / rate;
  int64_t ahead = due_ms - (fzip_monotonic_ms() - started_ms);
  fzip_sleep_ms(ahead);
}
