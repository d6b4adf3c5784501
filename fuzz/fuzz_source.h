/*
 * fuzz_source: the fuzz input as a pull source (pkgjr_read_fn,
 * pkgs_source_fn) that hands out at most `piece` bytes per read, so that
 * the parser's refills land inside its tokens and chunks.
 */
#ifndef FUZZ_SOURCE_H
#define FUZZ_SOURCE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fzip_error.h"

typedef struct {
  const uint8_t *data;
  size_t size, pos;
  size_t piece; /* bytes per read at most */
} fuzz_source_t;

static inline bool fuzz_source_read(void *ctx, void *buf, size_t cap, size_t *n,
                                    fzip_error_t *error) {
  fuzz_source_t *s = ctx;
  size_t k = s->size - s->pos;
  (void)error;
  if (k > s->piece)
    k = s->piece;
  if (k > cap)
    k = cap;
  memcpy(buf, s->data + s->pos, k);
  s->pos += k;
  *n = k;
  return true;
}

#endif
