/*
 * import_map: see import_map.h.
 *
 * apply rebuilds a document field by field: the entity's own id and every
 * field the reference table (pkgv_ref_fields) names are looked at, the
 * rest is copied as it is.  A reference is, in this order: to an entity
 * restored from the package (kept, or under as_copy remapped to the id
 * that entity gets), dangling (cleared; validation refused it unless
 * drop_dangling), or to the user's own data (kept).  Under as_copy a
 * transaction's transactionHash is left out (map_field).
 */
#include "import_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct import_map {
  pkgv_restore_t ro;
  bool active;         /* not the defaults */
  pkgv_refs_t *refs;   /* the validator's verdicts; NULL before take_refs */
  char import_id[FZIP_ID_MAX + 1];
  uint64_t cleared[FZIP_KIND_COUNT], dropped[FZIP_KIND_COUNT], not_selected[FZIP_KIND_COUNT];
};

/* ---- options ------------------------------------------------------------ */

static bool bad(const char **field, const char *name, fzip_error_t *error) {
  *field = name;
  return false;
}

bool import_map_check(const Fzip__V1__RestoreOptions *restore, const char **field,
                      fzip_error_t *error) {
  *field = NULL;
  if (!restore)
    return true;
  for (size_t i = 0; i < restore->n_kinds; i++) {
    int k = (int)restore->kinds[i];
    if (k <= 0 || k > FZIP_KIND_COUNT) {
      fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                     "restore.kinds[%zu]: %d is not an entity kind (1-%d)", i, k,
                     FZIP_KIND_COUNT);
      return bad(field, "restore.kinds", error);
    }
  }
  if (restore->n_account_ids > PKGV_RESTORE_ACCOUNTS_MAX) {
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                   "restore.account_ids names %zu accounts; the limit is %d",
                   restore->n_account_ids, PKGV_RESTORE_ACCOUNTS_MAX);
    return bad(field, "restore.account_ids", error);
  }
  for (size_t i = 0; i < restore->n_account_ids; i++) {
    if (!fzip_id_is_valid(restore->account_ids[i])) {
      fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                     "restore.account_ids[%zu] is not a valid id", i);
      return bad(field, "restore.account_ids", error);
    }
  }
  return true;
}

bool import_map_set_options(Fzip__V1__RestoreOptions **job_restore,
                            const Fzip__V1__RestoreOptions *restore, fzip_error_t *error) {
  Fzip__V1__RestoreOptions *copy = NULL;
  uint8_t *packed = NULL;
  size_t n;

  if (restore) {
    n = protobuf_c_message_get_packed_size(&restore->base);
    if (!(packed = malloc(n ? n : 1)))
      return fzip_error_oom(error, "restore options");
    protobuf_c_message_pack(&restore->base, packed);
    copy = fzip__v1__restore_options__unpack(NULL, n, packed);
    free(packed);
    if (!copy)
      return fzip_error_oom(error, "restore options");
  }
  if (*job_restore)
    fzip__v1__restore_options__free_unpacked(*job_restore, NULL);
  *job_restore = copy;
  return true;
}

/* ---- the map ------------------------------------------------------------ */

bool import_map_new(import_map_t **out, const Fzip__V1__RestoreOptions *restore,
                    const char *import_id, fzip_error_t *error) {
  import_map_t *map = calloc(1, sizeof *map);

  *out = NULL;
  if (!map)
    return fzip_error_oom(error, "import map");
  snprintf(map->import_id, sizeof map->import_id, "%s", import_id);
  if (restore) {
    map->ro.as_copy = restore->as_copy;
    map->ro.drop_dangling = restore->drop_dangling_references;
    for (size_t i = 0; i < restore->n_kinds; i++) {
      int k = (int)restore->kinds[i] - 1; /* EntityKind follows fzip_kind_t, from 1 */
      if (k >= 0 && k < FZIP_KIND_COUNT)
        map->ro.kinds |= 1u << k;
    }
    map->ro.account_ids = (const char *const *)restore->account_ids;
    map->ro.n_account_ids = restore->n_account_ids;
  }
  map->active = pkgv_restore_active(&map->ro);
  *out = map;
  return true;
}

void import_map_destroy(import_map_t *map) {
  if (!map)
    return;
  pkgv_refs_destroy(map->refs);
  free(map);
}

const pkgv_restore_t *import_map_restore(const import_map_t *map) {
  return map ? &map->ro : NULL;
}

void import_map_take_refs(import_map_t *map, pkgv_result_t *res) {
  if (!map)
    return;
  pkgv_refs_destroy(map->refs);
  map->refs = res->refs;
  res->refs = NULL;
}

void import_map_new_id(char out[FZIP_UUID_LEN + 1], const char *import_id, fzip_kind_t kind,
                       const char *id) {
  /* NUL-separated, so no two triples hash the same bytes. */
  char buf[3 * (FZIP_ID_MAX + 1) + 32];
  char hex[FZIP_SHA256_HEX_LEN + 1];
  size_t n = 0;
  int v;
  const char *parts[] = {import_id, fzip_kind_info(kind)->name, id};

  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    size_t len = strnlen(parts[i], FZIP_ID_MAX);
    memcpy(buf + n, parts[i], len);
    n += len;
    buf[n++] = '\0';
  }
  fzip_sha256_hex(hex, buf, n);
  v = hex[16] <= '9' ? hex[16] - '0' : hex[16] - 'a' + 10;
  hex[12] = '8';          /* version 8: custom (here SHA-256 based) */
  hex[16] = "89ab"[v & 3]; /* variant 10 */
  snprintf(out, FZIP_UUID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
           hex + 16, hex + 20);
}

const char *import_map_id(const import_map_t *map, fzip_kind_t kind, const char *id,
                          char buf[FZIP_UUID_LEN + 1]) {
  if (!map || !map->ro.as_copy)
    return id;
  import_map_new_id(buf, map->import_id, kind, id);
  return buf;
}

/* ---- apply -------------------------------------------------------------- */

static const char *id_of(const bson_iter_t *it) {
  return BSON_ITER_HOLDS_UTF8(it) ? bson_iter_utf8(it, NULL) : NULL;
}

/* Where a reference to `id` of kind `to` goes: *cleared when it dangles,
 * else the id to store (new under as_copy for the package's entities). */
static const char *map_ref(const import_map_t *map, fzip_kind_t to, const char *id, bool *cleared,
                           char buf[FZIP_UUID_LEN + 1]) {
  *cleared = false;
  if (pkgv_refs_in_package(map->refs, to, id)) {
    if (!map->ro.as_copy)
      return id;
    import_map_new_id(buf, map->import_id, to, id);
    return buf;
  }
  *cleared = pkgv_refs_dangling(map->refs, to, id);
  return id;
}

/* A required reference that dangles: the entity is left out. */
static bool required_dangles(const import_map_t *map, fzip_kind_t kind, const bson_t *doc) {
  size_t n;
  const pkgv_ref_field_t *t = pkgv_ref_fields(&n);
  bson_iter_t it;
  for (size_t i = 0; i < n; i++) {
    const char *id;
    if (t[i].from != kind || !t[i].required || t[i].item ||
        !bson_iter_init_find(&it, doc, t[i].field) || !(id = id_of(&it)))
      continue;
    if (!pkgv_refs_in_package(map->refs, t[i].to, id) &&
        pkgv_refs_dangling(map->refs, t[i].to, id))
      return true;
  }
  return false;
}

/* An array of objects whose `rf->item` is a reference: items whose
 * reference dangles are left out, the others mapped. */
static bool map_array(import_map_t *map, bson_t *out, bson_iter_t *it,
                      const pkgv_ref_field_t *rf, uint64_t *cleared) {
  bson_iter_t arr, f;
  bson_t child;
  char key[16], buf[FZIP_UUID_LEN + 1];
  uint32_t i = 0;
  bool ok = bson_iter_recurse(it, &arr) && bson_append_array_begin(out, rf->field, -1, &child);

  while (ok && bson_iter_next(&arr)) {
    const uint8_t *data;
    uint32_t len;
    bson_t item, mapped;
    const char *id = NULL, *to_id;
    bool gone = false;

    snprintf(key, sizeof key, "%u", i);
    if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) {
      ok = bson_append_iter(&child, key, -1, &arr);
      i++;
      continue;
    }
    bson_iter_document(&arr, &len, &data);
    if (!bson_init_static(&item, data, len))
      return false;
    if (bson_iter_init_find(&f, &item, rf->item))
      id = id_of(&f);
    to_id = id ? map_ref(map, rf->to, id, &gone, buf) : NULL;
    if (gone) {
      (*cleared)++;
      continue;
    }
    ok = bson_append_document_begin(&child, key, -1, &mapped) && bson_iter_init(&f, &item);
    while (ok && bson_iter_next(&f)) {
      if (to_id && strcmp(bson_iter_key(&f), rf->item) == 0)
        ok = bson_append_utf8(&mapped, rf->item, -1, to_id, -1);
      else
        ok = bson_append_iter(&mapped, NULL, 0, &f);
    }
    ok = ok && bson_append_document_end(&child, &mapped);
    i++;
  }
  return ok && bson_append_array_end(out, &child);
}

/* A transaction's transactionHash is a digest over its accountId
 * (docs/FORMAT.md), whose exact text form the format leaves to the writer:
 * a copy, whose accountId is new, stores none rather than a stale one. */
#define COPY_DROPPED_HASH "transactionHash"

/* One field of the document, mapped into `out`. */
static bool map_field(import_map_t *map, bson_t *out, fzip_kind_t kind, bson_iter_t *it,
                      uint64_t *cleared) {
  const char *key = bson_iter_key(it), *id = id_of(it), *to_id;
  const pkgv_ref_field_t *rf = pkgv_ref_field(kind, key);
  char buf[FZIP_UUID_LEN + 1];
  bool gone = false;

  if (map->ro.as_copy && kind == FZIP_KIND_TRANSACTION && strcmp(key, COPY_DROPPED_HASH) == 0)
    return true;
  if (id && map->ro.as_copy && strcmp(key, fzip_kind_info(kind)->id_field) == 0) {
    import_map_new_id(buf, map->import_id, kind, id);
    return bson_append_utf8(out, key, -1, buf, -1);
  }
  if (rf && rf->item && BSON_ITER_HOLDS_ARRAY(it))
    return map_array(map, out, it, rf, cleared);
  if (!rf || rf->item || !id)
    return bson_append_iter(out, NULL, 0, it);
  to_id = map_ref(map, rf->to, id, &gone, buf);
  if (gone) {
    (*cleared)++;
    return true;
  }
  return bson_append_utf8(out, key, -1, to_id, -1);
}

bool import_map_apply(import_map_t *map, fzip_kind_t kind, bson_t **doc, fzip_error_t *error) {
  bson_t *out = NULL;
  bson_iter_t it;
  uint64_t cleared = 0;
  bool ok, selected;

  if (!map || !map->active || !*doc)
    return true;
  selected = pkgv_selected(&map->ro, kind, *doc);
  if (!selected || required_dangles(map, kind, *doc)) {
    if (!selected)
      map->not_selected[kind]++;
    else
      map->dropped[kind]++;
    bson_destroy(*doc);
    *doc = NULL;
    return true;
  }
  out = bson_new();
  ok = bson_iter_init(&it, *doc);
  while (ok && bson_iter_next(&it))
    ok = map_field(map, out, kind, &it, &cleared);
  if (!ok) {
    bson_destroy(out);
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "%s: the mapped document does not fit in a BSON document",
                          fzip_kind_info(kind)->name);
  }
  map->cleared[kind] += cleared;
  bson_destroy(*doc);
  *doc = out;
  return true;
}

void import_map_counts(const import_map_t *map, Fzip__V1__EntityCounts *counts) {
  int k = (int)counts->kind - 1;
  if (!map || !map->active || k < 0 || k >= FZIP_KIND_COUNT)
    return;
  counts->references_cleared = (int64_t)map->cleared[k];
  counts->dropped = (int64_t)map->dropped[k];
  counts->not_selected = (int64_t)map->not_selected[k];
}
