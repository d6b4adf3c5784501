/*
 * import_exists: the store side of the validator's conflict step
 * (pkg/pkg_validate.h).
 *
 * pkgv_validate asks an "exists" callback which ids the importing user
 * already has, and for the preview as a diff the stored documents
 * themselves, and knows nothing of a store; this is that callback over a
 * store_t, one store_entity_get_many (or store_entity_exists_many when
 * only existence is asked) per batch, and the once-per-kind question
 * whether the user has any entity of the kind at all (a cursor of one
 * document), which lets an import into an empty user skip the batches.
 * Reads see committed data only, as every reader but the import's own
 * restore does.
 */
#ifndef IMPORT_EXISTS_H
#define IMPORT_EXISTS_H

#include <stdbool.h>

#include "fzip_error.h"
#include "pkg_validate.h"
#include "store.h"

/* What the callback asks about: borrowed, outliving the validation. */
typedef struct {
  store_t *store;
  const char *user_id; /* the importing user */
} import_exists_t;

/* Points options->exists and options->any at the store callbacks for
 * `ctx` (borrowed until pkgv_validate returns).  INVALID_ARGUMENT without
 * a user id. */
bool import_exists_use(pkgv_options_t *options, import_exists_t *ctx, fzip_error_t *error);

#endif
