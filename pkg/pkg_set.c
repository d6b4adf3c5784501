/*
 * pkg_set: see pkg_set.h.
 */
#include "pkg_set.h"

#include <stdlib.h>
#include <string.h>

#define SET_FIRST_CAP 64 /* slots of a set's first table */

/* Eight bytes per multiply instead of FNV-1a's one: the export hashes
 * about four ids (36 bytes each) per transaction, and byte-wise FNV was
 * most of pkg_strset_add's 2% of an export's CPU (docs/BENCHMARKS.md,
 * run W). */
uint64_t pkg_set_hash(const char *s, size_t len) {
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)len, w;
  size_t i = 0;

  for (; i + 8 <= len; i += 8) {
    memcpy(&w, s + i, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdULL;
    h ^= h >> 32;
  }
  if (i < len) {
    w = 0;
    memcpy(&w, s + i, len - i);
    h = (h ^ w) * 0xff51afd7ed558ccdULL;
    h ^= h >> 32;
  }
  h ^= h >> 33; /* splitmix-style finaliser: the table index is the low bits */
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h ? h : 1; /* 0 marks an empty fingerprint slot */
}

static uint64_t str_hash(const char *s) {
  return pkg_set_hash(s, strlen(s));
}

/* The next capacity, or 0 if the set is not too full for one more. */
static size_t next_cap(size_t cap, size_t n) {
  if ((n + 1) * 2 <= cap)
    return 0;
  return cap ? cap * 2 : SET_FIRST_CAP;
}

/* Probes for s from its hash h: true if present, else *free_slot is the
 * free slot where it goes (the first on its probe sequence). */
static bool str_find(const pkg_strset_t *set, const char *s, uint64_t h, size_t *free_slot) {
  size_t j = h & (set->cap - 1);
  for (; set->slots[j]; j = (j + 1) & (set->cap - 1)) {
    /* the first byte settles most misses without a call */
    if (set->slots[j][0] == s[0] && strcmp(set->slots[j], s) == 0)
      return true;
  }
  *free_slot = j;
  return false;
}

bool pkg_strset_has(const pkg_strset_t *set, const char *s) {
  size_t j;
  return set->cap && str_find(set, s, str_hash(s), &j);
}

/* The free slot where a string hashing to h goes. */
static size_t str_slot(char **slots, size_t cap, uint64_t h) {
  size_t j = h & (cap - 1);
  while (slots[j])
    j = (j + 1) & (cap - 1);
  return j;
}

static bool strset_grow(pkg_strset_t *set, size_t cap) {
  char **slots = calloc(cap, sizeof *slots);
  if (!slots)
    return false;
  for (size_t i = 0; i < set->cap; i++) {
    if (set->slots[i])
      slots[str_slot(slots, cap, str_hash(set->slots[i]))] = set->slots[i];
  }
  free(set->slots);
  set->slots = slots;
  set->cap = cap;
  return true;
}

/* One hash and one probe for both the lookup and the insertion (the
 * writer adds every referenced id of every document, most of them
 * already present). */
pkg_set_rc_t pkg_strset_add(pkg_strset_t *set, const char *s, size_t max) {
  size_t len = strlen(s), cap, j = 0;
  uint64_t h = pkg_set_hash(s, len);
  char *copy;

  if (set->cap && str_find(set, s, h, &j))
    return PKG_SET_PRESENT;
  if (set->n >= max)
    return PKG_SET_FULL;
  if ((cap = next_cap(set->cap, set->n))) {
    if (!strset_grow(set, cap))
      return PKG_SET_OOM;
    j = str_slot(set->slots, set->cap, h);
  }
  if (!(copy = malloc(len + 1)))
    return PKG_SET_OOM;
  memcpy(copy, s, len + 1);
  set->slots[j] = copy;
  set->n++;
  return PKG_SET_ADDED;
}

void pkg_strset_free(pkg_strset_t *set) {
  for (size_t i = 0; i < set->cap; i++)
    free(set->slots[i]);
  free(set->slots);
  memset(set, 0, sizeof *set);
}

/* The slot holding fp, or the free one where it goes. */
static size_t fp_slot(const uint64_t *slots, size_t cap, uint64_t fp) {
  size_t j = fp & (cap - 1);
  while (slots[j] && slots[j] != fp)
    j = (j + 1) & (cap - 1);
  return j;
}

static bool fpset_grow(pkg_fpset_t *set, size_t cap) {
  uint64_t *slots = calloc(cap, sizeof *slots);
  if (!slots)
    return false;
  for (size_t i = 0; i < set->cap; i++) {
    if (set->slots[i])
      slots[fp_slot(slots, cap, set->slots[i])] = set->slots[i];
  }
  free(set->slots);
  set->slots = slots;
  set->cap = cap;
  return true;
}

pkg_set_rc_t pkg_fpset_add(pkg_fpset_t *set, uint64_t fingerprint, size_t max) {
  size_t cap, j;

  if (set->cap && set->slots[fp_slot(set->slots, set->cap, fingerprint)] == fingerprint)
    return PKG_SET_PRESENT;
  if (set->n >= max)
    return PKG_SET_FULL;
  if ((cap = next_cap(set->cap, set->n)) && !fpset_grow(set, cap))
    return PKG_SET_OOM;
  j = fp_slot(set->slots, set->cap, fingerprint);
  set->slots[j] = fingerprint;
  set->n++;
  return PKG_SET_ADDED;
}

void pkg_fpset_free(pkg_fpset_t *set) {
  free(set->slots);
  memset(set, 0, sizeof *set);
}

void *pkg_array_room(void *items, size_t *cap, size_t n, size_t size, size_t first) {
  size_t want;
  void *p;

  if (n < *cap)
    return items;
  want = *cap ? *cap * 2 : first;
  if (want < *cap || want > SIZE_MAX / size || !(p = realloc(items, want * size)))
    return NULL;
  *cap = want;
  return p;
}
