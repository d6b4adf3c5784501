/* fzip_entity: see fzip_entity.h. */
#include "fzip_entity.h"

#include <string.h>

static const fzip_kind_info_t kinds[FZIP_KIND_COUNT] = {
    {FZIP_KIND_ACCOUNT, "accounts", "data/accounts.json", "accountId", "accountId", NULL},
    {FZIP_KIND_CATEGORY, "categories", "data/categories.json", "categoryId", NULL, NULL},
    {FZIP_KIND_FILE_MAP, "file_maps", "data/file_maps.json", "fileMapId", "accountId", NULL},
    {FZIP_KIND_TRANSACTION_FILE, "transaction_files", "data/transaction_files.json", "fileId",
     "accountId", "uploadDate"},
    {FZIP_KIND_TRANSACTION, "transactions", "data/transactions.json", "transactionId",
     "accountId", "date"},
    {FZIP_KIND_ANALYTICS, "analytics", "data/analytics.json", "analyticsId", "accountId",
     "computedDate"},
};

const fzip_kind_info_t *fzip_kind_info(fzip_kind_t kind) {
  if ((unsigned)kind >= FZIP_KIND_COUNT)
    return NULL;
  return &kinds[kind];
}

bool fzip_kind_from_name(fzip_kind_t *out, const char *name) {
  for (int i = 0; i < FZIP_KIND_COUNT; i++) {
    if (name && strcmp(kinds[i].name, name) == 0) {
      *out = kinds[i].kind;
      return true;
    }
  }
  return false;
}

bool fzip_id_is_valid(const char *id) {
  size_t n = 0;
  if (!id || !*id)
    return false;
  for (const unsigned char *p = (const unsigned char *)id; *p; p++, n++) {
    if (n >= FZIP_ID_MAX || *p < 0x20 || *p > 0x7e || *p == '/' || *p == '\\')
      return false;
  }
  return strcmp(id, ".") != 0 && strcmp(id, "..") != 0;
}
