/*
 * svc_data: see svc_data.h.
 *
 * The five List methods share one handler, list_entities, driven by the
 * protobuf descriptors of the request and response (fields page_size,
 * page_token, account_ids, date_range, next_page_token and the one
 * repeated item field) and a row of list_specs naming the entity kind.
 * A page is read with one store cursor limited to page_size + 1 documents,
 * the extra one only telling whether another page exists.
 *
 * Page token: base64url (no padding) of "fz1|<kind>|<fingerprint>|<last
 * id>", where the fingerprint is 16 hex digits of SHA-256 over the user id,
 * the kind and the filters.  It is opaque to clients; decoding checks
 * every part, so a token of another list, user or filter, or garbage, is
 * INVALID_ARGUMENT instead of a silently wrong page.
 */
#include "svc_data.h"

#include <stdlib.h>
#include <string.h>

#include "entity_conv.h"
#include "fzip/v1/data_service.pb-c.h"
#include "fzip_failpoint.h"
#include "fzip_log.h"
#include "fzip_util.h"

#define TOKEN_VERSION "fz1"
#define TOKEN_FINGERPRINT_LEN 16
/* version|kind|fingerprint|id, separated by '|' */
#define TOKEN_PARTS 4
/* Decoded token payload: version, kind name, fingerprint, id, separators. */
#define TOKEN_PAYLOAD_MAX (SVC_DATA_TOKEN_MAX * 3 / 4 + 4)
/* Transaction files whose blobs are deleted per store cursor in DeleteAllData. */
#define DELETE_BLOB_BATCH 100
/* Bytes a repeated message field adds around each item: a one-byte tag
 * and a length varint of at most 10 bytes. */
#define PAGE_ITEM_FRAMING_MAX 11

struct svc_data {
  store_t *store;
  rpc_method_t rows[SVC_DATA_N_METHODS];
  const rpc_method_t *row_ptrs[SVC_DATA_N_METHODS];
};

/* ---- small helpers ---------------------------------------------------- */

static svc_data_t *svc_of(rpc_ctx_t *ctx) { return rpc_ctx_method_data(ctx); }

static bool caller(const char **user, rpc_ctx_t *ctx, fzip_error_t *error) {
  *user = rpc_ctx_user_id(ctx);
  if (!*user || !**user)
    return fzip_error_set(error, FZIP_DOMAIN_AUTH, FZIP_ERR_UNAUTHENTICATED,
                          "DataService calls need an authenticated user");
  return true;
}

static bool out_of_memory(fzip_error_t *error) {
  return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_RESOURCE_EXHAUSTED,
                        "response does not fit in the call's memory limit");
}

static void *field_ptr(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f) {
  return (char *)msg + f->offset;
}

static const ProtobufCFieldDescriptor *field(const ProtobufCMessageDescriptor *d,
                                             const char *name) {
  return protobuf_c_message_descriptor_get_field_by_name(d, name);
}

/* Integer value of a numeric document field; false if absent or not one. */
static bool doc_int64(int64_t *out, const bson_t *doc, const char *name) {
  bson_iter_t it;
  if (!bson_iter_init_find(&it, doc, name))
    return false;
  if (BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_DOUBLE(&it)) {
    *out = bson_iter_as_int64(&it);
    return true;
  }
  return false;
}

static const char *doc_utf8(const bson_t *doc, const char *name) {
  bson_iter_t it;
  if (!bson_iter_init_find(&it, doc, name) || !BSON_ITER_HOLDS_UTF8(&it))
    return NULL;
  return bson_iter_utf8(&it, NULL);
}

/* ---- base64url -------------------------------------------------------- */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encodes len bytes into out (NUL-terminated); false if it does not fit. */
static bool b64url_encode(char *out, size_t out_size, const unsigned char *in, size_t len) {
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    size_t chunk = len - i < 3 ? len - i : 3;
    if (chunk > 1)
      v |= (uint32_t)in[i + 1] << 8;
    if (chunk > 2)
      v |= in[i + 2];
    if (o + chunk + 2 > out_size)
      return false;
    for (size_t k = 0; k <= chunk; k++)
      out[o++] = b64url[(v >> (18 - 6 * k)) & 63];
  }
  out[o] = '\0';
  return true;
}

static int b64url_value(char c) {
  const char *p = c ? strchr(b64url, c) : NULL;
  return p ? (int)(p - b64url) : -1;
}

/* Strict decoding: only the url alphabet, no padding, no stray bits. */
static bool b64url_decode(unsigned char *out, size_t out_size, size_t *out_len, const char *in) {
  size_t len = strlen(in), o = 0;
  if (len % 4 == 1)
    return false;
  for (size_t i = 0; i < len; i += 4) {
    size_t chunk = len - i < 4 ? len - i : 4;
    uint32_t v = 0;
    for (size_t k = 0; k < 4; k++) {
      int d = k < chunk ? b64url_value(in[i + k]) : 0;
      if (d < 0)
        return false;
      v = v << 6 | (uint32_t)d;
    }
    if ((chunk == 2 && (v & 0xffff)) || (chunk == 3 && (v & 0xff)))
      return false;
    for (size_t k = 0; k + 1 < chunk; k++) {
      if (o >= out_size)
        return false;
      out[o++] = (unsigned char)(v >> (16 - 8 * k));
    }
  }
  *out_len = o;
  return true;
}

/* ---- page tokens ------------------------------------------------------ */

typedef struct {
  fzip_kind_t kind;
  size_t page_size;
  store_filter_t filter;
  char fingerprint[TOKEN_FINGERPRINT_LEN + 1];
  char after_id[FZIP_ID_MAX + 1];
} list_query_t;

static void hash_field(fzip_sha256_t *h, const void *data, size_t len) {
  /* Length-prefixed so that ("ab","c") and ("a","bc") differ. */
  uint64_t n = len;
  fzip_sha256_update(h, &n, sizeof n);
  fzip_sha256_update(h, data, len);
}

static bool compute_fingerprint(list_query_t *q, const char *user, fzip_error_t *error) {
  char hex[FZIP_SHA256_HEX_LEN + 1];
  const char *kind = fzip_kind_info(q->kind)->name;
  const store_filter_t *f = &q->filter;
  int64_t dates[4] = {f->has_date_from, f->date_from, f->has_date_to, f->date_to};
  fzip_sha256_t *h = fzip_sha256_new();
  if (!h)
    return out_of_memory(error);
  hash_field(h, user, strlen(user));
  hash_field(h, kind, strlen(kind));
  for (size_t i = 0; i < f->n_account_ids; i++)
    hash_field(h, f->account_ids[i], strlen(f->account_ids[i]));
  hash_field(h, dates, sizeof dates);
  fzip_sha256_final_hex(h, hex);
  fzip_sha256_destroy(h);
  memcpy(q->fingerprint, hex, TOKEN_FINGERPRINT_LEN);
  q->fingerprint[TOKEN_FINGERPRINT_LEN] = '\0';
  return true;
}

static bool bad_token(fzip_error_t *error, const char *why) {
  return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                        "page_token is not valid for this request (%s); send the "
                        "next_page_token of the previous page of the same list with the "
                        "same filters, or no token for the first page",
                        why);
}

/* Reads `token` into q->after_id after checking it belongs to this query. */
static bool token_decode(list_query_t *q, const char *token, fzip_error_t *error) {
  unsigned char raw[TOKEN_PAYLOAD_MAX + 1];
  size_t len = 0;
  char *parts[TOKEN_PARTS];
  char *p;
  if (strlen(token) > SVC_DATA_TOKEN_MAX)
    return bad_token(error, "too long");
  if (!b64url_decode(raw, sizeof raw - 1, &len, token) || memchr(raw, '\0', len))
    return bad_token(error, "not a token");
  raw[len] = '\0';
  p = (char *)raw;
  /* The id goes last and may itself contain '|'. */
  for (int i = 0; i < TOKEN_PARTS - 1; i++) {
    char *bar = strchr(p, '|');
    if (!bar)
      return bad_token(error, "not a token");
    *bar = '\0';
    parts[i] = p;
    p = bar + 1;
  }
  parts[TOKEN_PARTS - 1] = p;
  if (strcmp(parts[0], TOKEN_VERSION) != 0)
    return bad_token(error, "unknown token version");
  if (strcmp(parts[1], fzip_kind_info(q->kind)->name) != 0)
    return bad_token(error, "token of another list");
  if (strcmp(parts[2], q->fingerprint) != 0)
    return bad_token(error, "token of another user or other filters");
  if (!fzip_id_is_valid(parts[3]))
    return bad_token(error, "bad position");
  memcpy(q->after_id, parts[3], strlen(parts[3]) + 1);
  q->filter.after_id = q->after_id;
  return true;
}

static char *token_encode(rpc_ctx_t *ctx, const list_query_t *q, const char *last_id,
                          fzip_error_t *error) {
  char payload[TOKEN_PAYLOAD_MAX];
  char text[SVC_DATA_TOKEN_MAX + 1];
  int n = snprintf(payload, sizeof payload, "%s|%s|%s|%s", TOKEN_VERSION,
                   fzip_kind_info(q->kind)->name, q->fingerprint, last_id);
  char *copy;
  if (n < 0 || (size_t)n >= sizeof payload ||
      !b64url_encode(text, sizeof text, (const unsigned char *)payload, (size_t)n)) {
    fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL, "page token too long for id %s",
                   last_id);
    return NULL;
  }
  copy = rpc_ctx_strdup(ctx, text);
  if (!copy)
    out_of_memory(error);
  return copy;
}

/* ---- list requests ---------------------------------------------------- */

static bool parse_account_ids(store_filter_t *filter, const ProtobufCMessage *req,
                              fzip_error_t *error) {
  const ProtobufCFieldDescriptor *f = field(req->descriptor, "account_ids");
  size_t n;
  char **ids;
  if (!f)
    return true;
  n = *(const size_t *)((const char *)req + f->quantifier_offset);
  ids = *(char **const *)field_ptr(req, f);
  if (n > STORE_FILTER_IDS_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                          "account_ids holds %zu ids; at most %d are accepted", n,
                          STORE_FILTER_IDS_MAX);
  for (size_t i = 0; i < n; i++) {
    if (!fzip_id_is_valid(ids[i]))
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                            "account_ids[%zu] is not a valid id", i);
  }
  filter->account_ids = (const char *const *)ids;
  filter->n_account_ids = n;
  return true;
}

static bool parse_date_range(store_filter_t *filter, const ProtobufCMessage *req,
                             fzip_error_t *error) {
  const ProtobufCFieldDescriptor *f = field(req->descriptor, "date_range");
  const Fzip__V1__TimeRange *r;
  if (!f)
    return true;
  r = *(Fzip__V1__TimeRange *const *)field_ptr(req, f);
  if (!r)
    return true;
  filter->has_date_from = r->has_from;
  filter->date_from = r->from;
  filter->has_date_to = r->has_to;
  filter->date_to = r->to;
  if (r->has_from && r->has_to && r->from > r->to)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                          "date_range.from (%lld) is after date_range.to (%lld)",
                          (long long)r->from, (long long)r->to);
  return true;
}

static bool parse_list_request(list_query_t *q, const ProtobufCMessage *req, fzip_kind_t kind,
                               const char *user, fzip_error_t *error) {
  const ProtobufCMessageDescriptor *d = req->descriptor;
  int32_t page_size = *(const int32_t *)field_ptr(req, field(d, "page_size"));
  const char *token = *(char *const *)field_ptr(req, field(d, "page_token"));
  memset(q, 0, sizeof *q);
  q->kind = kind;
  if (page_size < 0 || page_size > SVC_DATA_PAGE_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                          "page_size %d is out of range: use 1 to %d (0 means %d)", page_size,
                          SVC_DATA_PAGE_MAX, SVC_DATA_PAGE_DEFAULT);
  q->page_size = page_size ? (size_t)page_size : SVC_DATA_PAGE_DEFAULT;
  if (!parse_account_ids(&q->filter, req, error) || !parse_date_range(&q->filter, req, error) ||
      !compute_fingerprint(q, user, error))
    return false;
  if (token && *token && !token_decode(q, token, error))
    return false;
  /* One more than a page: its presence alone says another page exists. */
  q->filter.limit = q->page_size + 1;
  return true;
}

/* ---- list handler ----------------------------------------------------- */

typedef struct {
  void **items;
  size_t n;
  size_t bytes;
  bool more;
  char last_id[FZIP_ID_MAX + 1];
} page_t;

/* Adds one document to the page, or ends the page (more = true) when it is
 * full in count or bytes. */
static bool page_add(page_t *page, rpc_ctx_t *ctx, const list_query_t *q, const bson_t *doc,
                     fzip_error_t *error) {
  const char *id = doc_utf8(doc, fzip_kind_info(q->kind)->id_field);
  ProtobufCMessage *item = NULL;
  size_t size;
  if (page->n == q->page_size) {
    page->more = true;
    return true;
  }
  if (!id || strlen(id) > FZIP_ID_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INTERNAL,
                          "stored %s document without a valid id",
                          fzip_kind_info(q->kind)->name);
  if (!conv_entity_to_message(&item, rpc_ctx_allocator(ctx), q->kind, doc, error))
    return false;
  size = protobuf_c_message_get_packed_size(item) + PAGE_ITEM_FRAMING_MAX;
  if (page->n > 0 && page->bytes + size > SVC_DATA_PAGE_BYTES_MAX) {
    page->more = true;
    return true;
  }
  page->items[page->n++] = item;
  page->bytes += size;
  memcpy(page->last_id, id, strlen(id) + 1);
  return true;
}

/* A handler looping over the store stops when its caller is gone (cancel,
 * deadline, shutdown), so an abandoned call frees its worker soon. */
static bool cancelled(rpc_ctx_t *ctx, fzip_error_t *error) {
  if (!rpc_ctx_is_cancelled(ctx))
    return false;
  fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_CANCELLED, "call cancelled");
  return true;
}

/* Visits one document; sets *stop to end the walk early.  False (error
 * set) ends it with that error. */
typedef bool (*doc_visit_fn)(void *arg, const bson_t *doc, bool *stop, fzip_error_t *error);

/* The one loop over a store cursor of the handlers below: the documents of
 * `kind` that `filter` selects, in id order, until `visit` stops or fails;
 * a cursor error on the way is the walk's error. */
static bool for_each_doc(store_t *store, const char *user, fzip_kind_t kind,
                         const store_filter_t *filter, doc_visit_fn visit, void *arg,
                         fzip_error_t *error) {
  store_cursor_t *cursor = NULL;
  const bson_t *doc = NULL;
  fzip_error_t cerr = {0};
  bool stop = false;
  bool ok = false;
  if (!store_cursor_new(&cursor, store, user, kind, filter, error))
    goto done;
  while (!stop && store_cursor_next(cursor, &doc, &cerr)) {
    if (!visit(arg, doc, &stop, error))
      goto done;
  }
  if (fzip_error_is_set(&cerr)) {
    *error = cerr;
    goto done;
  }
  ok = true;
done:
  store_cursor_destroy(cursor);
  return ok;
}

typedef struct {
  page_t *page;
  rpc_ctx_t *ctx;
  const list_query_t *q;
} page_walk_t;

static bool page_visit(void *arg, const bson_t *doc, bool *stop, fzip_error_t *error) {
  page_walk_t *w = arg;
  /* The failpoint slows each item down for the cancellation test. */
  if (cancelled(w->ctx, error) || !fzip_failpoint("data.list_item", error) ||
      !page_add(w->page, w->ctx, w->q, doc, error))
    return false;
  *stop = w->page->more;
  return true;
}

static bool read_page(page_t *page, rpc_ctx_t *ctx, const list_query_t *q, const char *user,
                      fzip_error_t *error) {
  page_walk_t w = {page, ctx, q};
  return for_each_doc(svc_of(ctx)->store, user, q->kind, &q->filter, page_visit, &w, error);
}

static bool list_entities(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                          fzip_kind_t kind, const char *items_field, fzip_error_t *error) {
  const ProtobufCMessageDescriptor *rd = rpc_ctx_method(ctx)->response;
  const ProtobufCFieldDescriptor *items_f = field(rd, items_field);
  const ProtobufCFieldDescriptor *token_f = field(rd, "next_page_token");
  const char *user = NULL;
  list_query_t q;
  page_t page = {0};
  ProtobufCMessage *msg = NULL;

  if (!caller(&user, ctx, error) || !parse_list_request(&q, req, kind, user, error))
    return false;
  msg = rpc_ctx_alloc(ctx, rd->sizeof_message);
  page.items = rpc_ctx_alloc(ctx, q.page_size * sizeof *page.items);
  if (!msg || !page.items)
    return out_of_memory(error);
  protobuf_c_message_init(rd, msg);
  if (!read_page(&page, ctx, &q, user, error))
    return false;
  *(size_t *)((char *)msg + items_f->quantifier_offset) = page.n;
  *(void ***)field_ptr(msg, items_f) = page.items;
  if (page.more) {
    char *token = token_encode(ctx, &q, page.last_id, error);
    if (!token)
      return false;
    *(char **)field_ptr(msg, token_f) = token;
  }
  *resp = msg;
  return true;
}

static bool list_accounts(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                          fzip_error_t *error) {
  return list_entities(ctx, req, resp, FZIP_KIND_ACCOUNT, "accounts", error);
}

static bool list_transactions(rpc_ctx_t *ctx, const ProtobufCMessage *req,
                              ProtobufCMessage **resp, fzip_error_t *error) {
  return list_entities(ctx, req, resp, FZIP_KIND_TRANSACTION, "transactions", error);
}

static bool list_categories(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                            fzip_error_t *error) {
  return list_entities(ctx, req, resp, FZIP_KIND_CATEGORY, "categories", error);
}

static bool list_file_maps(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                           fzip_error_t *error) {
  return list_entities(ctx, req, resp, FZIP_KIND_FILE_MAP, "file_maps", error);
}

static bool list_transaction_files(rpc_ctx_t *ctx, const ProtobufCMessage *req,
                                   ProtobufCMessage **resp, fzip_error_t *error) {
  return list_entities(ctx, req, resp, FZIP_KIND_TRANSACTION_FILE, "files", error);
}

/* ---- summary ---------------------------------------------------------- */

static int64_t *summary_slot(Fzip__V1__DataSummary *s, fzip_kind_t kind) {
  switch (kind) {
  case FZIP_KIND_ACCOUNT:
    return &s->accounts_count;
  case FZIP_KIND_CATEGORY:
    return &s->categories_count;
  case FZIP_KIND_FILE_MAP:
    return &s->file_maps_count;
  case FZIP_KIND_TRANSACTION_FILE:
    return &s->transaction_files_count;
  case FZIP_KIND_TRANSACTION:
    return &s->transactions_count;
  case FZIP_KIND_ANALYTICS:
    return &s->analytics_count;
  default:
    return NULL;
  }
}

typedef struct {
  int64_t *sum;
  rpc_ctx_t *ctx;
  uint64_t seen;
} size_walk_t;

static bool size_visit(void *arg, const bson_t *doc, bool *stop, fzip_error_t *error) {
  size_walk_t *w = arg;
  int64_t size = 0;
  if (doc_int64(&size, doc, "fileSize") && size > 0)
    *w->sum += size;
  return ++w->seen % STORE_BATCH_MAX != 0 || !cancelled(w->ctx, error);
}

/* Sum of the transaction files' fileSize fields. */
static bool sum_file_sizes(int64_t *out, rpc_ctx_t *ctx, const char *user, fzip_error_t *error) {
  size_walk_t w = {out, ctx, 0};
  *out = 0;
  return for_each_doc(svc_of(ctx)->store, user, FZIP_KIND_TRANSACTION_FILE, NULL, size_visit,
                      &w, error);
}

static Fzip__V1__DataSummary *new_summary(rpc_ctx_t *ctx) {
  Fzip__V1__DataSummary *s = rpc_ctx_alloc(ctx, sizeof *s);
  if (s)
    fzip__v1__data_summary__init(s);
  return s;
}

static bool get_data_summary(rpc_ctx_t *ctx, const ProtobufCMessage *req,
                             ProtobufCMessage **resp, fzip_error_t *error) {
  Fzip__V1__GetDataSummaryResponse *r = rpc_ctx_alloc(ctx, sizeof *r);
  Fzip__V1__DataSummary *s = new_summary(ctx);
  const char *user = NULL;
  if (!caller(&user, ctx, error))
    return false;
  if (!r || !s)
    return out_of_memory(error);
  fzip__v1__get_data_summary_response__init(r);
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    uint64_t n = 0;
    if (cancelled(ctx, error) || !fzip_failpoint("data.summary_kind", error))
      return false;
    if (!store_entity_count(&n, svc_of(ctx)->store, user, (fzip_kind_t)k, NULL, error))
      return fzip_error_prefix(error, "counting %s", fzip_kind_info((fzip_kind_t)k)->name);
    *summary_slot(s, (fzip_kind_t)k) = (int64_t)n;
  }
  if (!sum_file_sizes(&s->file_bytes, ctx, user, error))
    return false;
  r->summary = s;
  *resp = &r->base;
  return true;
}

/* ---- delete all ------------------------------------------------------- */

typedef struct {
  char file_id[FZIP_ID_MAX + 1];
  char blob_id[STORE_BLOB_ID_MAX + 1]; /* "" if the file names no blob of the caller's */
} file_blob_t;

/* The blob a file document names, if it lies under the caller's prefix:
 * s3Key comes from imported data and must never reach another user's blob. */
static void blob_of(file_blob_t *fb, const bson_t *doc, const char *user) {
  const char *key = doc_utf8(doc, "s3Key");
  size_t ulen = strlen(user);
  fb->blob_id[0] = '\0';
  if (!key || !*key)
    return;
  if (strlen(key) > STORE_BLOB_ID_MAX || strncmp(key, user, ulen) != 0 || key[ulen] != '/' ||
      strstr(key, "..")) {
    fzip_log(FZIP_LOG_WARN, "data", "file blob outside the user's prefix left alone", "user",
             user, "file", fb->file_id, NULL);
    return;
  }
  memcpy(fb->blob_id, key, strlen(key) + 1);
}

typedef struct {
  file_blob_t *batch;
  size_t *n;
  const char *user;
} file_walk_t;

static bool file_visit(void *arg, const bson_t *doc, bool *stop, fzip_error_t *error) {
  file_walk_t *w = arg;
  const char *id = doc_utf8(doc, "fileId");
  file_blob_t *fb = &w->batch[*w->n];
  if (!id || strlen(id) > FZIP_ID_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INTERNAL,
                          "stored transaction file without a valid fileId");
  memcpy(fb->file_id, id, strlen(id) + 1);
  blob_of(fb, doc, w->user);
  *stop = ++*w->n == DELETE_BLOB_BATCH;
  return true;
}

/* Reads up to DELETE_BLOB_BATCH files after `after` into batch. */
static bool read_file_batch(file_blob_t *batch, size_t *n, store_t *store, const char *user,
                            const char *after, fzip_error_t *error) {
  store_filter_t filter = {.after_id = *after ? after : NULL, .limit = DELETE_BLOB_BATCH};
  file_walk_t w = {batch, n, user};
  *n = 0;
  return for_each_doc(store, user, FZIP_KIND_TRANSACTION_FILE, &filter, file_visit, &w, error);
}

static bool delete_blob(uint64_t *bytes, store_t *store, const char *blob_id,
                        fzip_error_t *error) {
  store_blob_info_t info = {0};
  fzip_error_t serr = {0};
  if (store_blob_stat(&info, store, STORE_BUCKET_FILES, blob_id, &serr)) {
    *bytes += info.size;
  } else if (serr.code != FZIP_ERR_NOT_FOUND) {
    *error = serr;
    return fzip_error_prefix(error, "file blob %s", blob_id);
  }
  if (!store_blob_delete(store, STORE_BUCKET_FILES, blob_id, error))
    return fzip_error_prefix(error, "deleting file blob %s", blob_id);
  return true;
}

/* Deletes every transaction file's blob; *bytes = their total size. */
static bool delete_file_blobs(uint64_t *bytes, rpc_ctx_t *ctx, const char *user,
                              fzip_error_t *error) {
  store_t *store = svc_of(ctx)->store;
  file_blob_t *batch = malloc(DELETE_BLOB_BATCH * sizeof *batch);
  char after[FZIP_ID_MAX + 1] = "";
  size_t n = 0;
  bool ok = false;
  *bytes = 0;
  if (!batch) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  do {
    if (cancelled(ctx, error) || !read_file_batch(batch, &n, store, user, after, error))
      goto done;
    for (size_t i = 0; i < n; i++) {
      if (batch[i].blob_id[0] && !delete_blob(bytes, store, batch[i].blob_id, error))
        goto done;
    }
    if (n > 0)
      memcpy(after, batch[n - 1].file_id, sizeof after);
  } while (n == DELETE_BLOB_BATCH);
  ok = true;
done:
  free(batch);
  return ok;
}

static bool delete_all_data(rpc_ctx_t *ctx, const ProtobufCMessage *req,
                            ProtobufCMessage **resp, fzip_error_t *error) {
  const Fzip__V1__DeleteAllDataRequest *in = (const Fzip__V1__DeleteAllDataRequest *)req;
  Fzip__V1__DeleteAllDataResponse *r = rpc_ctx_alloc(ctx, sizeof *r);
  Fzip__V1__DataSummary *s = new_summary(ctx);
  const char *user = NULL;
  uint64_t bytes = 0;
  if (!caller(&user, ctx, error))
    return false;
  if (!in->confirm || strcmp(in->confirm, SVC_DATA_DELETE_CONFIRM) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                          "DeleteAllData deletes every account, transaction, category, file "
                          "map, file and analytics record; to confirm, send confirm = \"%s\"",
                          SVC_DATA_DELETE_CONFIRM);
  if (!r || !s)
    return out_of_memory(error);
  fzip__v1__delete_all_data_response__init(r);
  /* Blobs before documents: a crash in between leaves documents that a
   * rerun finds again, never blobs nothing points at. */
  if (!delete_file_blobs(&bytes, ctx, user, error))
    return false;
  s->file_bytes = (int64_t)bytes;
  for (int k = FZIP_KIND_COUNT - 1; k >= 0; k--) {
    uint64_t n = 0;
    if (!store_entity_delete_all(&n, svc_of(ctx)->store, user, (fzip_kind_t)k, error))
      return fzip_error_prefix(error, "deleting %s", fzip_kind_info((fzip_kind_t)k)->name);
    *summary_slot(s, (fzip_kind_t)k) = (int64_t)n;
  }
  fzip_log(FZIP_LOG_INFO, "data", "all data deleted", "user", user, NULL);
  r->deleted = s;
  *resp = &r->base;
  return true;
}

/* ---- the method table ------------------------------------------------- */

typedef struct {
  const char *path;
  const ProtobufCMessageDescriptor *request;
  const ProtobufCMessageDescriptor *response;
  rpc_unary_fn fn;
} method_spec_t;

static const method_spec_t method_specs[SVC_DATA_N_METHODS] = {
    {"/fzip.v1.DataService/GetDataSummary", &fzip__v1__get_data_summary_request__descriptor,
     &fzip__v1__get_data_summary_response__descriptor, get_data_summary},
    {"/fzip.v1.DataService/ListAccounts", &fzip__v1__list_accounts_request__descriptor,
     &fzip__v1__list_accounts_response__descriptor, list_accounts},
    {"/fzip.v1.DataService/ListTransactions", &fzip__v1__list_transactions_request__descriptor,
     &fzip__v1__list_transactions_response__descriptor, list_transactions},
    {"/fzip.v1.DataService/ListCategories", &fzip__v1__list_categories_request__descriptor,
     &fzip__v1__list_categories_response__descriptor, list_categories},
    {"/fzip.v1.DataService/ListFileMaps", &fzip__v1__list_file_maps_request__descriptor,
     &fzip__v1__list_file_maps_response__descriptor, list_file_maps},
    {"/fzip.v1.DataService/ListTransactionFiles",
     &fzip__v1__list_transaction_files_request__descriptor,
     &fzip__v1__list_transaction_files_response__descriptor, list_transaction_files},
    {"/fzip.v1.DataService/DeleteAllData", &fzip__v1__delete_all_data_request__descriptor,
     &fzip__v1__delete_all_data_response__descriptor, delete_all_data},
};

bool svc_data_new(svc_data_t **out, store_t *store, fzip_error_t *error) {
  svc_data_t *svc = calloc(1, sizeof *svc);
  *out = NULL;
  if (!svc)
    return fzip_error_oom(error, NULL);
  svc->store = store;
  for (size_t i = 0; i < SVC_DATA_N_METHODS; i++) {
    rpc_method_t *m = &svc->rows[i];
    m->path = method_specs[i].path;
    m->kind = RPC_UNARY;
    m->request = method_specs[i].request;
    m->response = method_specs[i].response;
    m->requires_auth = true;
    m->unary = method_specs[i].fn;
    m->data = svc;
    svc->row_ptrs[i] = m;
  }
  *out = svc;
  return true;
}

void svc_data_destroy(svc_data_t *svc) { free(svc); }

const rpc_method_t *const *svc_data_methods(const svc_data_t *svc, size_t *n) {
  *n = SVC_DATA_N_METHODS;
  return svc->row_ptrs;
}
