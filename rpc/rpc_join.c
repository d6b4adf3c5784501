/*
 * rpc_join: see internal/rpc_join.h.  Slices are peeked
 * (grpc_byte_buffer_reader_peek: the buffer's own slices, no reference
 * taken, inlined ones included), so a one-slice message is read in place
 * for as long as its byte buffer lives.
 */
#include "rpc_join.h"

#include <grpc/byte_buffer_reader.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "a response message": what an out-of-memory error names. */
#define RPC_JOIN_LABEL_MAX 64

struct rpc_join {
  uint8_t *data;
  size_t cap;
};

void rpc_join_trim(rpc_join_t *join) {
  if (!join)
    return;
  free(join->data);
  join->data = NULL;
  join->cap = 0;
}

void rpc_join_destroy(rpc_join_t *join) {
  rpc_join_trim(join);
  free(join);
}

/* Room for n bytes.  The old contents need not survive, so no realloc
 * (which would copy them). */
static bool reserve(rpc_join_t *join, size_t n, const char *what, fzip_error_t *error) {
  char label[RPC_JOIN_LABEL_MAX];
  if (n <= join->cap)
    return true;
  free(join->data);
  join->data = malloc(n);
  join->cap = join->data ? n : 0;
  if (join->data)
    return true;
  snprintf(label, sizeof label, "a %s message", what);
  return fzip_error_oom(error, label);
}

/* Copies the reader's slices from `s` on, `total` bytes in all, into the
 * join's buffer (making the join first if need be).  Slices that do not
 * add up to the length are a gRPC bug, not the peer's: INTERNAL. */
static bool copy_slices(rpc_join_t **joinp, grpc_byte_buffer_reader *reader, grpc_slice *s,
                        size_t total, const char *what, fzip_error_t *error) {
  size_t at = 0;
  if (!*joinp && !(*joinp = calloc(1, sizeof(rpc_join_t))))
    return fzip_error_oom(error, "a message join");
  rpc_join_t *join = *joinp;
  if (!reserve(join, total, what, error))
    return false;
  do {
    size_t n = GRPC_SLICE_LENGTH(*s);
    if (n > total - at)
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL,
                            "%s slices exceed its length of %zu bytes", what, total);
    memcpy(join->data + at, GRPC_SLICE_START_PTR(*s), n);
    at += n;
  } while (grpc_byte_buffer_reader_peek(reader, &s));
  if (at != total)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL,
                          "%s slices hold %zu of its %zu bytes", what, at, total);
  return true;
}

bool rpc_join_bytes(const uint8_t **out, size_t *len, rpc_join_t **join, grpc_byte_buffer *buf,
                    fzip_code_t bad_code, const char *what, fzip_error_t *error) {
  grpc_byte_buffer_reader reader;
  grpc_slice *s = NULL;
  size_t total;
  bool ok = false;
  *out = (const uint8_t *)"";
  *len = 0;
  if (!grpc_byte_buffer_reader_init(&reader, buf))
    return fzip_error_set(error, FZIP_DOMAIN_RPC, bad_code, "cannot read the %s message", what);
  /* buffer_out is the inflated copy of a compressed buffer (the reader's,
   * gone with it), else `buf` itself. */
  total = grpc_byte_buffer_length(reader.buffer_out);
  if (total == 0) {
    ok = true;
    goto done;
  }
  if (!grpc_byte_buffer_reader_peek(&reader, &s)) {
    fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL, "%s of %zu bytes has no data", what,
                   total);
    goto done;
  }
  if (reader.buffer_out == buf && GRPC_SLICE_LENGTH(*s) == total) {
    *out = GRPC_SLICE_START_PTR(*s);
  } else {
    if (!copy_slices(join, &reader, s, total, what, error))
      goto done;
    *out = (*join)->data;
  }
  *len = total;
  ok = true;
done:
  grpc_byte_buffer_reader_destroy(&reader);
  return ok;
}
