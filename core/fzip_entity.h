/*
 * fzip_entity: the table of entity kinds a user's state is made of.
 *
 * One row per kind says its name in the package (data/<file>.json and the
 * array key inside), the field that holds its id, and the fields the store
 * indexes for filters.  Storage, the package writer and the validator all
 * read this table instead of spelling kinds out again.
 *
 * Entity documents everywhere (store, package) are bson_t / JSON objects
 * with the camelCase field names of docs/FORMAT.md: money is a decimal
 * string, times are int64 epoch milliseconds.  The owning user id is NOT
 * part of the document in the store: it is the store's key.
 */
#ifndef FZIP_ENTITY_H
#define FZIP_ENTITY_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
  FZIP_KIND_ACCOUNT = 0,
  FZIP_KIND_CATEGORY,
  FZIP_KIND_FILE_MAP,
  FZIP_KIND_TRANSACTION_FILE,
  FZIP_KIND_TRANSACTION,
  FZIP_KIND_ANALYTICS,
  FZIP_KIND_COUNT
} fzip_kind_t;

typedef struct {
  fzip_kind_t kind;
  const char *name;          /* "transactions": collection, data file, array key */
  const char *data_file;     /* "data/transactions.json" */
  const char *id_field;      /* "transactionId" */
  const char *account_field; /* field filtered by account ids, or NULL */
  const char *date_field;    /* field filtered by date range, or NULL */
} fzip_kind_info_t;

/* Kinds in dependency (restore) order: accounts, categories, file maps,
 * transaction files, transactions, analytics. */
const fzip_kind_info_t *fzip_kind_info(fzip_kind_t kind);
/* Look a kind up by its name ("accounts"); returns false if unknown. */
bool fzip_kind_from_name(fzip_kind_t *out, const char *name);

/* Longest entity id the project accepts anywhere (bytes). */
#define FZIP_ID_MAX 128
/* Longest user id (JWT sub) accepted. */
#define FZIP_USER_ID_MAX 256

/* True if `id` is a non-empty printable-ASCII string of at most FZIP_ID_MAX
 * bytes with no '/', '\\' or control characters: safe as a key, a blob
 * name and a path component. */
bool fzip_id_is_valid(const char *id);

#endif
