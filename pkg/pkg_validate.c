/*
 * pkg_validate: see pkg_validate.h.
 *
 * The schema is data: one table of field specs per kind (and per nested
 * object: rules, assignments, mappings, dateRange), read by one checker.
 * A field the table does not name is not part of format 1.0: it is
 * reported as a warning (schema.unknown_field) and pkgv_entity_sanitize,
 * which the restore step stores through, drops it, so that nothing the
 * schema does not know (a package's user_id, say) reaches the store.
 * References are resolved as each entity is read, because the dependency
 * order guarantees the target kind was read before, except
 * for the two that point forward or sideways (account -> default file
 * map, category -> parent), which are kept as pairs and resolved at the
 * end, where the category pairs also give the graph for cycle detection.
 */
#include "pkg_validate.h"

#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkg_diff.h"
#include "pkg_idrun.h"
#include "pkg_set.h"

/* Bytes of sanitised entities one conflict batch holds for the diff (a
 * batch is flushed at PKGV_EXISTS_BATCH_MAX entities or at this). */
#define DIFF_BATCH_BYTES (8u * 1024 * 1024)

/* The reason of every id.duplicate issue, found as the entity is read or
 * at the end of its kind (pkg_idrun). */
#define DUPLICATE_REASON "id appears more than once in the package"

/* With the default run size, PKGV_TXN_IDS_MAX ids of the longest kind
 * fit the id run's cap on runs, so limit.ids is what a package meets
 * first. */
#define IDS_PER_RUN_MIN                                                                  \
  (PKG_IDRUN_RUN_BYTES / (FZIP_ID_MAX + 1) < PKG_IDRUN_RUN_MAX                            \
       ? PKG_IDRUN_RUN_BYTES / (FZIP_ID_MAX + 1)                                          \
       : PKG_IDRUN_RUN_MAX)
_Static_assert(PKGV_TXN_IDS_MAX / IDS_PER_RUN_MIN + 1 <= PKG_IDRUN_RUNS_MAX,
               "PKGV_TXN_IDS_MAX ids fit PKG_IDRUN_RUNS_MAX runs");

/* ---- the schema ------------------------------------------------------- */

typedef enum {
  F_STR,      /* string of at most max bytes (min 1 when required) */
  F_ID,       /* fzip_id_is_valid */
  F_DEC,      /* decimal string */
  F_TIME,     /* epoch ms in [PKGV_TIME_MIN, PKGV_TIME_MAX] */
  F_INT,      /* integer in [min, max] */
  F_NUM,      /* integer or double in [min, max] */
  F_BOOL,
  F_ENUM,     /* one of enums */
  F_CURRENCY, /* three upper-case letters or "other" */
  F_HEX,      /* sha256 as 64 lower-case hex digits */
  F_OBJ,      /* object checked against sub */
  F_ANYOBJ,   /* any object */
  F_ARR,      /* array of objects checked against sub */
} ftype_t;

typedef struct field_spec {
  const char *name;
  ftype_t type;
  bool required;
  int64_t min, max; /* F_STR: max bytes; F_INT/F_NUM: range; F_ARR: max items */
  const char *const *enums;
  const struct field_spec *sub; /* terminated by a NULL name */
} field_t;

/* Rows of the widest spec (transactions have 21); checked per spec below. */
#define PKGV_SPEC_FIELDS_MAX 32

#define NOLIM 0, 0
#define ANYINT INT64_MIN, INT64_MAX
#define END {NULL, F_STR, false, NOLIM, NULL, NULL}

static const char *const account_types[] = {"checking", "savings", "credit_card", "investment",
                                            "loan", "other", NULL};
static const char *const category_types[] = {"INCOME", "EXPENSE", "TRANSFER", NULL};
static const char *const inherit_modes[] = {"additive", "override", "disabled", NULL};
static const char *const match_fields[] = {"description", "payee", "memo", "amount", NULL};
static const char *const conditions[] = {"contains",       "starts_with", "ends_with",
                                         "equals",         "regex",       "amount_greater",
                                         "amount_less",    "amount_between",
                                         "amount_range",   NULL};
static const char *const assignment_status[] = {"suggested", "confirmed", NULL};
static const char *const processing_status[] = {"pending", "processing", "processed", "error",
                                                "needs_mapping", NULL};
static const char *const file_formats[] = {"csv",   "ofx",  "qfx",  "qif",   "pdf",
                                           "xlsx",  "other", "json", "excel", NULL};
static const char *const analytic_types[] = {
    "cash_flow",          "category_trends",  "budget_performance", "financial_health",
    "credit_utilization", "payment_patterns", "account_efficiency", "merchant_analysis",
    "goal_progress",      "recommendations",  NULL};

static const field_t rule_fields[] = {
    {"ruleId", F_STR, true, 0, FZIP_ID_MAX, NULL, NULL},
    {"fieldToMatch", F_ENUM, true, NOLIM, match_fields, NULL},
    {"condition", F_ENUM, true, NOLIM, conditions, NULL},
    {"value", F_STR, false, 0, 1000, NULL, NULL},
    {"caseSensitive", F_BOOL, false, NOLIM, NULL, NULL},
    {"priority", F_INT, false, 0, 100, NULL, NULL},
    {"enabled", F_BOOL, false, NOLIM, NULL, NULL},
    {"confidence", F_INT, false, 0, 100, NULL, NULL},
    {"amountMin", F_DEC, false, NOLIM, NULL, NULL},
    {"amountMax", F_DEC, false, NOLIM, NULL, NULL},
    {"allowMultipleMatches", F_BOOL, false, NOLIM, NULL, NULL},
    {"autoSuggest", F_BOOL, false, NOLIM, NULL, NULL},
    END};

static const field_t assignment_fields[] = {
    {"categoryId", F_ID, true, NOLIM, NULL, NULL},
    {"status", F_ENUM, false, NOLIM, assignment_status, NULL},
    {"confidence", F_NUM, false, 0, 100, NULL, NULL},
    {"isManual", F_BOOL, false, NOLIM, NULL, NULL},
    {"assignedAt", F_TIME, false, NOLIM, NULL, NULL},
    {"confirmedAt", F_TIME, false, NOLIM, NULL, NULL},
    {"ruleId", F_STR, false, 0, FZIP_ID_MAX, NULL, NULL},
    END};

static const field_t mapping_fields[] = {
    {"sourceField", F_STR, true, 0, 255, NULL, NULL},
    {"targetField", F_STR, true, 0, 255, NULL, NULL},
    {"transformation", F_STR, false, 0, 255, NULL, NULL},
    END};

static const field_t date_range_fields[] = {
    {"startDate", F_TIME, false, NOLIM, NULL, NULL},
    {"endDate", F_TIME, false, NOLIM, NULL, NULL},
    END};

static const field_t account_fields[] = {
    {"accountId", F_ID, true, NOLIM, NULL, NULL},
    {"accountName", F_STR, true, 0, 100, NULL, NULL},
    {"accountType", F_ENUM, true, NOLIM, account_types, NULL},
    {"institution", F_STR, false, 0, 100, NULL, NULL},
    {"balance", F_DEC, false, NOLIM, NULL, NULL},
    {"currency", F_CURRENCY, false, NOLIM, NULL, NULL},
    {"notes", F_STR, false, 0, 1000, NULL, NULL},
    {"isActive", F_BOOL, false, NOLIM, NULL, NULL},
    {"defaultFileMapId", F_ID, false, NOLIM, NULL, NULL},
    {"firstTransactionDate", F_TIME, false, NOLIM, NULL, NULL},
    {"lastTransactionDate", F_TIME, false, NOLIM, NULL, NULL},
    {"importsStartDate", F_TIME, false, NOLIM, NULL, NULL},
    {"importsEndDate", F_TIME, false, NOLIM, NULL, NULL},
    {"createdAt", F_TIME, false, NOLIM, NULL, NULL},
    {"updatedAt", F_TIME, false, NOLIM, NULL, NULL},
    END};

static const field_t category_fields[] = {
    {"categoryId", F_ID, true, NOLIM, NULL, NULL},
    {"name", F_STR, true, 0, 255, NULL, NULL},
    {"type", F_ENUM, true, NOLIM, category_types, NULL},
    {"parentCategoryId", F_ID, false, NOLIM, NULL, NULL},
    {"icon", F_STR, false, 0, 255, NULL, NULL},
    {"color", F_STR, false, 0, 64, NULL, NULL},
    {"inheritParentRules", F_BOOL, false, NOLIM, NULL, NULL},
    {"ruleInheritanceMode", F_ENUM, false, NOLIM, inherit_modes, NULL},
    {"rules", F_ARR, false, 0, PKGV_RULES_MAX, NULL, rule_fields},
    {"createdAt", F_TIME, false, NOLIM, NULL, NULL},
    {"updatedAt", F_TIME, false, NOLIM, NULL, NULL},
    END};

static const field_t file_map_fields[] = {
    {"fileMapId", F_ID, true, NOLIM, NULL, NULL},
    {"name", F_STR, true, 0, 255, NULL, NULL},
    {"mappings", F_ARR, false, 0, 1000, NULL, mapping_fields},
    {"accountId", F_ID, false, NOLIM, NULL, NULL},
    {"description", F_STR, false, 0, 1000, NULL, NULL},
    {"reverseAmounts", F_BOOL, false, NOLIM, NULL, NULL},
    {"createdAt", F_TIME, false, NOLIM, NULL, NULL},
    {"updatedAt", F_TIME, false, NOLIM, NULL, NULL},
    END};

static const field_t transaction_file_fields[] = {
    {"fileId", F_ID, true, NOLIM, NULL, NULL},
    {"fileName", F_STR, true, 0, 1024, NULL, NULL},
    {"uploadDate", F_TIME, false, NOLIM, NULL, NULL},
    {"fileSize", F_INT, false, 0, INT64_MAX, NULL, NULL},
    {"s3Key", F_STR, false, 0, 1024, NULL, NULL},
    {"processingStatus", F_ENUM, false, NOLIM, processing_status, NULL},
    {"processedDate", F_TIME, false, NOLIM, NULL, NULL},
    {"fileFormat", F_ENUM, false, NOLIM, file_formats, NULL},
    {"accountId", F_ID, false, NOLIM, NULL, NULL},
    {"fileMapId", F_ID, false, NOLIM, NULL, NULL},
    {"recordCount", F_INT, false, 0, INT64_MAX, NULL, NULL},
    {"dateRange", F_OBJ, false, NOLIM, NULL, date_range_fields},
    {"errorMessage", F_STR, false, 0, 1000, NULL, NULL},
    {"openingBalance", F_DEC, false, NOLIM, NULL, NULL},
    {"closingBalance", F_DEC, false, NOLIM, NULL, NULL},
    {"currency", F_CURRENCY, false, NOLIM, NULL, NULL},
    {"duplicateCount", F_INT, false, 0, INT64_MAX, NULL, NULL},
    {"transactionCount", F_INT, false, 0, INT64_MAX, NULL, NULL},
    {"sha256", F_HEX, false, NOLIM, NULL, NULL},
    {"createdAt", F_TIME, false, NOLIM, NULL, NULL},
    {"updatedAt", F_TIME, false, NOLIM, NULL, NULL},
    END};

static const field_t transaction_fields[] = {
    {"transactionId", F_ID, true, NOLIM, NULL, NULL},
    {"accountId", F_ID, true, NOLIM, NULL, NULL},
    {"fileId", F_ID, false, NOLIM, NULL, NULL},
    {"date", F_TIME, true, NOLIM, NULL, NULL},
    {"description", F_STR, false, 0, 1000, NULL, NULL},
    {"amount", F_DEC, true, NOLIM, NULL, NULL},
    {"currency", F_CURRENCY, false, NOLIM, NULL, NULL},
    {"balance", F_DEC, false, NOLIM, NULL, NULL},
    {"importOrder", F_INT, false, ANYINT, NULL, NULL},
    {"transactionType", F_STR, false, 0, 50, NULL, NULL},
    {"memo", F_STR, false, 0, 1000, NULL, NULL},
    {"checkNumber", F_STR, false, 0, 50, NULL, NULL},
    {"fitId", F_STR, false, 0, 100, NULL, NULL},
    {"status", F_STR, false, 0, 50, NULL, NULL},
    {"statusDate", F_STR, false, 0, 100, NULL, NULL},
    {"transactionHash", F_INT, false, ANYINT, NULL, NULL},
    {"categories", F_ARR, false, 0, 1000, NULL, assignment_fields},
    {"primaryCategoryId", F_ID, false, NOLIM, NULL, NULL},
    {"createdAt", F_TIME, false, NOLIM, NULL, NULL},
    {"updatedAt", F_TIME, false, NOLIM, NULL, NULL},
    END};

static const field_t analytics_fields[] = {
    {"analyticsId", F_ID, true, NOLIM, NULL, NULL},
    {"analyticType", F_ENUM, false, NOLIM, analytic_types, NULL},
    {"timePeriod", F_STR, false, 0, 100, NULL, NULL},
    {"accountId", F_ID, false, NOLIM, NULL, NULL},
    {"data", F_ANYOBJ, false, NOLIM, NULL, NULL},
    {"computedDate", F_TIME, false, NOLIM, NULL, NULL},
    {"dataThroughDate", F_TIME, false, NOLIM, NULL, NULL},
    END};

static const field_t *const kind_fields[FZIP_KIND_COUNT] = {
    account_fields,   category_fields,    file_map_fields, transaction_file_fields,
    transaction_fields, analytics_fields};

/* check_object keeps one slot per row of a spec (PKGV_SPEC_FIELDS_MAX). */
#define SPEC_FITS(spec)                                                            \
  _Static_assert(sizeof spec / sizeof spec[0] - 1 <= PKGV_SPEC_FIELDS_MAX,         \
                 #spec " has more rows than PKGV_SPEC_FIELDS_MAX")
SPEC_FITS(rule_fields);
SPEC_FITS(assignment_fields);
SPEC_FITS(mapping_fields);
SPEC_FITS(date_range_fields);
SPEC_FITS(account_fields);
SPEC_FITS(category_fields);
SPEC_FITS(file_map_fields);
SPEC_FITS(transaction_file_fields);
SPEC_FITS(transaction_fields);
SPEC_FITS(analytics_fields);

/* Every reference field (pkgv_ref_fields).  Most are resolved as the
 * entity is read (the target kind comes first); those whose target kind
 * is read later or is the same kind (deferred()) are resolved at the
 * end.  The array one (item set) is walked by check_assignments. */
static const pkgv_ref_field_t ref_table[] = {
    {FZIP_KIND_ACCOUNT, "defaultFileMapId", NULL, FZIP_KIND_FILE_MAP, false},
    {FZIP_KIND_CATEGORY, "parentCategoryId", NULL, FZIP_KIND_CATEGORY, false},
    {FZIP_KIND_FILE_MAP, "accountId", NULL, FZIP_KIND_ACCOUNT, false},
    {FZIP_KIND_TRANSACTION_FILE, "accountId", NULL, FZIP_KIND_ACCOUNT, false},
    {FZIP_KIND_TRANSACTION_FILE, "fileMapId", NULL, FZIP_KIND_FILE_MAP, false},
    {FZIP_KIND_TRANSACTION, "accountId", NULL, FZIP_KIND_ACCOUNT, true},
    {FZIP_KIND_TRANSACTION, "fileId", NULL, FZIP_KIND_TRANSACTION_FILE, false},
    {FZIP_KIND_TRANSACTION, "primaryCategoryId", NULL, FZIP_KIND_CATEGORY, false},
    {FZIP_KIND_TRANSACTION, "categories", "categoryId", FZIP_KIND_CATEGORY, false},
    {FZIP_KIND_ANALYTICS, "accountId", NULL, FZIP_KIND_ACCOUNT, false},
};

static bool deferred(const pkgv_ref_field_t *rf) { return rf->to >= rf->from; }

const pkgv_ref_field_t *pkgv_ref_fields(size_t *n) {
  *n = sizeof ref_table / sizeof ref_table[0];
  return ref_table;
}

const pkgv_ref_field_t *pkgv_ref_field(fzip_kind_t from, const char *field) {
  for (size_t i = 0; i < sizeof ref_table / sizeof ref_table[0]; i++) {
    if (ref_table[i].from == from && strcmp(ref_table[i].field, field) == 0)
      return &ref_table[i];
  }
  return NULL;
}

static bool is_ref_target(fzip_kind_t k) {
  return k == FZIP_KIND_ACCOUNT || k == FZIP_KIND_CATEGORY || k == FZIP_KIND_FILE_MAP ||
         k == FZIP_KIND_TRANSACTION_FILE;
}

/* ---- state ------------------------------------------------------------ */

typedef struct {
  fzip_kind_t from;
  char *id;
  const char *field;
  char *target;
} pending_t;

typedef struct {
  const char *id;
  const char *parent;
  int color;
} catnode_t;

/* What a transaction file record says of its bytes, checked against the
 * files/ entry once it has been read. */
typedef struct {
  char *id;
  bool has_size, has_sha;
  int64_t size;
  char sha[FZIP_SHA256_HEX_LEN + 1];
} filerec_t;

typedef struct {
  const pkgv_options_t *opt;
  pkgv_result_t *res;
  pkgr_t *r;
  pkg_strset_t ids[FZIP_KIND_COUNT]; /* referenced kinds */
  pkg_idrun_t *idrun; /* the others: the kind being read (pkg_idrun.h) */
  pending_t *pending;
  size_t n_pending, cap_pending;
  filerec_t *frecs; /* sorted by id before the files pass */
  size_t n_frecs, cap_frecs;
  /* the entity being checked */
  fzip_kind_t kind;
  const char *entry;
  const char *entity_id;
  bool entity_failed;
  /* conflict batch */
  char *batch[PKGV_EXISTS_BATCH_MAX];
  bson_t *batch_docs[PKGV_EXISTS_BATCH_MAX]; /* as restored (sanitised), for the diff */
  size_t batch_bytes;
  const bson_t *doc; /* the entity being checked */
  size_t n_batch;
  bool user_has_none; /* of the kind being read: its ids are all new (pkgv_any_fn) */
  uint64_t entities_done;
  /* restore options (NULL: the defaults, none of this is used) */
  const pkgv_restore_t *ro;
  bool selected;      /* the entity being checked is selected */
  bool dropped;       /* ... and a required reference of it dangles */
  uint64_t cleared;   /* ... optional references of it cleared */
  bool dangle_full;   /* dangle reached PKGV_REF_IDS_MAX (reported once) */
  pkg_strset_t unsel[FZIP_KIND_COUNT];    /* referenced kinds: ids not selected */
  pkg_strset_t user_has[FZIP_KIND_COUNT]; /* looked up: the user has it */
  pkg_strset_t dangle[FZIP_KIND_COUNT];   /* looked up: nowhere */
} vctx_t;

/* Kept for the restore step (pkgv_result_t.refs). */
struct pkgv_refs {
  pkg_strset_t ids[FZIP_KIND_COUNT];
  pkg_strset_t unsel[FZIP_KIND_COUNT];
  pkg_strset_t dangle[FZIP_KIND_COUNT];
};

/* ---- issues ----------------------------------------------------------- */

static void cut(char *dst, size_t cap, const char *src) {
  snprintf(dst, cap, "%s", src ? src : "");
}

/* Field paths are cut at PKGV_FIELD_MAX: they name, they are not parsed. */
__attribute__((format(printf, 2, 3))) static void field_path(char out[PKGV_FIELD_MAX],
                                                             const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out, PKGV_FIELD_MAX, fmt, ap);
  va_end(ap);
}

static void record(pkgv_result_t *res, const pkgr_issue_t *is) {
  res->issues_total++;
  if (is->severity == PKGR_SEVERITY_ERROR) {
    res->errors_total++;
    res->limit_error = res->limit_error || pkgr_rule_is_limit(is->rule);
  } else
    res->warnings_total++;
  if ((unsigned)is->kind < FZIP_KIND_COUNT) {
    if (is->severity == PKGR_SEVERITY_ERROR)
      res->counts[is->kind].errors++;
    else
      res->counts[is->kind].warnings++;
  }
  if (res->n_issues >= PKGV_ISSUES_MAX)
    return;
  pkgv_issue_t *o = &res->issues[res->n_issues++];
  o->severity = is->severity;
  o->kind = is->kind;
  cut(o->rule, sizeof o->rule, is->rule);
  cut(o->entry, sizeof o->entry, is->entry);
  cut(o->entity_id, sizeof o->entity_id, is->entity_id);
  cut(o->field, sizeof o->field, is->field);
  cut(o->reason, sizeof o->reason, is->reason);
}

static void on_reader_issue(void *ctx, const pkgr_issue_t *is) { record(ctx, is); }

/* An issue about the entity being checked (kind, entry, id from ctx). */
__attribute__((format(printf, 5, 6))) static void entity_issue(vctx_t *v, pkgr_severity_t sev,
                                                               const char *rule,
                                                               const char *field,
                                                               const char *fmt, ...) {
  char reason[PKGV_REASON_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  if (sev == PKGR_SEVERITY_ERROR)
    v->entity_failed = true;
  pkgr_issue_t is = {sev, rule, v->entry, (int)v->kind, v->entity_id, field, reason};
  record(v->res, &is);
}

#define EERR(v, rule, field, ...) entity_issue(v, PKGR_SEVERITY_ERROR, rule, field, __VA_ARGS__)
#define EWARN(v, rule, field, ...) \
  entity_issue(v, PKGR_SEVERITY_WARNING, rule, field, __VA_ARGS__)

static bool oom(fzip_error_t *error) {
  return fzip_error_oom(error, NULL);
}

/* ---- field checks ----------------------------------------------------- */

static bool decimal_ok(const char *s) {
  size_t n = strlen(s), i = 0, digits = 0, frac = 0;
  if (n == 0 || n > PKGV_DECIMAL_MAX)
    return false;
  if (s[i] == '-')
    i++;
  for (; s[i] >= '0' && s[i] <= '9'; i++)
    digits++;
  if (s[i] == '.') {
    for (i++; s[i] >= '0' && s[i] <= '9'; i++)
      frac++;
    if (frac == 0)
      return false;
  }
  return digits > 0 && s[i] == '\0';
}

static bool currency_ok(const char *s) {
  if (strcmp(s, "other") == 0)
    return true;
  for (int i = 0; i < 3; i++) {
    if (s[i] < 'A' || s[i] > 'Z')
      return false;
  }
  return s[3] == '\0';
}

static bool sha_hex_ok(const char *s, uint32_t len) {
  if (len != FZIP_SHA256_HEX_LEN)
    return false;
  for (uint32_t i = 0; i < len; i++) {
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  }
  return true;
}

static bool in_enum(const char *s, const char *const *e) {
  for (; *e; e++) {
    if (strcmp(s, *e) == 0)
      return true;
  }
  return false;
}

static const char *type_name(ftype_t t) {
  switch (t) {
  case F_STR: case F_ID: case F_DEC: case F_ENUM: case F_CURRENCY: case F_HEX: return "a string";
  case F_TIME: case F_INT: return "an integer";
  case F_NUM: return "a number";
  case F_BOOL: return "a boolean";
  case F_OBJ: case F_ANYOBJ: return "an object";
  case F_ARR: return "an array";
  }
  return "?";
}

static bool holds_type(const bson_iter_t *it, ftype_t t) {
  switch (t) {
  case F_STR: case F_ID: case F_DEC: case F_ENUM: case F_CURRENCY: case F_HEX:
    return BSON_ITER_HOLDS_UTF8(it);
  case F_TIME: case F_INT: return BSON_ITER_HOLDS_INT64(it) || BSON_ITER_HOLDS_INT32(it);
  case F_NUM: return BSON_ITER_HOLDS_NUMBER(it);
  case F_BOOL: return BSON_ITER_HOLDS_BOOL(it);
  case F_OBJ: case F_ANYOBJ: return BSON_ITER_HOLDS_DOCUMENT(it);
  case F_ARR: return BSON_ITER_HOLDS_ARRAY(it);
  }
  return false;
}

/* A field's place in its entity, formatted only when an issue names it
 * ("categories[0].categoryId"): formatting the path of every field of
 * every entity up front was a vsnprintf per field, most of the schema
 * check's time.  A node lives on its checker's stack. */
typedef struct vpath {
  const struct vpath *up; /* NULL at the entity's top level */
  const char *name;       /* a member's name, or NULL for an array item */
  int64_t index;          /* the item's index when name is NULL */
} vpath_t;

/* Appends p's path to out[*n..]; cut at PKGV_FIELD_MAX like field_path. */
static void vpath_append(char out[PKGV_FIELD_MAX], size_t *n, const vpath_t *p) {
  if (p->up)
    vpath_append(out, n, p->up);
  if (*n >= PKGV_FIELD_MAX - 1)
    return;
  int w = p->name ? snprintf(out + *n, PKGV_FIELD_MAX - *n, "%s%s", p->up ? "." : "", p->name)
                  : snprintf(out + *n, PKGV_FIELD_MAX - *n, "[%lld]", (long long)p->index);
  if (w > 0)
    *n = (size_t)w >= PKGV_FIELD_MAX - *n ? PKGV_FIELD_MAX - 1 : *n + (size_t)w;
}

static const char *vpath_text(char out[PKGV_FIELD_MAX], const vpath_t *p) {
  size_t n = 0;
  out[0] = '\0';
  vpath_append(out, &n, p);
  return out;
}

#define PERR(v, rule, p, ...)                                      \
  do {                                                             \
    char perr_path_[PKGV_FIELD_MAX];                               \
    EERR(v, rule, vpath_text(perr_path_, p), __VA_ARGS__);         \
  } while (0)

static void check_object(vctx_t *v, const bson_t *doc, const field_t *spec, const vpath_t *up);

static void check_array(vctx_t *v, const bson_iter_t *it, const field_t *f, const vpath_t *p) {
  bson_iter_t arr;
  int64_t i = 0;
  if (!bson_iter_recurse(it, &arr))
    return;
  while (bson_iter_next(&arr)) {
    vpath_t ip = {p, NULL, i};
    if (i++ >= f->max) {
      PERR(v, "schema.length", p, "more than %lld items", (long long)f->max);
      return;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) {
      PERR(v, "schema.type", &ip, "item is not an object");
      continue;
    }
    uint32_t len;
    const uint8_t *data;
    bson_t child;
    bson_iter_document(&arr, &len, &data);
    if (bson_init_static(&child, data, len))
      check_object(v, &child, f->sub, &ip);
  }
}

static void check_string(vctx_t *v, const char *s, uint32_t len, const field_t *f,
                         const vpath_t *p) {
  switch (f->type) {
  case F_STR:
    if ((int64_t)len > f->max)
      PERR(v, "schema.length", p, "%u bytes, more than %lld", len, (long long)f->max);
    else if (f->required && len == 0)
      PERR(v, "schema.required", p, "must not be empty");
    break;
  case F_ID:
    if (strlen(s) != len || !fzip_id_is_valid(s))
      PERR(v, "schema.id", p, "not a valid id (1-%d printable ASCII, no '/' or '\\')",
           FZIP_ID_MAX);
    break;
  case F_DEC:
    if (strlen(s) != len || !decimal_ok(s))
      PERR(v, "schema.decimal", p, "\"%.40s\" is not a decimal string", s);
    break;
  case F_ENUM:
    if (strlen(s) != len || !in_enum(s, f->enums))
      PERR(v, "schema.enum", p, "\"%.40s\" is not an allowed value", s);
    break;
  case F_CURRENCY:
    if (strlen(s) != len || !currency_ok(s))
      PERR(v, "schema.enum", p, "\"%.40s\" is not a currency code", s);
    break;
  case F_HEX:
    if (!sha_hex_ok(s, len))
      PERR(v, "schema.sha256", p, "\"%.70s\" is not 64 lower-case hex digits", s);
    break;
  default:
    break;
  }
}

static void check_field(vctx_t *v, const bson_iter_t *it, const field_t *f, const vpath_t *p) {
  uint32_t len;
  const char *s;

  if (!holds_type(it, f->type)) {
    PERR(v, "schema.type", p, "must be %s", type_name(f->type));
    return;
  }
  switch (f->type) {
  case F_TIME: {
    int64_t t = bson_iter_as_int64(it);
    if (t < PKGV_TIME_MIN || t > PKGV_TIME_MAX)
      PERR(v, "schema.timestamp", p, "%lld is outside 1900..2200 in epoch ms", (long long)t);
    break;
  }
  case F_INT: {
    int64_t n = bson_iter_as_int64(it);
    if (n < f->min || n > f->max)
      PERR(v, "schema.range", p, "%lld is outside %lld..%lld", (long long)n,
           (long long)f->min, (long long)f->max);
    break;
  }
  case F_NUM: {
    double d = bson_iter_as_double(it);
    if (d < (double)f->min || d > (double)f->max)
      PERR(v, "schema.range", p, "%g is outside %lld..%lld", d, (long long)f->min,
           (long long)f->max);
    break;
  }
  case F_OBJ: {
    uint32_t dlen;
    const uint8_t *data;
    bson_t child;
    bson_iter_document(it, &dlen, &data);
    if (bson_init_static(&child, data, dlen))
      check_object(v, &child, f->sub, p);
    break;
  }
  case F_ARR:
    check_array(v, it, f, p);
    break;
  case F_BOOL:
  case F_ANYOBJ:
    break;
  default:
    s = bson_iter_utf8(it, &len);
    check_string(v, s, len, f, p);
    break;
  }
}

/* The spec's row of a member, or NULL.  The first byte is compared before
 * the rest: most rows differ there, and this runs for every member of
 * every entity, twice (schema check and sanitising). */
static const field_t *spec_find(const field_t *spec, const char *name) {
  for (const field_t *f = spec; f->name; f++) {
    if (f->name[0] == name[0] && strcmp(f->name, name) == 0)
      return f;
  }
  return NULL;
}

/* One pass over the document's members finds each spec row's member (the
 * first one, as bson_iter_find would) and warns about unknown ones; then
 * the rows are checked in spec order.  Issues come out in the same order
 * as a member search per row gave them. */
static void check_object(vctx_t *v, const bson_t *doc, const field_t *spec, const vpath_t *up) {
  /* bson_iter_t is over-aligned: an array of them needs a wrapper. */
  struct {
    bson_iter_t it;
  } found[PKGV_SPEC_FIELDS_MAX];
  bool has[PKGV_SPEC_FIELDS_MAX] = {false};
  bson_iter_t it;

  if (!bson_iter_init(&it, doc))
    return;
  while (bson_iter_next(&it)) {
    const char *key = bson_iter_key(&it);
    const field_t *f = spec_find(spec, key);
    if (!f) {
      vpath_t p = {up, key, 0};
      v->res->unknown_fields++;
      char text[PKGV_FIELD_MAX];
      EWARN(v, "schema.unknown_field", vpath_text(text, &p),
            "not a field of format 1.0: ignored, and not stored on import");
      continue;
    }
    size_t i = (size_t)(f - spec);
    if (!has[i]) {
      found[i].it = it;
      has[i] = true;
    }
  }
  for (const field_t *f = spec; f->name; f++) {
    size_t i = (size_t)(f - spec);
    vpath_t p = {up, f->name, 0};
    if (!has[i] || BSON_ITER_HOLDS_NULL(&found[i].it)) {
      if (f->required)
        PERR(v, "schema.required", &p, "required field is missing");
      continue;
    }
    check_field(v, &found[i].it, f, &p);
  }
}

/* ---- business rules --------------------------------------------------- */

static const char *str_of(const bson_t *doc, const char *field) {
  bson_iter_t it;
  if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_UTF8(&it))
    return NULL;
  const char *s = bson_iter_utf8(&it, NULL);
  return fzip_id_is_valid(s) ? s : NULL;
}

static bool resolves(vctx_t *v, fzip_kind_t to, const char *id) {
  return pkg_strset_has(&v->ids[to], id) || pkgr_external_has(v->r, to, id);
}

static void dangling(vctx_t *v, const char *field, fzip_kind_t to, const char *id) {
  EERR(v, "reference.dangling", field, "%s %.128s is neither in the package nor listed in "
       "external_references", fzip_kind_info(to)->name, id);
}

static bool defer_ref(vctx_t *v, const char *field, fzip_kind_t to, const char *target,
                      fzip_error_t *error) {
  pending_t *p = pkg_array_room(v->pending, &v->cap_pending, v->n_pending, sizeof *p, 64);
  if (!p)
    return oom(error);
  v->pending = p;
  p = &v->pending[v->n_pending];
  p->from = v->kind;
  p->field = field;
  p->id = strdup(v->entity_id);
  p->target = strdup(target);
  if (!p->id || !p->target) {
    free(p->id);
    free(p->target);
    return oom(error);
  }
  v->n_pending++;
  (void)to;
  return true;
}

/* ---- references under restore options ---------------------------------
 * With a selection or drop_dangling (v->ro), a reference resolves when its
 * target is in the selected part of the package or in the user's data,
 * listed in external_references or not; the user's data is asked once
 * per id, in batches where the ids are known ahead (external_references
 * up front, check_externals; the unselected entities a kind may refer to
 * before it is read, and the deferred references' targets, ask_ahead_*;
 * only a reference to an id listed nowhere is asked alone), and the
 * answers are kept for the restore step (pkgv_refs_t). */

static bool in_selection(const pkg_strset_t *ids, const pkg_strset_t *unsel, fzip_kind_t kind,
                         const char *id) {
  return pkg_strset_has(&ids[kind], id) && !pkg_strset_has(&unsel[kind], id);
}

/* Remembers what the store said of `id`.  A full cache of ids the user
 * has only costs another question later; the dangling ones are what the
 * restore clears by, so past PKGV_REF_IDS_MAX the package is refused. */
static bool remember(vctx_t *v, fzip_kind_t kind, const char *id, bool exists,
                     fzip_error_t *error) {
  pkg_strset_t *set = exists ? &v->user_has[kind] : &v->dangle[kind];
  pkg_set_rc_t rc = pkg_strset_add(set, id, PKGV_REF_IDS_MAX);
  if (rc == PKG_SET_OOM)
    return oom(error);
  if (rc == PKG_SET_FULL && !exists && !v->dangle_full) {
    char reason[PKGV_REASON_MAX];
    pkgr_issue_t is = {PKGR_SEVERITY_ERROR, "limit.ids", PKG_MANIFEST_ENTRY, (int)kind, id, NULL,
                       reason};
    snprintf(reason, sizeof reason, "more than %d %s that are neither in the package nor in "
             "the user's data", PKGV_REF_IDS_MAX, fzip_kind_info(kind)->name);
    v->dangle_full = true;
    record(v->res, &is);
  }
  return true;
}

static bool ref_dangles(bool *dangles, vctx_t *v, fzip_kind_t to, const char *id,
                        fzip_error_t *error) {
  bool exists = false;
  const char *ids[1] = {id};

  *dangles = false;
  if (in_selection(v->ids, v->unsel, to, id) || pkg_strset_has(&v->user_has[to], id))
    return true;
  if (pkg_strset_has(&v->dangle[to], id)) {
    *dangles = true;
    return true;
  }
  if (!v->opt->exists) { /* no store to ask (offline): the manifest's word */
    *dangles = !pkgr_external_has(v->r, to, id);
    return true;
  }
  if (!v->opt->exists(v->opt->exists_ctx, &exists, NULL, to, ids, 1, error))
    return fzip_error_prefix(error, "checking references");
  *dangles = !exists;
  return remember(v, to, id, exists, error);
}

/* Store questions asked ahead, PKGV_EXISTS_BATCH_MAX ids a call (as the
 * conflict step and check_externals do), so that ref_dangles finds the
 * answers in its caches instead of asking one id a call.  `seen` keeps an
 * id from being asked twice in one round; the ids are borrowed from sets
 * that do not change while asking. */
typedef struct {
  fzip_kind_t to;
  const char *ids[PKGV_EXISTS_BATCH_MAX];
  size_t n;
  pkg_strset_t seen;
} ahead_t;

static bool ahead_flush(vctx_t *v, ahead_t *a, fzip_error_t *error) {
  bool exists[PKGV_EXISTS_BATCH_MAX];
  if (!a->n)
    return true;
  if (!v->opt->exists(v->opt->exists_ctx, exists, NULL, a->to, a->ids, a->n, error))
    return fzip_error_prefix(error, "checking references");
  for (size_t i = 0; i < a->n; i++) {
    if (!remember(v, a->to, a->ids[i], exists[i], error))
      return false;
  }
  a->n = 0;
  return true;
}

static bool ahead_add(vctx_t *v, ahead_t *a, fzip_kind_t to, const char *id,
                      fzip_error_t *error) {
  pkg_set_rc_t rc;
  if (in_selection(v->ids, v->unsel, to, id) || pkg_strset_has(&v->user_has[to], id) ||
      pkg_strset_has(&v->dangle[to], id))
    return true;
  if (to != a->to && !ahead_flush(v, a, error))
    return false;
  a->to = to;
  if ((rc = pkg_strset_add(&a->seen, id, PKGV_REF_IDS_MAX)) == PKG_SET_OOM)
    return oom(error);
  if (rc != PKG_SET_ADDED) /* asked already (or too many to track: ref_dangles asks) */
    return true;
  a->ids[a->n++] = id;
  return a->n < PKGV_EXISTS_BATCH_MAX || ahead_flush(v, a, error);
}

/* Before the entities of `kind` are read: the unselected entities of the
 * package they may refer to (check_ref) are asked about in batches. */
static bool ask_ahead_unselected(vctx_t *v, fzip_kind_t kind, fzip_error_t *error) {
  ahead_t *a;
  bool ok = true;
  if (!v->ro || !v->opt->exists)
    return true;
  if (!(a = calloc(1, sizeof *a)))
    return oom(error);
  for (size_t i = 0; ok && i < sizeof ref_table / sizeof ref_table[0]; i++) {
    const pkg_strset_t *un = &v->unsel[ref_table[i].to];
    if (ref_table[i].from != kind || deferred(&ref_table[i]))
      continue;
    for (size_t j = 0; ok && j < un->cap; j++) {
      if (un->slots[j])
        ok = ahead_add(v, a, ref_table[i].to, un->slots[j], error);
    }
    ok = ok && ahead_flush(v, a, error);
  }
  pkg_strset_free(&a->seen);
  free(a);
  return ok;
}

/* Before resolve_pending: the targets of the deferred references. */
static bool ask_ahead_pending(vctx_t *v, fzip_error_t *error) {
  ahead_t *a;
  bool ok = true;
  if (!v->ro || !v->opt->exists)
    return true;
  if (!(a = calloc(1, sizeof *a)))
    return oom(error);
  for (size_t i = 0; ok && i < v->n_pending; i++) {
    const pkgv_ref_field_t *rf = pkgv_ref_field(v->pending[i].from, v->pending[i].field);
    ok = ahead_add(v, a, rf->to, v->pending[i].target, error);
  }
  ok = ok && ahead_flush(v, a, error);
  pkg_strset_free(&a->seen);
  free(a);
  return ok;
}

/* A reference that resolves nowhere, under restore options: refused
 * without drop_dangling; with it the entity is left out (required field)
 * or the reference cleared (counted when the entity is kept). */
static void dangling_option(vctx_t *v, const pkgv_ref_field_t *rf, const char *path,
                            const char *id) {
  const char *to = fzip_kind_info(rf->to)->name;
  if (!v->ro->drop_dangling) {
    EERR(v, "reference.dangling", path, "%s %.128s is neither in the %spackage nor in the "
         "user's data (drop_dangling_references clears it)", to, id,
         v->ro->kinds || v->ro->n_account_ids ? "selected part of the " : "");
  } else if (rf->required) {
    if (!v->dropped)
      EWARN(v, "reference.dropped", path, "left out: %s %.128s is neither in the package nor "
            "in the user's data, and the field is required", to, id);
    v->dropped = true;
  } else {
    v->cleared++;
    EWARN(v, "reference.cleared", path, "cleared: %s %.128s is neither in the package nor in "
          "the user's data", to, id);
  }
}

/* One reference of the entity being checked (not a deferred one). */
static bool check_ref(vctx_t *v, const pkgv_ref_field_t *rf, const char *path,
                      const char *target, fzip_error_t *error) {
  bool dangles = false;
  if (!v->ro) {
    if (!resolves(v, rf->to, target))
      dangling(v, path, rf->to, target);
    return true;
  }
  if (!ref_dangles(&dangles, v, rf->to, target, error))
    return false;
  if (dangles)
    dangling_option(v, rf, path, target);
  return true;
}

static bool check_refs(vctx_t *v, const bson_t *doc, fzip_error_t *error) {
  for (size_t i = 0; i < sizeof ref_table / sizeof ref_table[0]; i++) {
    const pkgv_ref_field_t *rf = &ref_table[i];
    const char *target;
    if (rf->from != v->kind || rf->item || !(target = str_of(doc, rf->field)))
      continue;
    if (deferred(rf)) {
      if (v->entity_id && !defer_ref(v, rf->field, rf->to, target, error))
        return false;
    } else if (!check_ref(v, rf, rf->field, target, error)) {
      return false;
    }
  }
  return true;
}

/* Transactions' category assignments refer to categories. */
static bool check_assignments(vctx_t *v, const bson_t *doc, fzip_error_t *error) {
  const pkgv_ref_field_t *rf = pkgv_ref_field(FZIP_KIND_TRANSACTION, "categories");
  bson_iter_t it, arr, item;
  char path[PKGV_FIELD_MAX];
  int i = 0;
  if (!bson_iter_init_find(&it, doc, "categories") || !BSON_ITER_HOLDS_ARRAY(&it) ||
      !bson_iter_recurse(&it, &arr))
    return true;
  while (bson_iter_next(&arr) && i < 1000) {
    snprintf(path, sizeof path, "categories[%d].categoryId", i++);
    if (BSON_ITER_HOLDS_DOCUMENT(&arr) && bson_iter_recurse(&arr, &item) &&
        bson_iter_find(&item, "categoryId") && BSON_ITER_HOLDS_UTF8(&item)) {
      const char *id = bson_iter_utf8(&item, NULL);
      if (fzip_id_is_valid(id) && !check_ref(v, rf, path, id, error))
        return false;
    }
  }
  return true;
}

static void check_regex(vctx_t *v, const bson_t *rule, const char *path) {
  bson_iter_t it;
  char fpath[PKGV_FIELD_MAX];
  regex_t re;
  int flags = REG_EXTENDED | REG_NOSUB;
  uint32_t len;
  const char *pat;

  field_path(fpath, "%s.value", path);
  if (!bson_iter_init_find(&it, rule, "value") || !BSON_ITER_HOLDS_UTF8(&it)) {
    EERR(v, "rule.regex", fpath, "a regex rule needs a pattern");
    return;
  }
  pat = bson_iter_utf8(&it, &len);
  if (len > PKGV_REGEX_MAX || strlen(pat) != len) {
    EERR(v, "rule.regex", fpath, "pattern longer than %d bytes or holding NUL", PKGV_REGEX_MAX);
    return;
  }
  if (bson_iter_init_find(&it, rule, "caseSensitive") && BSON_ITER_HOLDS_BOOL(&it) &&
      !bson_iter_bool(&it))
    flags |= REG_ICASE;
  int rc = regcomp(&re, pat, flags);
  if (rc != 0) {
    char msg[128];
    regerror(rc, &re, msg, sizeof msg);
    EERR(v, "rule.regex", fpath, "pattern does not compile: %s", msg);
    return;
  }
  regfree(&re);
}

/* Rule ids unique within the category; regex rules compile. */
static void check_rules(vctx_t *v, const bson_t *doc) {
  bson_iter_t it, arr;
  const char *seen[PKGV_RULES_MAX];
  char path[PKGV_FIELD_MAX];
  size_t n = 0;

  if (!bson_iter_init_find(&it, doc, "rules") || !BSON_ITER_HOLDS_ARRAY(&it) ||
      !bson_iter_recurse(&it, &arr))
    return;
  while (bson_iter_next(&arr) && n < PKGV_RULES_MAX) {
    uint32_t len;
    const uint8_t *data;
    bson_t rule;
    bson_iter_t f;
    snprintf(path, sizeof path, "rules[%zu]", n);
    if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
      continue;
    bson_iter_document(&arr, &len, &data);
    if (!bson_init_static(&rule, data, len))
      continue;
    if (bson_iter_init_find(&f, &rule, "ruleId") && BSON_ITER_HOLDS_UTF8(&f)) {
      const char *rid = bson_iter_utf8(&f, NULL);
      for (size_t i = 0; i < n; i++) {
        if (seen[i] && strcmp(seen[i], rid) == 0) {
          char fpath[PKGV_FIELD_MAX];
          field_path(fpath, "%s.ruleId", path);
          EERR(v, "rule.duplicate_id", fpath, "rule id %.64s appears twice in the category",
               rid);
          break;
        }
      }
      seen[n] = rid;
    } else {
      seen[n] = NULL;
    }
    if (bson_iter_init_find(&f, &rule, "condition") && BSON_ITER_HOLDS_UTF8(&f) &&
        strcmp(bson_iter_utf8(&f, NULL), "regex") == 0)
      check_regex(v, &rule, path);
    n++;
  }
}

static void check_account_rules(vctx_t *v, const bson_t *doc) {
  bson_iter_t a, b;
  if (bson_iter_init_find(&a, doc, "balance") && BSON_ITER_HOLDS_UTF8(&a) &&
      !(bson_iter_init_find(&b, doc, "currency") && BSON_ITER_HOLDS_UTF8(&b)))
    EWARN(v, "business.currency", "currency", "an account with a balance should name its "
          "currency");
  if (bson_iter_init_find(&a, doc, "importsStartDate") && BSON_ITER_HOLDS_INT64(&a) &&
      bson_iter_init_find(&b, doc, "importsEndDate") && BSON_ITER_HOLDS_INT64(&b) &&
      bson_iter_int64(&a) > bson_iter_int64(&b))
    EERR(v, "business.date_order", "importsStartDate", "importsStartDate is after "
         "importsEndDate");
}

static void check_file_bytes(vctx_t *v) {
  if (pkgr_file_find(v->r, v->entity_id))
    return;
  if (pkgr_file_listed_missing(v->r, v->entity_id))
    EWARN(v, "file.bytes_missing", "fileId",
          "the file's bytes were not available at export (manifest files_missing)");
  else
    EERR(v, "file.bytes_missing", "fileId", "no files/%s/ entry holds the file's bytes",
         v->entity_id);
}

/* ---- conflicts -------------------------------------------------------- */

static void note_conflict(vctx_t *v, const char *id) {
  pkgv_result_t *res = v->res;
  res->conflicts_total++;
  if (res->n_conflicting_ids < PKGV_CONFLICT_IDS_MAX) {
    size_t n = strlen(fzip_kind_info(v->kind)->name) + 1 + strlen(id) + 1;
    char *s = malloc(n);
    if (s) {
      snprintf(s, n, "%s/%s", fzip_kind_info(v->kind)->name, id);
      res->conflicting_ids[res->n_conflicting_ids++] = s;
    }
  }
  const char *saved = v->entity_id;
  v->entity_id = id;
  EERR(v, "conflict.exists", fzip_kind_info(v->kind)->id_field,
       "the user already has this %s (merge strategy fail_on_conflict)",
       fzip_kind_info(v->kind)->name);
  v->entity_id = saved;
}

/* The conflict step for one batch: the user's versions of its entities,
 * each judged against the package's as the restore would store it
 * (pkg_diff.h), counted, and under fail_on_conflict refused -- identical
 * ones too: that strategy only ever adds. */
static bool judge_batch(vctx_t *v, fzip_error_t *error) {
  bool exists[PKGV_EXISTS_BATCH_MAX];
  bson_t *stored[PKGV_EXISTS_BATCH_MAX];
  pkgv_counts_t *c = &v->res->counts[v->kind];
  bool ok = false;

  if (!v->opt->exists(v->opt->exists_ctx, exists, stored, v->kind,
                      (const char *const *)v->batch, v->n_batch, error))
    return false;
  for (size_t i = 0; i < v->n_batch; i++) {
    pkgd_verdict_t verdict;
    if (!stored[i] || !v->batch_docs[i]) {
      c->created += !stored[i];
      continue;
    }
    if (!pkgd_judge(&verdict, NULL, v->kind, v->opt->strategy, v->batch_docs[i], stored[i],
                    error))
      goto done;
    pkgd_count(c, v->opt->strategy, &verdict);
    if (!verdict.identical)
      pkgd_keep(v->res->diffs, &v->res->n_diffs, v->kind, v->batch[i], &verdict.diff);
    if (v->opt->strategy == PKGV_FAIL_ON_CONFLICT)
      note_conflict(v, v->batch[i]);
  }
  ok = true;
done:
  for (size_t i = 0; i < v->n_batch; i++)
    bson_destroy(stored[i]);
  return ok;
}

static bool flush_batch(vctx_t *v, fzip_error_t *error) {
  pkgv_counts_t *c = &v->res->counts[v->kind];
  bool ok = true;

  if (!v->n_batch)
    return true;
  if (!v->opt->exists || (v->ro && v->ro->as_copy)) { /* a copy: every id is new */
    c->created += v->n_batch;
  } else if (!(ok = judge_batch(v, error))) {
    fzip_error_prefix(error, "checking existing %s", fzip_kind_info(v->kind)->name);
  }
  for (size_t i = 0; i < v->n_batch; i++) {
    free(v->batch[i]);
    bson_destroy(v->batch_docs[i]);
    v->batch_docs[i] = NULL;
  }
  v->n_batch = 0;
  v->batch_bytes = 0;
  return ok;
}

/* *doc, a transaction file, naming a blob exactly when the package holds
 * its bytes, as the restore stores it (pkg_diff.h). */
static bool file_as_restored(bson_t **doc, vctx_t *v, const char *id, fzip_error_t *error) {
  bson_t *out = bson_new();
  if (!pkgd_file_as_restored(out, *doc, pkgr_file_find(v->r, id) != NULL, error)) {
    bson_destroy(out);
    return false;
  }
  bson_destroy(*doc);
  *doc = out;
  return true;
}

/* Batches the id, and with a store to ask the entity as the restore
 * stores it (pkgv_entity_sanitize), for the diff. */
static bool batch_id(vctx_t *v, const char *id, fzip_error_t *error) {
  bson_t *doc = NULL;
  if (v->user_has_none) {
    v->res->counts[v->kind].created++;
    return true;
  }
  if (v->opt->exists && v->doc) {
    doc = bson_new();
    if (!pkgv_entity_sanitize(doc, v->kind, v->doc, error) ||
        (v->kind == FZIP_KIND_TRANSACTION_FILE && !file_as_restored(&doc, v, id, error))) {
      bson_destroy(doc);
      return false;
    }
  }
  if (!(v->batch[v->n_batch] = strdup(id))) {
    bson_destroy(doc);
    return oom(error);
  }
  v->batch_docs[v->n_batch] = doc;
  v->batch_bytes += doc ? doc->len : 0;
  if (++v->n_batch == PKGV_EXISTS_BATCH_MAX || v->batch_bytes >= DIFF_BATCH_BYTES)
    return flush_batch(v, error);
  return true;
}

/* ---- one entity ------------------------------------------------------- */

/* A kind no other refers to goes to the id run, which answers as a set
 * would, except that a duplicate of an id out of order is known only at
 * the end of the kind (finish_idrun). */
static bool idrun_add(pkg_set_rc_t *rc, vctx_t *v, fzip_error_t *error) {
  pkg_idrun_rc_t r;
  if (!pkg_idrun_add(&r, v->idrun, v->entity_id, error))
    return false;
  *rc = r == PKG_IDRUN_NEW     ? PKG_SET_ADDED
        : r == PKG_IDRUN_AGAIN ? PKG_SET_PRESENT
                               : PKG_SET_FULL;
  return true;
}

/* *added: the id is new in the package (the conflict step asks about it,
 * once the entity is known to be restored). */
static bool note_id(bool *added, vctx_t *v, fzip_error_t *error) {
  const char *field = fzip_kind_info(v->kind)->id_field;
  pkg_set_rc_t rc;
  if (is_ref_target(v->kind))
    rc = pkg_strset_add(&v->ids[v->kind], v->entity_id, PKGV_REF_IDS_MAX);
  else if (!idrun_add(&rc, v, error))
    return false;
  if (rc == PKG_SET_OOM)
    return oom(error);
  if (rc == PKG_SET_FULL) {
    EERR(v, "limit.ids", field, "more than %d %s in one package",
         is_ref_target(v->kind) ? PKGV_REF_IDS_MAX : PKGV_TXN_IDS_MAX,
         fzip_kind_info(v->kind)->name);
    return true;
  }
  if (rc == PKG_SET_PRESENT) {
    EERR(v, "id.duplicate", field, DUPLICATE_REASON);
    return true;
  }
  *added = true;
  if (!v->selected && is_ref_target(v->kind) &&
      pkg_strset_add(&v->unsel[v->kind], v->entity_id, PKGV_REF_IDS_MAX) == PKG_SET_OOM)
    return oom(error);
  return true;
}

static bool note_file_record(vctx_t *v, const bson_t *doc, fzip_error_t *error) {
  bson_iter_t it;
  filerec_t *fr;
  uint32_t len;
  if (v->n_frecs >= PKGV_REF_IDS_MAX)
    return true; /* limit.ids is reported by note_id */
  if (!(fr = pkg_array_room(v->frecs, &v->cap_frecs, v->n_frecs, sizeof *fr, 64)))
    return oom(error);
  v->frecs = fr;
  fr = &v->frecs[v->n_frecs];
  memset(fr, 0, sizeof *fr);
  if (!(fr->id = strdup(v->entity_id)))
    return oom(error);
  v->n_frecs++;
  if (bson_iter_init_find(&it, doc, "fileSize") &&
      (BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it))) {
    fr->has_size = true;
    fr->size = bson_iter_as_int64(&it);
  }
  if (bson_iter_init_find(&it, doc, "sha256") && BSON_ITER_HOLDS_UTF8(&it)) {
    const char *hex = bson_iter_utf8(&it, &len);
    if ((fr->has_sha = sha_hex_ok(hex, len)))
      memcpy(fr->sha, hex, FZIP_SHA256_HEX_LEN + 1);
  }
  return true;
}

/* The entity's id when it is one (fzip_id_is_valid), borrowed from doc. */
static const char *entity_id_of(fzip_kind_t kind, const bson_t *doc) {
  bson_iter_t it;
  const char *id;
  if (!bson_iter_init_find(&it, doc, fzip_kind_info(kind)->id_field) ||
      !BSON_ITER_HOLDS_UTF8(&it))
    return NULL;
  id = bson_iter_utf8(&it, NULL);
  return fzip_id_is_valid(id) ? id : NULL;
}

static bool check_entity(vctx_t *v, const bson_t *doc, fzip_error_t *error) {
  bool added = false;

  v->entity_failed = false;
  v->entity_id = NULL;
  v->doc = doc;
  v->selected = !v->ro || pkgv_selected(v->ro, v->kind, doc);
  v->dropped = false;
  v->cleared = 0;
  v->entity_id = entity_id_of(v->kind, doc);
  check_object(v, doc, kind_fields[v->kind], NULL);
  if (v->entity_id && !note_id(&added, v, error))
    return false;
  /* An entity the selection leaves out is checked as data, not restored:
   * its references do not matter. */
  if (v->selected && !check_refs(v, doc, error))
    return false;
  if (v->kind == FZIP_KIND_TRANSACTION) {
    if (v->selected && !check_assignments(v, doc, error))
      return false;
  } else if (v->kind == FZIP_KIND_CATEGORY)
    check_rules(v, doc);
  else if (v->kind == FZIP_KIND_ACCOUNT)
    check_account_rules(v, doc);
  else if (v->kind == FZIP_KIND_TRANSACTION_FILE && v->entity_id) {
    check_file_bytes(v);
    if (!note_file_record(v, doc, error))
      return false;
  }
  v->res->counts[v->kind].in_package++;
  if (!v->entity_failed)
    v->res->counts[v->kind].valid++;
  if (!v->selected)
    v->res->counts[v->kind].not_selected++;
  else if (v->dropped)
    v->res->counts[v->kind].dropped++;
  else
    v->res->counts[v->kind].references_cleared += v->cleared;
  return !added || !v->selected || v->dropped || batch_id(v, v->entity_id, error);
}

/* ---- the passes ------------------------------------------------------- */

static void report_progress(vctx_t *v, const char *phase) {
  const pkgr_info_t *info = v->r ? pkgr_info(v->r) : NULL; /* NULL: not open yet */
  pkgv_progress_t p = {.phase = phase, .entities_done = v->entities_done};
  for (int k = 0; info && k < FZIP_KIND_COUNT; k++)
    if (info->has_count[k]) /* saturating: a hostile manifest may declare anything */
      p.entities_declared = info->count[k] > UINT64_MAX - p.entities_declared
                                ? UINT64_MAX
                                : p.entities_declared + info->count[k];
  if (info && info->has_files_count)
    p.files_declared = info->files_count;
  v->opt->progress(v->opt->progress_ctx, &p);
}

static bool tick(vctx_t *v, const char *phase, bool force, fzip_error_t *error) {
  if (!force && v->entities_done % PKGV_PROGRESS_EVERY)
    return true;
  if (v->opt->progress)
    report_progress(v, phase);
  if (v->opt->cancelled && v->opt->cancelled(v->opt->cancel_ctx))
    return fzip_error_set(error, FZIP_DOMAIN_VALIDATION, FZIP_ERR_CANCELLED,
                          "validation cancelled");
  return true;
}

static void check_count(vctx_t *v, fzip_kind_t kind, uint64_t seen) {
  const pkgr_info_t *info = pkgr_info(v->r);
  char field[PKGR_FIELD_PATH_MAX];
  if (!info->has_count[kind] || info->count[kind] == seen)
    return;
  snprintf(field, sizeof field, "data_summary.%s_count", fzip_kind_info(kind)->name);
  pkgr_issue_t is = {PKGR_SEVERITY_ERROR, "manifest.count", PKG_MANIFEST_ENTRY, (int)kind, NULL,
                     field, NULL};
  char reason[PKGV_REASON_MAX];
  snprintf(reason, sizeof reason, "the manifest says %llu %s, the data holds %llu",
           (unsigned long long)info->count[kind], fzip_kind_info(kind)->name,
           (unsigned long long)seen);
  is.reason = reason;
  record(v->res, &is);
}

/* A stream failure: malformed JSON, a limit, a checksum, a short entry. */
static void stream_issue(vctx_t *v, const char *rule, const fzip_error_t *err) {
  pkgr_issue_t is = {PKGR_SEVERITY_ERROR, rule, v->entry, (int)v->kind, NULL, NULL,
                     err->message};
  record(v->res, &is);
}

static bool is_stream_failure(const fzip_error_t *err) {
  return err->domain == FZIP_DOMAIN_PACKAGE;
}

/* The rule of a stream failure, from pkg_reader's codes; `at_end`: found
 * by the end-of-entry checks, where DATA_LOSS is the checksum. */
static const char *stream_rule(const fzip_error_t *err, bool at_end) {
  switch (err->code) {
  case FZIP_ERR_RESOURCE_EXHAUSTED: return "limit.json";
  case FZIP_ERR_OUT_OF_RANGE: return "archive.size";
  case FZIP_ERR_DATA_LOSS: return at_end ? "checksum.mismatch" : "archive.corrupt";
  default: return "json";
  }
}

/* ---- ids unique in the package, for the kinds no other refers to ---- */

static bool open_idrun(vctx_t *v, fzip_error_t *error) {
  pkg_idrun_options_t o = {v->opt->temp_dir, v->opt->id_run_max, PKGV_TXN_IDS_MAX};
  return pkg_idrun_new(&v->idrun, &o, error);
}

/* The ids before the first one out of order, again (pkg_idrun.h: they
 * were not kept), from the start of the data file and by the same rule
 * as check_entity.  The stream got that far before, so a failure now is
 * an error of the validation, not an issue of the package. */
static bool replay_prefix(vctx_t *v, fzip_kind_t kind, fzip_error_t *error) {
  pkgr_entities_t *it = NULL;
  const bson_t *doc;
  const char *id;
  fzip_error_t serr = {0};
  uint64_t n = 0;
  bool ok = false;

  if (!pkg_idrun_replay_wanted(v->idrun))
    return true;
  if (!pkgr_entities_open(&it, v->r, kind, error))
    return false;
  while (pkg_idrun_replay_wanted(v->idrun)) {
    if (!pkgr_entities_next(it, &doc, &serr)) {
      fzip_error_set(error, FZIP_DOMAIN_VALIDATION, FZIP_ERR_INTERNAL,
                     "%s: reading the ids again: %s", v->entry,
                     fzip_error_is_set(&serr) ? serr.message : "fewer entities than before");
      goto done;
    }
    if ((id = entity_id_of(kind, doc)) && !pkg_idrun_replay(v->idrun, id, error))
      goto done;
    if (++n % PKGV_PROGRESS_EVERY == 0 && !tick(v, fzip_kind_info(kind)->name, true, error))
      goto done;
  }
  ok = true;
done:
  pkgr_entities_destroy(it);
  return ok;
}

static bool on_late_duplicate(void *ctx, const char *id, fzip_error_t *error) {
  vctx_t *v = ctx;
  v->entity_id = id;
  EERR(v, "id.duplicate", fzip_kind_info(v->kind)->id_field, DUPLICATE_REASON);
  v->entity_id = NULL;
  return true;
}

/* The duplicates of ids that came out of order: one id.duplicate issue
 * per occurrence after the first, as check_entity reports the others, but
 * at the end of the kind and in id order. */
static bool finish_idrun(vctx_t *v, fzip_kind_t kind, fzip_error_t *error) {
  return replay_prefix(v, kind, error) &&
         pkg_idrun_finish(NULL, v->idrun, on_late_duplicate, v, error);
}

/* ---- one kind --------------------------------------------------------- */

/* Whether the conflict step can skip the store for the kind being read. */
static bool ask_any(vctx_t *v, fzip_error_t *error) {
  bool any = true;
  v->user_has_none = false;
  if (!v->opt->exists || !v->opt->any || (v->ro && v->ro->as_copy))
    return true;
  if (!v->opt->any(v->opt->exists_ctx, &any, v->kind, error)) {
    fzip_error_prefix(error, "checking existing %s", fzip_kind_info(v->kind)->name);
    return false;
  }
  v->user_has_none = !any;
  return true;
}

static bool validate_kind(vctx_t *v, fzip_kind_t kind, fzip_error_t *error) {
  pkgr_entities_t *it = NULL;
  const bson_t *doc;
  fzip_error_t serr = {0};
  bool ok = false, complete = false;

  v->kind = kind;
  v->entry = pkgr_data_entry(kind);
  if (!tick(v, fzip_kind_info(kind)->name, true, error) || !ask_any(v, error) ||
      (!is_ref_target(kind) && !open_idrun(v, error)) ||
      !pkgr_entities_open(&it, v->r, kind, error))
    goto done;
  while (pkgr_entities_next(it, &doc, &serr)) {
    uint64_t unknown = v->res->unknown_fields;
    if (!check_entity(v, doc, error) ||
        (v->opt->sink && !v->opt->sink(v->opt->sink_ctx, kind, doc,
                                       v->res->unknown_fields == unknown, error)))
      goto done;
    v->entities_done++;
    if (!tick(v, fzip_kind_info(kind)->name, false, error))
      goto done;
  }
  if (fzip_error_is_set(&serr)) {
    if (!is_stream_failure(&serr)) {
      *error = serr;
      goto done;
    }
    stream_issue(v, stream_rule(&serr, false), &serr);
  } else if (!pkgr_entities_finish(NULL, it, &serr)) {
    stream_issue(v, stream_rule(&serr, true), &serr);
  } else {
    complete = true;
  }
  if (v->idrun && !finish_idrun(v, kind, error))
    goto done;
  if (complete || !pkgr_has_kind(v->r, kind))
    check_count(v, kind, pkgr_entities_count(it));
  ok = flush_batch(v, error);
done:
  pkgr_entities_destroy(it);
  pkg_idrun_destroy(v->idrun);
  v->idrun = NULL;
  return ok;
}

static int cmp_frec(const void *a, const void *b) {
  return strcmp(((const filerec_t *)a)->id, ((const filerec_t *)b)->id);
}

static const filerec_t *find_frec(const vctx_t *v, const char *id) {
  filerec_t key = {0};
  key.id = (char *)id;
  return v->n_frecs ? bsearch(&key, v->frecs, v->n_frecs, sizeof key, cmp_frec) : NULL;
}

static void file_issue(vctx_t *v, const pkgr_file_entry_t *fe, const char *rule,
                       const char *field, const char *reason) {
  pkgr_issue_t is = {PKGR_SEVERITY_ERROR, rule, fe->entry, FZIP_KIND_TRANSACTION_FILE,
                     fe->file_id, field, reason};
  record(v->res, &is);
}

/* The bytes against what the file's record says of them.  In the design
 * flavour a files/ entry without a manifest checksum is accepted only when
 * the record's sha256 vouches for it (FORMAT.md section 8). */
static void check_file_record(vctx_t *v, const pkgr_file_entry_t *fe, const char *hex,
                              uint64_t bytes) {
  const filerec_t *fr = find_frec(v, fe->file_id);
  char reason[PKGV_REASON_MAX];
  if (fr && fr->has_size && (uint64_t)fr->size != bytes) {
    snprintf(reason, sizeof reason, "the record says %lld bytes, the entry holds %llu",
             (long long)fr->size, (unsigned long long)bytes);
    file_issue(v, fe, "file.size", "fileSize", reason);
  }
  if (fr && fr->has_sha && strcmp(fr->sha, hex) != 0) {
    snprintf(reason, sizeof reason, "the record says sha256 %.64s, the bytes hash to %.64s",
             fr->sha, hex);
    file_issue(v, fe, "file.sha256", "sha256", reason);
  }
  /* The HouseF3 flavour has no sha256 anywhere: the reader warned once
   * (checksum.absent); size and CRC-32 are what is checked. */
  if (!fe->has_checksum && !(fr && fr->has_sha) &&
      strcmp(pkgr_info(v->r)->flavour, PKGR_FLAVOUR_HOUSEF3) != 0)
    file_issue(v, fe, "checksum.missing", "sha256",
               "neither the manifest nor the file's record gives a sha256 for these bytes");
}

static bool verify_file(vctx_t *v, const pkgr_file_entry_t *fe, char *buf, fzip_error_t *error) {
  pkgr_file_t *f = NULL;
  fzip_error_t ferr = {0};
  char hex[FZIP_SHA256_HEX_LEN + 1];
  uint64_t bytes = 0;
  size_t n;
  bool ok = true, read_all = false, at_end = true;

  if (!pkgr_file_open(&f, v->r, fe->file_id, &ferr)) {
    ok = is_stream_failure(&ferr);
  } else {
    do {
      if (!pkgr_file_read(f, buf, PKGR_READ_CHUNK, &n, &ferr)) {
        ok = is_stream_failure(&ferr);
        break;
      }
      v->res->file_bytes += n;
    } while (n);
    read_all = n == 0 && !fzip_error_is_set(&ferr) && pkgr_file_digest(hex, &bytes, f);
    at_end = pkgr_file_at_end(f);
  }
  pkgr_file_destroy(f);
  if (!ok) {
    *error = ferr;
    return false;
  }
  if (fzip_error_is_set(&ferr))
    file_issue(v, fe, stream_rule(&ferr, at_end), NULL, ferr.message);
  else if (read_all)
    check_file_record(v, fe, hex, bytes);
  return true;
}

static bool validate_files(vctx_t *v, fzip_error_t *error) {
  char *buf = malloc(PKGR_READ_CHUNK);
  const pkgr_info_t *info = pkgr_info(v->r);
  size_t n = pkgr_file_count(v->r);
  bool ok = false;

  if (!buf)
    return oom(error);
  v->res->files_in_package = n;
  if (v->n_frecs)
    qsort(v->frecs, v->n_frecs, sizeof *v->frecs, cmp_frec);
  for (size_t i = 0; i < n; i++) {
    const pkgr_file_entry_t *fe = pkgr_file_at(v->r, i);
    if (!verify_file(v, fe, buf, error) || !tick(v, "files", true, error))
      goto done;
    if (!pkg_strset_has(&v->ids[FZIP_KIND_TRANSACTION_FILE], fe->file_id)) {
      pkgr_issue_t is = {PKGR_SEVERITY_WARNING, "file.orphan", fe->entry,
                         FZIP_KIND_TRANSACTION_FILE, fe->file_id, NULL,
                         "no transaction file has this id; the bytes are ignored"};
      record(v->res, &is);
    }
  }
  if (info->has_files_count && info->files_count != n) {
    char reason[PKGV_REASON_MAX];
    snprintf(reason, sizeof reason, "the manifest says %llu files, the package holds %zu",
             (unsigned long long)info->files_count, n);
    pkgr_issue_t is = {PKGR_SEVERITY_ERROR, "manifest.count", PKG_MANIFEST_ENTRY, -1, NULL,
                       "data_summary.files_count", reason};
    record(v->res, &is);
  }
  ok = true;
done:
  free(buf);
  return ok;
}

static int cmp_catnode(const void *a, const void *b) {
  return strcmp(((const catnode_t *)a)->id, ((const catnode_t *)b)->id);
}

static catnode_t *find_cat(catnode_t *nodes, size_t n, const char *id) {
  catnode_t key = {id, NULL, 0};
  return id ? bsearch(&key, nodes, n, sizeof *nodes, cmp_catnode) : NULL;
}

/* Colours the parent chain from each category: meeting a node of the
 * current walk (colour 1) is a cycle, reported once at that node. */
static bool check_cycles(vctx_t *v, fzip_error_t *error) {
  size_t n = 0;
  catnode_t *nodes = calloc(v->n_pending ? v->n_pending : 1, sizeof *nodes);
  if (!nodes)
    return oom(error);
  for (size_t i = 0; i < v->n_pending; i++) {
    if (v->pending[i].from == FZIP_KIND_CATEGORY)
      nodes[n++] = (catnode_t){v->pending[i].id, v->pending[i].target, 0};
  }
  qsort(nodes, n, sizeof *nodes, cmp_catnode);
  v->kind = FZIP_KIND_CATEGORY;
  v->entry = pkgr_data_entry(FZIP_KIND_CATEGORY);
  for (size_t i = 0; i < n; i++) {
    catnode_t *c = &nodes[i];
    while (c && c->color == 0) {
      c->color = 1;
      c = find_cat(nodes, n, c->parent);
    }
    if (c && c->color == 1) {
      v->entity_id = c->id;
      EERR(v, "category.cycle", "parentCategoryId",
           "the category is its own ancestor through parentCategoryId");
    }
    for (c = &nodes[i]; c && c->color == 1; c = find_cat(nodes, n, c->parent))
      c->color = 2;
  }
  free(nodes);
  return true;
}

static bool resolve_pending(vctx_t *v, fzip_error_t *error) {
  if (!ask_ahead_pending(v, error))
    return false;
  for (size_t i = 0; i < v->n_pending; i++) {
    pending_t *p = &v->pending[i];
    const pkgv_ref_field_t *rf = pkgv_ref_field(p->from, p->field);
    bool dangles = false;
    if (v->ro) {
      if (!ref_dangles(&dangles, v, rf->to, p->target, error))
        return false;
    } else {
      dangles = !resolves(v, rf->to, p->target);
    }
    if (!dangles)
      continue;
    v->kind = p->from;
    v->entry = pkgr_data_entry(p->from);
    v->entity_id = p->id;
    v->entity_failed = false;
    v->cleared = 0;
    if (v->ro)
      dangling_option(v, rf, p->field, p->target);
    else
      dangling(v, p->field, rf->to, p->target);
    v->res->counts[p->from].references_cleared += v->cleared; /* optional fields only */
    if (v->entity_failed && v->res->counts[p->from].valid)
      v->res->counts[p->from].valid--; /* it was counted valid when read */
  }
  return true;
}

/* External references must exist in the user's data, or the restored
 * entities would point at nothing. */
static bool check_externals(vctx_t *v, fzip_error_t *error) {
  bool exists[PKGV_EXISTS_BATCH_MAX];
  char field[96];
  if (!v->opt->exists)
    return true;
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    size_t n = pkgr_external_count(v->r, (fzip_kind_t)k);
    for (size_t off = 0; off < n; off += PKGV_EXISTS_BATCH_MAX) {
      const char *ids[PKGV_EXISTS_BATCH_MAX];
      size_t m = n - off < PKGV_EXISTS_BATCH_MAX ? n - off : PKGV_EXISTS_BATCH_MAX;
      for (size_t i = 0; i < m; i++)
        ids[i] = pkgr_external_at(v->r, (fzip_kind_t)k, off + i);
      if (!v->opt->exists(v->opt->exists_ctx, exists, NULL, (fzip_kind_t)k, ids, m, error))
        return fzip_error_prefix(error, "checking external references");
      if (v->ro) { /* only the references of selected entities matter: check_ref */
        for (size_t i = 0; i < m; i++) {
          if (!remember(v, (fzip_kind_t)k, ids[i], exists[i], error))
            return false;
        }
        continue;
      }
      snprintf(field, sizeof field, "external_references.%s", fzip_kind_info((fzip_kind_t)k)->name);
      for (size_t i = 0; i < m; i++) {
        if (exists[i])
          continue;
        pkgr_issue_t is = {PKGR_SEVERITY_ERROR, "reference.external_missing", PKG_MANIFEST_ENTRY,
                           k, ids[i], field,
                           "the package refers to this entity outside it, and the user does "
                           "not have it"};
        record(v->res, &is);
      }
    }
  }
  return true;
}

/* An increment (FORMAT.md 15) holds only changes since its base: restored
 * alone it would look like a user who has only those, so it is refused
 * before any entity is read. */
static void refuse_increment(vctx_t *v) {
  char reason[PKGV_REASON_MAX];
  pkgr_issue_t is = {PKGR_SEVERITY_ERROR, "archive.incremental", PKG_MANIFEST_ENTRY, -1, NULL,
                     PKG_INCREMENTAL_KEY, NULL};

  snprintf(reason, sizeof reason,
           "the package is an increment on export %s (chain length %lld): it holds only "
           "changes; apply it to its base with `fzip package apply` first and import the result",
           v->res->info.base_export_id, (long long)v->res->info.chain_length);
  is.reason = reason;
  record(v->res, &is);
}

static bool run(vctx_t *v, const char *path, fzip_error_t *error) {
  fzip_error_t oerr = {0};

  if (!tick(v, "archive", true, error))
    return false;
  if (!pkgr_open(&v->r, path, v->opt->limits, on_reader_issue, v->res, &oerr)) {
    if (oerr.domain == FZIP_DOMAIN_VALIDATION)
      return true; /* refused: the issues say why */
    *error = oerr;
    return false;
  }
  v->res->has_info = true;
  v->res->info = *pkgr_info(v->r);
  if (v->res->info.incremental) {
    refuse_increment(v);
    return true;
  }
  if (!check_externals(v, error))
    return false;
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    if (!ask_ahead_unselected(v, (fzip_kind_t)k, error) ||
        !validate_kind(v, (fzip_kind_t)k, error))
      return false;
  }
  if (!tick(v, "references", true, error))
    return false;
  if (!resolve_pending(v, error) || !check_cycles(v, error))
    return false;
  return validate_files(v, error);
}

/* ---- public ----------------------------------------------------------- */

const char *pkgv_strategy_name(pkgv_strategy_t strategy) {
  static const char *const names[] = {"fail_on_conflict", "skip_existing", "overwrite",
                                      "merge_fields"};
  return (unsigned)strategy < sizeof names / sizeof names[0] ? names[strategy] : "unknown";
}

void pkgv_result_destroy(pkgv_result_t *result) {
  if (!result)
    return;
  for (size_t i = 0; i < result->n_conflicting_ids; i++)
    free(result->conflicting_ids[i]);
  free(result->conflicting_ids);
  free(result->issues);
  free(result->diffs);
  pkgv_refs_destroy(result->refs);
  free(result);
}

/* Hands the referenced kinds' ids and the lookups' verdicts over to the
 * result: the restore step maps references by them. */
static bool keep_refs(pkgv_result_t *res, vctx_t *v, fzip_error_t *error) {
  pkgv_refs_t *refs = calloc(1, sizeof *refs);
  if (!refs)
    return oom(error);
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    refs->ids[k] = v->ids[k];
    refs->unsel[k] = v->unsel[k];
    refs->dangle[k] = v->dangle[k];
    memset(&v->ids[k], 0, sizeof v->ids[k]);
    memset(&v->unsel[k], 0, sizeof v->unsel[k]);
    memset(&v->dangle[k], 0, sizeof v->dangle[k]);
  }
  res->refs = refs;
  return true;
}

static void vctx_free(vctx_t *v) {
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    pkg_strset_free(&v->ids[k]);
    pkg_strset_free(&v->unsel[k]);
    pkg_strset_free(&v->user_has[k]);
    pkg_strset_free(&v->dangle[k]);
  }
  for (size_t i = 0; i < v->n_pending; i++) {
    free(v->pending[i].id);
    free(v->pending[i].target);
  }
  free(v->pending);
  for (size_t i = 0; i < v->n_frecs; i++)
    free(v->frecs[i].id);
  free(v->frecs);
  for (size_t i = 0; i < v->n_batch; i++) {
    free(v->batch[i]);
    bson_destroy(v->batch_docs[i]);
  }
  pkg_idrun_destroy(v->idrun);
  pkgr_destroy(v->r);
}

bool pkgv_validate(pkgv_result_t **out, const char *path, const pkgv_options_t *options,
                   fzip_error_t *error) {
  pkgv_result_t *res = calloc(1, sizeof *res);
  vctx_t v = {0};
  bool ok = false;

  *out = NULL;
  if (!res || !(res->issues = calloc(PKGV_ISSUES_MAX, sizeof *res->issues)) ||
      !(res->conflicting_ids = calloc(PKGV_CONFLICT_IDS_MAX, sizeof *res->conflicting_ids)) ||
      !(res->diffs = calloc(PKGV_DIFFS_PER_KIND * FZIP_KIND_COUNT, sizeof *res->diffs))) {
    oom(error);
    goto done;
  }
  v.opt = options;
  v.res = res;
  v.ro = pkgv_restore_active(options->restore) ? options->restore : NULL;
  res->preview_from_store = options->exists != NULL;
  if (!run(&v, path, error) || (v.ro && !keep_refs(res, &v, error)))
    goto done;
  res->passed = res->errors_total == 0;
  ok = true;
done:
  vctx_free(&v);
  if (ok)
    *out = res;
  else
    pkgv_result_destroy(res);
  return ok;
}

/* ---- restore options -------------------------------------------------- */

bool pkgv_restore_active(const pkgv_restore_t *restore) {
  return restore && (restore->as_copy || restore->drop_dangling || restore->kinds ||
                     restore->n_account_ids);
}

bool pkgv_selected(const pkgv_restore_t *restore, fzip_kind_t kind, const bson_t *doc) {
  const fzip_kind_info_t *info = fzip_kind_info(kind);
  bson_iter_t it;
  const char *account;

  if (!restore || !info)
    return true;
  if (restore->kinds && !(restore->kinds & (1u << kind)))
    return false;
  /* A copy's analytics are regenerated from its transactions; the
   * package's would be second records for the same keys. */
  if (restore->as_copy && kind == FZIP_KIND_ANALYTICS)
    return false;
  if (!restore->n_account_ids || !info->account_field)
    return true;
  if (!bson_iter_init_find(&it, doc, info->account_field) || !BSON_ITER_HOLDS_UTF8(&it))
    return true; /* not an account's: not filtered by accounts */
  account = bson_iter_utf8(&it, NULL);
  for (size_t i = 0; i < restore->n_account_ids; i++) {
    if (strcmp(account, restore->account_ids[i]) == 0)
      return true;
  }
  return false;
}

bool pkgv_refs_in_package(const pkgv_refs_t *refs, fzip_kind_t kind, const char *id) {
  return refs && (unsigned)kind < FZIP_KIND_COUNT && in_selection(refs->ids, refs->unsel, kind, id);
}

bool pkgv_refs_dangling(const pkgv_refs_t *refs, fzip_kind_t kind, const char *id) {
  return refs && (unsigned)kind < FZIP_KIND_COUNT && pkg_strset_has(&refs->dangle[kind], id);
}

void pkgv_refs_destroy(pkgv_refs_t *refs) {
  if (!refs)
    return;
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    pkg_strset_free(&refs->ids[k]);
    pkg_strset_free(&refs->unsel[k]);
    pkg_strset_free(&refs->dangle[k]);
  }
  free(refs);
}

/* ---- sanitising ------------------------------------------------------- */

static bool sanitize_object(bson_t *out, const bson_t *doc, const field_t *spec);

static bool sanitize_array(bson_t *out, const bson_iter_t *it, const field_t *f) {
  bson_iter_t arr;
  bson_t child, sub;
  bool ok = bson_iter_recurse(it, &arr) && bson_append_array_begin(out, f->name, -1, &child);
  while (ok && bson_iter_next(&arr)) {
    uint32_t len;
    const uint8_t *data;
    if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) {
      ok = bson_append_iter(&child, bson_iter_key(&arr), -1, &arr);
      continue;
    }
    bson_iter_document(&arr, &len, &data);
    bson_t item;
    ok = bson_init_static(&item, data, len) &&
         bson_append_document_begin(&child, bson_iter_key(&arr), -1, &sub) &&
         sanitize_object(&sub, &item, f->sub) && bson_append_document_end(&child, &sub);
  }
  return ok && bson_append_array_end(out, &child);
}

static bool sanitize_object(bson_t *out, const bson_t *doc, const field_t *spec) {
  bson_iter_t it;
  bool ok = bson_iter_init(&it, doc);
  while (ok && bson_iter_next(&it)) {
    const field_t *f = spec_find(spec, bson_iter_key(&it));
    if (!f)
      continue;
    if (f->type == F_ARR && BSON_ITER_HOLDS_ARRAY(&it)) {
      ok = sanitize_array(out, &it, f);
    } else if (f->type == F_OBJ && BSON_ITER_HOLDS_DOCUMENT(&it)) {
      uint32_t len;
      const uint8_t *data;
      bson_t child, sub;
      bson_iter_document(&it, &len, &data);
      ok = bson_init_static(&child, data, len) &&
           bson_append_document_begin(out, f->name, -1, &sub) &&
           sanitize_object(&sub, &child, f->sub) && bson_append_document_end(out, &sub);
    } else {
      ok = bson_append_iter(out, NULL, 0, &it);
    }
  }
  return ok;
}

bool pkgv_entity_sanitize(bson_t *out, fzip_kind_t kind, const bson_t *doc,
                          fzip_error_t *error) {
  if ((unsigned)kind >= FZIP_KIND_COUNT)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT, "bad kind");
  if (!sanitize_object(out, doc, kind_fields[kind]))
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "%s: the document does not fit in a BSON document",
                          fzip_kind_info(kind)->name);
  return true;
}

fzip_code_t pkgv_result_error_code(const pkgv_result_t *result) {
  /* Any broken limit wins: the package is refused for its size, whatever
   * else is wrong with it (docs/FORMAT.md section 9). */
  return result->limit_error ? FZIP_ERR_RESOURCE_EXHAUSTED : FZIP_ERR_FAILED_PRECONDITION;
}

/* ---- the limits table ------------------------------------------------- */

#define PKGV_LIMIT_ROW(name, unit, what) {#name, (uint64_t)(name), unit, what},
static const pkg_limit_t limit_rows[] = {PKG_LIMITS(PKGV_LIMIT_ROW)};

const pkg_limit_t *pkgv_limits(size_t *n) {
  *n = sizeof limit_rows / sizeof limit_rows[0];
  return limit_rows;
}
