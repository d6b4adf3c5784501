/*
 * pkg_set: the hash sets the format code keeps ids and keys in, and the
 * one way its arrays grow.
 *
 * Two shapes, one scheme: open addressing with linear probing in a
 * power-of-two table kept at most half full, doubled when it would not
 * be.  pkg_strset_t owns copies of its strings (the writer's referenced
 * ids, the validator's ids that others refer to); pkg_fpset_t keeps only
 * 64-bit fingerprints (the JSON reader's keys of a large object; the
 * validator's transaction and analytics ids go to pkg_idrun), 8 bytes a
 * slot whatever the string's length, at the price of treating a
 * fingerprint collision as a match (callers confirm, or accept odds of
 * about n^2 / 2^65).
 *
 * A zeroed struct is an empty set; _free releases it and leaves it empty.
 * Sets grow only as far as the caller's `max` (members): past it, add
 * says so and changes nothing.  The structs are open so that callers may
 * walk the slots (an empty slot is NULL or 0).
 */
#ifndef PKG_SET_H
#define PKG_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  char **slots;
  size_t cap; /* 0 or a power of two */
  size_t n;
} pkg_strset_t;

typedef struct {
  uint64_t *slots;
  size_t cap; /* 0 or a power of two */
  size_t n;
} pkg_fpset_t;

/* What pkg_*set_add did. */
typedef enum {
  PKG_SET_ADDED = 1,
  PKG_SET_PRESENT = 0,
  PKG_SET_OOM = -1,  /* the table could not grow or the copy failed */
  PKG_SET_FULL = -2, /* already `max` members */
} pkg_set_rc_t;

/* 64-bit fingerprint of s[0..len): a multiply-xorshift per 8 bytes and a
 * splitmix finaliser (the table index is its low bits); never 0.  Not
 * keyed: a caller bounds its set's size, not its probe lengths. */
uint64_t pkg_set_hash(const char *s, size_t len);

bool pkg_strset_has(const pkg_strset_t *set, const char *s);
pkg_set_rc_t pkg_strset_add(pkg_strset_t *set, const char *s, size_t max);
void pkg_strset_free(pkg_strset_t *set);

pkg_set_rc_t pkg_fpset_add(pkg_fpset_t *set, uint64_t fingerprint, size_t max);
void pkg_fpset_free(pkg_fpset_t *set);

/* Room for one more item in `items`, an array of n items of `size` bytes
 * with room for *cap: returns the array, moved and *cap doubled (from
 * `first`) when it was full, or NULL when it cannot grow (`items` is then
 * intact and still the caller's). */
void *pkg_array_room(void *items, size_t *cap, size_t n, size_t size, size_t first);

#endif
