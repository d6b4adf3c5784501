/*
 * pkg_csv: see pkg_csv.h.
 *
 * Each table is data: a list of columns, each a header, the entity field
 * it shows and how (text, money, integer, boolean, ISO time, epoch ms, or
 * a name looked up by id).  A row walks its table's columns and writes one
 * cell each; an absent field is an empty cell.  The names transactions
 * show come from a table filled while accounts and categories are written
 * (the writer's kind order puts them first) and sorted once on first use.
 */
#include "pkg_csv.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pkg_set.h"

#define CSV_NUMBER_MAX 32   /* bytes of a formatted integer or epoch-ms cell */
#define CSV_TIME_MAX 32     /* bytes of "YYYY-MM-DDTHH:MM:SS.mmmZ" */
#define CSV_ID_SEPARATOR ";" /* between the ids of a transaction's categories */
#define CSV_REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD for an invalid UTF-8 byte */

typedef enum {
  COL_TEXT,          /* a string, guarded */
  COL_MONEY,         /* a decimal string, written as a number */
  COL_INT,           /* an integer */
  COL_BOOL,          /* true / false */
  COL_TIME,          /* epoch ms as ISO 8601 UTC */
  COL_TIME_MS,       /* epoch ms as a number */
  COL_ACCOUNT_NAME,  /* the name of the account `field` names */
  COL_CATEGORY_NAME, /* the name of the category `field` names */
  COL_CATEGORY_IDS,  /* the categoryIds of the assignments array `field` */
  COL_ARRAY_LEN,     /* how many items the array `field` has */
} col_type_t;

typedef struct {
  const char *header;
  const char *field;
  col_type_t type;
} column_t;

#define END {NULL, NULL, COL_TEXT}

static const column_t account_cols[] = {
    {"accountId", "accountId", COL_TEXT},
    {"accountName", "accountName", COL_TEXT},
    {"accountType", "accountType", COL_TEXT},
    {"institution", "institution", COL_TEXT},
    {"currency", "currency", COL_TEXT},
    {"balance", "balance", COL_MONEY},
    {"isActive", "isActive", COL_BOOL},
    {"notes", "notes", COL_TEXT},
    {"defaultFileMapId", "defaultFileMapId", COL_TEXT},
    {"firstTransactionDate", "firstTransactionDate", COL_TIME},
    {"lastTransactionDate", "lastTransactionDate", COL_TIME},
    {"createdAt", "createdAt", COL_TIME},
    {"updatedAt", "updatedAt", COL_TIME},
    END};

static const column_t category_cols[] = {
    {"categoryId", "categoryId", COL_TEXT},
    {"name", "name", COL_TEXT},
    {"type", "type", COL_TEXT},
    {"parentCategoryId", "parentCategoryId", COL_TEXT},
    {"icon", "icon", COL_TEXT},
    {"color", "color", COL_TEXT},
    {"inheritParentRules", "inheritParentRules", COL_BOOL},
    {"ruleInheritanceMode", "ruleInheritanceMode", COL_TEXT},
    {"ruleCount", "rules", COL_ARRAY_LEN},
    {"createdAt", "createdAt", COL_TIME},
    {"updatedAt", "updatedAt", COL_TIME},
    END};

static const column_t transaction_cols[] = {
    {"transactionId", "transactionId", COL_TEXT},
    {"date", "date", COL_TIME},
    {"dateMs", "date", COL_TIME_MS},
    {"accountId", "accountId", COL_TEXT},
    {"accountName", "accountId", COL_ACCOUNT_NAME},
    {"description", "description", COL_TEXT},
    {"amount", "amount", COL_MONEY},
    {"currency", "currency", COL_TEXT},
    {"balance", "balance", COL_MONEY},
    {"transactionType", "transactionType", COL_TEXT},
    {"memo", "memo", COL_TEXT},
    {"checkNumber", "checkNumber", COL_TEXT},
    {"fitId", "fitId", COL_TEXT},
    {"status", "status", COL_TEXT},
    {"primaryCategoryId", "primaryCategoryId", COL_TEXT},
    {"primaryCategoryName", "primaryCategoryId", COL_CATEGORY_NAME},
    {"categoryIds", "categories", COL_CATEGORY_IDS},
    {"fileId", "fileId", COL_TEXT},
    {"importOrder", "importOrder", COL_INT},
    {"createdAt", "createdAt", COL_TIME},
    {"updatedAt", "updatedAt", COL_TIME},
    END};

typedef struct {
  char *id;
  char *name;
} name_t;

typedef struct {
  name_t *items;
  size_t n, cap;
  bool sorted;
} names_t;

struct pkg_csv {
  names_t accounts;
  names_t categories;
};

pkg_csv_t *pkg_csv_new(void) {
  return calloc(1, sizeof(pkg_csv_t));
}

static void names_free(names_t *t) {
  for (size_t i = 0; i < t->n; i++) {
    free(t->items[i].id);
    free(t->items[i].name);
  }
  free(t->items);
}

void pkg_csv_destroy(pkg_csv_t *csv) {
  if (!csv)
    return;
  names_free(&csv->accounts);
  names_free(&csv->categories);
  free(csv);
}

const char *pkg_csv_entry(fzip_kind_t kind) {
  switch (kind) {
  case FZIP_KIND_ACCOUNT:
    return "csv/accounts.csv";
  case FZIP_KIND_CATEGORY:
    return "csv/categories.csv";
  case FZIP_KIND_TRANSACTION:
    return "csv/transactions.csv";
  default:
    return NULL;
  }
}

static const column_t *columns(fzip_kind_t kind) {
  return kind == FZIP_KIND_ACCOUNT    ? account_cols
         : kind == FZIP_KIND_CATEGORY ? category_cols
                                      : transaction_cols;
}

/* ---- cells ------------------------------------------------------------ */

static bool is_plain_decimal(const char *s, size_t len) {
  size_t i = s[0] == '-' ? 1 : 0, digits = 0;
  while (i < len && s[i] >= '0' && s[i] <= '9')
    i++, digits++;
  if (!digits)
    return false;
  if (i < len && s[i] == '.') {
    size_t frac = ++i;
    while (i < len && s[i] >= '0' && s[i] <= '9')
      i++;
    if (i == frac)
      return false;
  }
  return i == len;
}

/* OWASP's list: a cell starting with one of these is a formula to a
 * spreadsheet. */
static bool starts_formula(const char *s, size_t len) {
  return len && s[0] && strchr("=+-@\t\r", s[0]) != NULL;
}

static bool needs_quotes(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n')
      return true;
  }
  return false;
}

/* Writes s with quotes doubled and invalid UTF-8 replaced, in runs. */
static bool put_body(pkgjson_sink_fn sink, void *ctx, const char *s, size_t len,
                     fzip_error_t *error) {
  size_t start = 0, i = 0;
  while (i < len) {
    size_t n = pkgjson_utf8_seq_len(s + i, len - i);
    if (n != 0 && s[i] != '"') {
      i += n;
      continue;
    }
    /* a quote goes out with the run (then again); a bad byte is replaced */
    if (!sink(ctx, s + start, i - start + (n ? 1 : 0), error) ||
        !sink(ctx, n ? "\"" : CSV_REPLACEMENT, n ? 1 : strlen(CSV_REPLACEMENT), error))
      return false;
    start = ++i;
  }
  return start == len || sink(ctx, s + start, len - start, error);
}

bool pkg_csv_cell(pkgjson_sink_fn sink, void *ctx, bool first, bool text, const char *s,
                  size_t len, fzip_error_t *error) {
  bool quote = needs_quotes(s, len);
  bool guard;

  if (!text && len && !is_plain_decimal(s, len))
    text = true; /* not a number: never let it become a formula */
  guard = text && starts_formula(s, len);
  if (!first && !sink(ctx, ",", 1, error))
    return false;
  if ((quote && !sink(ctx, "\"", 1, error)) || (guard && !sink(ctx, "'", 1, error)))
    return false;
  if (!put_body(sink, ctx, s, len, error))
    return false;
  return !quote || sink(ctx, "\"", 1, error);
}

/* ---- names ------------------------------------------------------------ */

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const name_t *)a)->id, ((const name_t *)b)->id);
}

static bool names_add(names_t *t, const char *id, const char *name, fzip_error_t *error) {
  name_t *room;
  if (t->n >= PKG_CSV_NAMES_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "more than PKG_CSV_NAMES_MAX (%d) names for the CSV tables",
                          PKG_CSV_NAMES_MAX);
  if (!(room = pkg_array_room(t->items, &t->cap, t->n, sizeof *room, 64)))
    return fzip_error_oom(error, "csv names");
  t->items = room;
  room[t->n].id = strdup(id);
  room[t->n].name = strdup(name);
  if (!room[t->n].id || !room[t->n].name) {
    free(room[t->n].id);
    free(room[t->n].name);
    return fzip_error_oom(error, "csv names");
  }
  t->n++;
  t->sorted = false;
  return true;
}

static const char *names_find(names_t *t, const char *id) {
  name_t key = {.id = (char *)id}, *hit;
  if (!t->sorted) {
    qsort(t->items, t->n, sizeof *t->items, cmp_name);
    t->sorted = true;
  }
  hit = t->n ? bsearch(&key, t->items, t->n, sizeof *t->items, cmp_name) : NULL;
  return hit ? hit->name : NULL;
}

/* ---- rows ------------------------------------------------------------- */

static const char *utf8_of(const bson_t *doc, const char *field, uint32_t *len) {
  bson_iter_t it;
  if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_UTF8(&it))
    return NULL;
  return bson_iter_utf8(&it, len);
}

static bool int_of(const bson_t *doc, const char *field, int64_t *v) {
  bson_iter_t it;
  if (!bson_iter_init_find(&it, doc, field))
    return false;
  if (BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it)) {
    *v = bson_iter_as_int64(&it);
    return true;
  }
  if (BSON_ITER_HOLDS_DATE_TIME(&it)) {
    *v = bson_iter_date_time(&it);
    return true;
  }
  return false;
}

static void iso_ms(char out[CSV_TIME_MAX], int64_t ms) {
  int64_t secs = ms / 1000, frac = ms % 1000;
  time_t t;
  struct tm tm;
  if (frac < 0) {
    frac += 1000;
    secs--;
  }
  t = (time_t)secs;
  if (!gmtime_r(&t, &tm)) {
    out[0] = '\0';
    return;
  }
  size_t n = strftime(out, CSV_TIME_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, CSV_TIME_MAX - n, ".%03dZ", (int)frac);
}

/* The categoryIds of an assignments array, CSV_ID_SEPARATOR between. */
static bool category_ids(pkgjson_sink_fn sink, void *ctx, const bson_t *doc, const char *field,
                         fzip_error_t *error) {
  bson_iter_t it, arr, item;
  bool any = false;
  /* ids have no quote, comma or line break (FORMAT.md 3): no quoting needed,
   * but a leading - or + is guarded like any text cell */
  if (!sink(ctx, ",", 1, error))
    return false;
  if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_ARRAY(&it) ||
      !bson_iter_recurse(&it, &arr))
    return true;
  while (bson_iter_next(&arr)) {
    uint32_t len;
    const char *id;
    if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &item) ||
        !bson_iter_find(&item, "categoryId") || !BSON_ITER_HOLDS_UTF8(&item))
      continue;
    id = bson_iter_utf8(&item, &len);
    if (needs_quotes(id, len))
      continue; /* not an id the format allows; the JSON has it */
    if ((any && !sink(ctx, CSV_ID_SEPARATOR, 1, error)) ||
        (!any && starts_formula(id, len) && !sink(ctx, "'", 1, error)) ||
        !put_body(sink, ctx, id, len, error))
      return false;
    any = true;
  }
  return true;
}

static bool cell(pkg_csv_t *csv, pkgjson_sink_fn sink, void *ctx, const column_t *c,
                 const bson_t *doc, bool first, fzip_error_t *error) {
  char buf[CSV_TIME_MAX > CSV_NUMBER_MAX ? CSV_TIME_MAX : CSV_NUMBER_MAX] = "";
  const char *s = NULL;
  uint32_t len = 0;
  bool text = c->type == COL_TEXT || c->type == COL_ACCOUNT_NAME ||
              c->type == COL_CATEGORY_NAME;
  int64_t v;
  bson_iter_t it;

  switch (c->type) {
  case COL_TEXT:
  case COL_MONEY:
    s = utf8_of(doc, c->field, &len);
    if (!s && int_of(doc, c->field, &v))
      snprintf(buf, sizeof buf, "%" PRId64, v);
    break;
  case COL_INT:
  case COL_TIME_MS:
    if (int_of(doc, c->field, &v))
      snprintf(buf, sizeof buf, "%" PRId64, v);
    break;
  case COL_TIME:
    if (int_of(doc, c->field, &v))
      iso_ms(buf, v);
    text = true; /* starts with a digit: never guarded, but not a number */
    break;
  case COL_BOOL:
    if (bson_iter_init_find(&it, doc, c->field) && BSON_ITER_HOLDS_BOOL(&it))
      snprintf(buf, sizeof buf, "%s", bson_iter_bool(&it) ? "true" : "false");
    text = true;
    break;
  case COL_ACCOUNT_NAME:
  case COL_CATEGORY_NAME:
    s = utf8_of(doc, c->field, &len);
    s = s ? names_find(c->type == COL_ACCOUNT_NAME ? &csv->accounts : &csv->categories, s)
          : NULL;
    len = s ? (uint32_t)strlen(s) : 0;
    break;
  case COL_CATEGORY_IDS:
    return category_ids(sink, ctx, doc, c->field, error);
  case COL_ARRAY_LEN:
    if (bson_iter_init_find(&it, doc, c->field) && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &it)) {
      uint32_t n = 0;
      while (bson_iter_next(&it))
        n++;
      snprintf(buf, sizeof buf, "%" PRIu32, n);
    }
    break;
  }
  if (!s) {
    s = buf;
    len = (uint32_t)strlen(buf);
  }
  return pkg_csv_cell(sink, ctx, first, text, s, len, error);
}

bool pkg_csv_begin(pkg_csv_t *csv, fzip_kind_t kind, pkgjson_sink_fn sink, void *ctx,
                   fzip_error_t *error) {
  const column_t *cols = columns(kind);
  (void)csv;
  if (!sink(ctx, PKG_CSV_BOM, strlen(PKG_CSV_BOM), error))
    return false;
  for (size_t i = 0; cols[i].header; i++) {
    if (!pkg_csv_cell(sink, ctx, i == 0, true, cols[i].header, strlen(cols[i].header), error))
      return false;
  }
  return sink(ctx, PKG_CSV_EOL, strlen(PKG_CSV_EOL), error);
}

static bool remember_name(pkg_csv_t *csv, fzip_kind_t kind, const bson_t *doc,
                          fzip_error_t *error) {
  const fzip_kind_info_t *info = fzip_kind_info(kind);
  const char *id = utf8_of(doc, info->id_field, NULL);
  const char *name = utf8_of(doc, kind == FZIP_KIND_ACCOUNT ? "accountName" : "name", NULL);

  if (!id || !name)
    return true;
  return names_add(kind == FZIP_KIND_ACCOUNT ? &csv->accounts : &csv->categories, id, name,
                   error);
}

bool pkg_csv_row(pkg_csv_t *csv, fzip_kind_t kind, const bson_t *doc, pkgjson_sink_fn sink,
                 void *ctx, fzip_error_t *error) {
  const column_t *cols = columns(kind);

  if ((kind == FZIP_KIND_ACCOUNT || kind == FZIP_KIND_CATEGORY) &&
      !remember_name(csv, kind, doc, error))
    return false;
  for (size_t i = 0; cols[i].header; i++) {
    if (!cell(csv, sink, ctx, &cols[i], doc, i == 0, error))
      return false;
  }
  return sink(ctx, PKG_CSV_EOL, strlen(PKG_CSV_EOL), error);
}
