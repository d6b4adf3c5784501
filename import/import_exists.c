/*
 * import_exists: see import_exists.h.
 */
#include "import_exists.h"

_Static_assert(PKGV_EXISTS_BATCH_MAX <= STORE_BATCH_MAX,
               "one exists call of the validator is one store batch");

static bool store_exists(void *ctx, bool *exists, bson_t **docs, fzip_kind_t kind,
                         const char *const *ids, size_t n, fzip_error_t *error) {
  const import_exists_t *c = ctx;
  if (!docs)
    return store_entity_exists_many(exists, c->store, c->user_id, kind, ids, n, error);
  if (!store_entity_get_many(docs, c->store, c->user_id, kind, ids, n, NULL, error))
    return false;
  for (size_t i = 0; i < n; i++)
    exists[i] = docs[i] != NULL;
  return true;
}

/* One document at most: an index seek, however many the user has. */
static bool store_any(void *ctx, bool *any, fzip_kind_t kind, fzip_error_t *error) {
  const import_exists_t *c = ctx;
  store_filter_t one = {.limit = 1};
  store_cursor_t *cur = NULL;
  const bson_t *doc = NULL;
  if (!store_cursor_new(&cur, c->store, c->user_id, kind, &one, error))
    return false;
  *any = store_cursor_next(cur, &doc, error);
  store_cursor_destroy(cur);
  return !fzip_error_is_set(error);
}

bool import_exists_use(pkgv_options_t *options, import_exists_t *ctx, fzip_error_t *error) {
  if (!ctx->user_id || !*ctx->user_id)
    return fzip_error_set(error, FZIP_DOMAIN_VALIDATION, FZIP_ERR_INVALID_ARGUMENT,
                          "a user id is needed to check conflicts");
  options->exists = store_exists;
  options->any = store_any;
  options->exists_ctx = ctx;
  return true;
}
