/*
 * DataService over real gRPC: a data_test_server process on loopback with
 * a real store (a SQLite file in a temp dir, or FerretDB), data written
 * through the store API by this process, and calls made with the real
 * client library and real HS256 tokens.
 *
 *   test_data_service SERVER_BINARY sqlite
 *   test_data_service SERVER_BINARY mongo mongodb://HOST:PORT/DATABASE
 *     (the ferretdb fixture's @MONGODB_URI@: a database of our own)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth_jwt.h"
#include "fzip/v1/data_service.pb-c.h"
#include "fzip_test.h"
#include "rpc_client.h"
#include "store.h"
#include "svc_data.h"

#define N_ACCOUNTS 25
#define N_CATEGORIES 12
#define N_FILE_MAPS 5
#define N_FILES 9
#define N_TRANSACTIONS 250
#define N_ANALYTICS 4
#define FILE_BYTES_EACH 1000
#define DAY_MS 86400000LL
#define BASE_DATE 1700000000000LL
#define PATH_MAX_LEN 512
#define CALL_TIMEOUT_MS 20000

static char tmpdir[PATH_MAX_LEN];
static char store_uri[PATH_MAX_LEN * 2];
static char database[64];
static char user_a[64], user_b[64];
static char auth_a[4096], auth_b[4096];
static store_t *store;
static rpc_client_t *client;
static pid_t server_pid;
static FILE *server_stdin;

/* ---- fixture: data ------------------------------------------------------ */

static void id_of(char *buf, size_t size, const char *prefix, int i) {
  snprintf(buf, size, "%s-%03d", prefix, i);
}

static bool put(const char *user, fzip_kind_t kind, bson_t **docs, size_t n, fzip_error_t *err) {
  bool ok = store_entity_put_batch(store, user, kind, (const bson_t *const *)docs, n,
                                   STORE_WRITE_INSERT, NULL, err);
  for (size_t i = 0; i < n; i++)
    bson_destroy(docs[i]);
  return ok;
}

static bool put_blob(const char *blob_id, size_t size, fzip_error_t *err) {
  store_blob_writer_t *w = NULL;
  char buf[FILE_BYTES_EACH];
  bool ok;
  memset(buf, 'x', sizeof buf);
  ok = store_blob_writer_new(&w, store, STORE_BUCKET_FILES, blob_id, err) &&
       store_blob_writer_write(w, buf, size, err) && store_blob_writer_commit(w, NULL, err);
  store_blob_writer_destroy(w);
  return ok;
}

static bool fill_user_a(fzip_error_t *err) {
  bson_t *docs[N_TRANSACTIONS];
  char id[64], acc[64], blob[256];
  for (int i = 0; i < N_ACCOUNTS; i++) {
    id_of(id, sizeof id, "acc", i);
    docs[i] = BCON_NEW("accountId", BCON_UTF8(id), "accountName", BCON_UTF8("A account"),
                       "accountType", BCON_UTF8("checking"), "isActive", BCON_BOOL(true),
                       "createdAt", BCON_INT64(BASE_DATE));
  }
  if (!put(user_a, FZIP_KIND_ACCOUNT, docs, N_ACCOUNTS, err))
    return false;
  for (int i = 0; i < N_CATEGORIES; i++) {
    id_of(id, sizeof id, "cat", i);
    docs[i] = BCON_NEW("categoryId", BCON_UTF8(id), "name", BCON_UTF8("Food"), "type",
                       BCON_UTF8("EXPENSE"), "rules", "[", "{", "ruleId", BCON_UTF8("rule_0000abcd"),
                       "fieldToMatch", BCON_UTF8("description"), "condition",
                       BCON_UTF8("contains"), "value", BCON_UTF8("cafe"), "}", "]");
  }
  if (!put(user_a, FZIP_KIND_CATEGORY, docs, N_CATEGORIES, err))
    return false;
  for (int i = 0; i < N_FILE_MAPS; i++) {
    id_of(id, sizeof id, "fm", i);
    docs[i] = BCON_NEW("fileMapId", BCON_UTF8(id), "name", BCON_UTF8("csv"), "mappings", "[",
                       "{", "sourceField", BCON_UTF8("Date"), "targetField", BCON_UTF8("date"),
                       "}", "]");
  }
  if (!put(user_a, FZIP_KIND_FILE_MAP, docs, N_FILE_MAPS, err))
    return false;
  for (int i = 0; i < N_FILES; i++) {
    id_of(id, sizeof id, "file", i);
    id_of(acc, sizeof acc, "acc", i % 3);
    snprintf(blob, sizeof blob, "%s/%s", user_a, id);
    docs[i] = BCON_NEW("fileId", BCON_UTF8(id), "fileName", BCON_UTF8("x.csv"), "fileSize",
                       BCON_INT64(FILE_BYTES_EACH), "s3Key", BCON_UTF8(blob), "accountId",
                       BCON_UTF8(acc), "uploadDate", BCON_INT64(BASE_DATE + i));
    if (!put_blob(blob, FILE_BYTES_EACH, err))
      return false;
  }
  if (!put(user_a, FZIP_KIND_TRANSACTION_FILE, docs, N_FILES, err))
    return false;
  for (int i = 0; i < N_TRANSACTIONS; i++) {
    id_of(id, sizeof id, "tx", i);
    id_of(acc, sizeof acc, "acc", i % 5);
    docs[i] = BCON_NEW("transactionId", BCON_UTF8(id), "accountId", BCON_UTF8(acc), "date",
                       BCON_INT64(BASE_DATE + i * DAY_MS), "amount", BCON_UTF8("-1.50"),
                       "description", BCON_UTF8("cafe"));
  }
  if (!put(user_a, FZIP_KIND_TRANSACTION, docs, N_TRANSACTIONS, err))
    return false;
  for (int i = 0; i < N_ANALYTICS; i++) {
    id_of(id, sizeof id, "cash_flow#2024", i);
    docs[i] = BCON_NEW("analyticsId", BCON_UTF8(id), "analyticType", BCON_UTF8("cash_flow"),
                       "data", "{", "n", BCON_INT32(i), "}");
  }
  return put(user_a, FZIP_KIND_ANALYTICS, docs, N_ANALYTICS, err);
}

/* User B reuses one of A's ids, and owns a file whose blob must survive
 * A's DeleteAllData; A also holds a file whose s3Key points at B's blob. */
static bool fill_user_b(fzip_error_t *err) {
  bson_t *docs[2];
  char blob[256];
  snprintf(blob, sizeof blob, "%s/file-b", user_b);
  docs[0] = BCON_NEW("accountId", BCON_UTF8("acc-000"), "accountName", BCON_UTF8("B account"));
  if (!put(user_b, FZIP_KIND_ACCOUNT, docs, 1, err) || !put_blob(blob, 10, err))
    return false;
  docs[0] = BCON_NEW("fileId", BCON_UTF8("file-b"), "s3Key", BCON_UTF8(blob), "fileSize",
                     BCON_INT64(10));
  if (!put(user_b, FZIP_KIND_TRANSACTION_FILE, docs, 1, err))
    return false;
  docs[0] = BCON_NEW("fileId", BCON_UTF8("zz-foreign"), "s3Key", BCON_UTF8(blob));
  return put(user_a, FZIP_KIND_TRANSACTION_FILE, docs, 1, err);
}

/* ---- fixture: server ---------------------------------------------------- */

static bool start_server(const char *binary, const char *secret, fzip_error_t *err) {
  int in[2], out[2];
  char line[32];
  FILE *from = NULL;
  if (pipe(in) != 0 || pipe(out) != 0)
    return fzip_error_set(err, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "pipe: %s", strerror(errno));
  server_pid = fork();
  if (server_pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[1]);
    close(out[0]);
    execl(binary, binary, store_uri, database, secret, (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  server_stdin = fdopen(in[1], "w");
  from = fdopen(out[0], "r");
  if (!from || !fgets(line, sizeof line, from)) {
    if (from)
      fclose(from);
    return fzip_error_set(err, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "server did not start");
  }
  fclose(from);
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", atoi(line));
  rpc_client_options_t copts = {.target = target};
  return rpc_client_new(&client, &copts, err);
}

static void stop_server(void) {
  int status = 0;
  rpc_client_destroy(client);
  if (server_stdin)
    fclose(server_stdin); /* EOF: the server shuts down */
  if (server_pid > 0 && waitpid(server_pid, &status, 0) == server_pid &&
      (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
    fprintf(stderr, "server exited abnormally (status %d)\n", status);
}

static bool mint(char *out, size_t size, const char *secret, const char *user, fzip_error_t *err) {
  char *token = NULL;
  auth_mint_options_t opts = {.user_id = user, .ttl_s = 3600};
  if (!auth_mint_hs256(&token, secret, &opts, err))
    return false;
  snprintf(out, size, "Bearer %s", token);
  free(token);
  return true;
}

/* ---- calls -------------------------------------------------------------- */

static bool call(ProtobufCMessage **resp, const char *auth, const char *method,
                 const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                 fzip_error_t *err) {
  char path[128];
  rpc_call_options_t o = {.authorization = auth, .timeout_ms = CALL_TIMEOUT_MS};
  snprintf(path, sizeof path, "/fzip.v1.DataService/%s", method);
  *resp = NULL;
  return rpc_client_unary(resp, client, path, &o, req, resp_desc, err);
}

static Fzip__V1__DataSummary *summary_of(const char *auth, fzip_error_t *err) {
  Fzip__V1__GetDataSummaryRequest req = FZIP__V1__GET_DATA_SUMMARY_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  Fzip__V1__DataSummary *s;
  if (!call(&resp, auth, "GetDataSummary", &req.base,
            &fzip__v1__get_data_summary_response__descriptor, err))
    return NULL;
  s = ((Fzip__V1__GetDataSummaryResponse *)resp)->summary;
  ((Fzip__V1__GetDataSummaryResponse *)resp)->summary = NULL;
  protobuf_c_message_free_unpacked(resp, NULL);
  return s;
}

/* Pages through ListTransactions with the given filters, appending ids
 * to seen (caller frees each); false on a call failure. */
static bool list_all_transactions(char **seen, size_t *n_seen, size_t max, int page_size,
                                  char **account_ids, size_t n_accounts,
                                  Fzip__V1__TimeRange *range, int *pages, fzip_error_t *err) {
  char token[SVC_DATA_TOKEN_MAX + 1] = "";
  *n_seen = 0;
  *pages = 0;
  do {
    Fzip__V1__ListTransactionsRequest req = FZIP__V1__LIST_TRANSACTIONS_REQUEST__INIT;
    Fzip__V1__ListTransactionsResponse *r = NULL;
    req.page_size = page_size;
    req.page_token = token;
    req.account_ids = account_ids;
    req.n_account_ids = n_accounts;
    req.date_range = range;
    if (!call((ProtobufCMessage **)&r, auth_a, "ListTransactions", &req.base,
              &fzip__v1__list_transactions_response__descriptor, err))
      return false;
    (*pages)++;
    for (size_t i = 0; i < r->n_transactions && *n_seen < max; i++)
      seen[(*n_seen)++] = strdup(r->transactions[i]->transaction_id);
    snprintf(token, sizeof token, "%s", r->next_page_token);
    protobuf_c_message_free_unpacked(&r->base, NULL);
  } while (token[0] && *pages < 1000);
  return true;
}

static void free_ids(char **ids, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(ids[i]);
}

/* ---- tests -------------------------------------------------------------- */

static void test_summary_counts_every_kind_and_file_bytes(void) {
  fzip_error_t err = {0};
  Fzip__V1__DataSummary *s = summary_of(auth_a, &err);
  CHECK_OK(s != NULL, err);
  CHECK(s->accounts_count == N_ACCOUNTS);
  CHECK(s->categories_count == N_CATEGORIES);
  CHECK(s->file_maps_count == N_FILE_MAPS);
  CHECK(s->transaction_files_count == N_FILES + 1);
  CHECK(s->transactions_count == N_TRANSACTIONS);
  CHECK(s->analytics_count == N_ANALYTICS);
  CHECK(s->file_bytes == (int64_t)N_FILES * FILE_BYTES_EACH);
  protobuf_c_message_free_unpacked(&s->base, NULL);
}

static void test_transaction_pages_return_every_id_once_in_order(void) {
  fzip_error_t err = {0};
  char *seen[N_TRANSACTIONS + 1];
  size_t n = 0;
  int pages = 0;
  bool ok = true;
  /* Default page size (100): 250 transactions are 3 pages. */
  CHECK_OK(list_all_transactions(seen, &n, N_TRANSACTIONS + 1, 0, NULL, 0, NULL, &pages, &err),
           err);
  for (size_t i = 0; i < n; i++) {
    char want[64];
    id_of(want, sizeof want, "tx", (int)i);
    ok = ok && strcmp(seen[i], want) == 0;
  }
  free_ids(seen, n);
  CHECK(n == N_TRANSACTIONS);
  CHECK(pages == 3);
  CHECK(ok);
  /* An odd page size must not change the set or the order. */
  CHECK_OK(list_all_transactions(seen, &n, N_TRANSACTIONS + 1, 7, NULL, 0, NULL, &pages, &err),
           err);
  for (size_t i = 0; i < n; i++)
    ok = ok && (i == 0 || strcmp(seen[i - 1], seen[i]) < 0);
  free_ids(seen, n);
  CHECK(n == N_TRANSACTIONS && pages == (N_TRANSACTIONS + 6) / 7 && ok);
}

static void test_transactions_filter_by_account_and_date(void) {
  fzip_error_t err = {0};
  char *seen[N_TRANSACTIONS + 1];
  char *accounts[] = {"acc-001", "acc-003"};
  Fzip__V1__TimeRange range = FZIP__V1__TIME_RANGE__INIT;
  size_t n = 0;
  int pages = 0;
  bool ok = true;
  range.has_from = true;
  range.from = BASE_DATE + 10 * DAY_MS;
  range.has_to = true;
  range.to = BASE_DATE + 59 * DAY_MS; /* inclusive: days 10..59 */
  CHECK_OK(list_all_transactions(seen, &n, N_TRANSACTIONS + 1, 6, accounts, 2, &range, &pages,
                                 &err),
           err);
  /* Days 10..59 with i % 5 in {1, 3}: 20 transactions. */
  for (size_t i = 0; i < n; i++) {
    int day = atoi(seen[i] + 3);
    ok = ok && day >= 10 && day <= 59 && (day % 5 == 1 || day % 5 == 3);
  }
  free_ids(seen, n);
  CHECK(n == 20);
  CHECK(ok);
}

static void test_files_filter_by_account_and_other_lists_convert(void) {
  fzip_error_t err = {0};
  Fzip__V1__ListTransactionFilesRequest freq = FZIP__V1__LIST_TRANSACTION_FILES_REQUEST__INIT;
  Fzip__V1__ListTransactionFilesResponse *files = NULL;
  Fzip__V1__ListCategoriesRequest creq = FZIP__V1__LIST_CATEGORIES_REQUEST__INIT;
  Fzip__V1__ListCategoriesResponse *cats = NULL;
  Fzip__V1__ListFileMapsRequest mreq = FZIP__V1__LIST_FILE_MAPS_REQUEST__INIT;
  Fzip__V1__ListFileMapsResponse *maps = NULL;
  char *accounts[] = {"acc-002"};
  bool files_ok, cats_ok, maps_ok;
  freq.account_ids = accounts;
  freq.n_account_ids = 1;
  CHECK_OK(call((ProtobufCMessage **)&files, auth_a, "ListTransactionFiles", &freq.base,
                &fzip__v1__list_transaction_files_response__descriptor, &err),
           err);
  files_ok = files->n_files == 3 && strcmp(files->files[0]->file_id, "file-002") == 0 &&
             files->files[0]->file_size == FILE_BYTES_EACH && files->next_page_token[0] == '\0';
  protobuf_c_message_free_unpacked(&files->base, NULL);
  CHECK(files_ok);
  CHECK_OK(call((ProtobufCMessage **)&cats, auth_a, "ListCategories", &creq.base,
                &fzip__v1__list_categories_response__descriptor, &err),
           err);
  cats_ok = cats->n_categories == N_CATEGORIES &&
            cats->categories[0]->type == FZIP__V1__CATEGORY_TYPE__CATEGORY_TYPE_EXPENSE &&
            cats->categories[0]->n_rules == 1 &&
            cats->categories[0]->rules[0]->condition ==
                FZIP__V1__MATCH_CONDITION__MATCH_CONDITION_CONTAINS;
  protobuf_c_message_free_unpacked(&cats->base, NULL);
  CHECK(cats_ok);
  mreq.page_size = 2;
  CHECK_OK(call((ProtobufCMessage **)&maps, auth_a, "ListFileMaps", &mreq.base,
                &fzip__v1__list_file_maps_response__descriptor, &err),
           err);
  maps_ok = maps->n_file_maps == 2 && maps->next_page_token[0] != '\0' &&
            maps->file_maps[1]->n_mappings == 1;
  protobuf_c_message_free_unpacked(&maps->base, NULL);
  CHECK(maps_ok);
}

static void test_page_size_out_of_range_is_invalid_argument(void) {
  fzip_error_t err = {0};
  Fzip__V1__ListAccountsRequest req = FZIP__V1__LIST_ACCOUNTS_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  req.page_size = SVC_DATA_PAGE_MAX + 1;
  CHECK_FAILS(call(&resp, auth_a, "ListAccounts", &req.base,
                   &fzip__v1__list_accounts_response__descriptor, &err),
              err, FZIP_ERR_INVALID_ARGUMENT);
  req.page_size = -1;
  CHECK_FAILS(call(&resp, auth_a, "ListAccounts", &req.base,
                   &fzip__v1__list_accounts_response__descriptor, &err),
              err, FZIP_ERR_INVALID_ARGUMENT);
  req.page_size = SVC_DATA_PAGE_MAX;
  CHECK_OK(call(&resp, auth_a, "ListAccounts", &req.base,
                &fzip__v1__list_accounts_response__descriptor, &err),
           err);
  CHECK(((Fzip__V1__ListAccountsResponse *)resp)->n_accounts == N_ACCOUNTS);
  protobuf_c_message_free_unpacked(resp, NULL);
}

static void test_foreign_and_garbage_tokens_are_invalid_argument(void) {
  fzip_error_t err = {0};
  Fzip__V1__ListAccountsRequest areq = FZIP__V1__LIST_ACCOUNTS_REQUEST__INIT;
  Fzip__V1__ListCategoriesRequest creq = FZIP__V1__LIST_CATEGORIES_REQUEST__INIT;
  Fzip__V1__ListTransactionsRequest treq = FZIP__V1__LIST_TRANSACTIONS_REQUEST__INIT;
  Fzip__V1__ListAccountsResponse *accounts = NULL;
  ProtobufCMessage *resp = NULL;
  char token[SVC_DATA_TOKEN_MAX + 1];
  char *filter[] = {"acc-001"};
  areq.page_size = 3;
  CHECK_OK(call((ProtobufCMessage **)&accounts, auth_a, "ListAccounts", &areq.base,
                &fzip__v1__list_accounts_response__descriptor, &err),
           err);
  snprintf(token, sizeof token, "%s", accounts->next_page_token);
  protobuf_c_message_free_unpacked(&accounts->base, NULL);
  CHECK(token[0] != '\0');
  /* The token works where it came from... */
  areq.page_token = token;
  CHECK_OK(call(&resp, auth_a, "ListAccounts", &areq.base,
                &fzip__v1__list_accounts_response__descriptor, &err),
           err);
  CHECK(strcmp(((Fzip__V1__ListAccountsResponse *)resp)->accounts[0]->account_id, "acc-003") ==
        0);
  protobuf_c_message_free_unpacked(resp, NULL);
  /* ...and nowhere else: another list, another user, other filters, garbage. */
  creq.page_token = token;
  CHECK_FAILS(call(&resp, auth_a, "ListCategories", &creq.base,
                   &fzip__v1__list_categories_response__descriptor, &err),
              err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK_FAILS(call(&resp, auth_b, "ListAccounts", &areq.base,
                   &fzip__v1__list_accounts_response__descriptor, &err),
              err, FZIP_ERR_INVALID_ARGUMENT);
  treq.page_token = token;
  treq.account_ids = filter;
  treq.n_account_ids = 1;
  CHECK_FAILS(call(&resp, auth_a, "ListTransactions", &treq.base,
                   &fzip__v1__list_transactions_response__descriptor, &err),
              err, FZIP_ERR_INVALID_ARGUMENT);
  /* A transactions token reused with different filters. */
  treq.page_token = "";
  treq.n_account_ids = 0;
  treq.page_size = 5;
  CHECK_OK(call(&resp, auth_a, "ListTransactions", &treq.base,
                &fzip__v1__list_transactions_response__descriptor, &err),
           err);
  snprintf(token, sizeof token, "%s", ((Fzip__V1__ListTransactionsResponse *)resp)->next_page_token);
  protobuf_c_message_free_unpacked(resp, NULL);
  treq.page_token = token;
  treq.n_account_ids = 1;
  CHECK_FAILS(call(&resp, auth_a, "ListTransactions", &treq.base,
                   &fzip__v1__list_transactions_response__descriptor, &err),
              err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "filters") != NULL);
  areq.page_token = "not-a-token!";
  CHECK_FAILS(call(&resp, auth_a, "ListAccounts", &areq.base,
                   &fzip__v1__list_accounts_response__descriptor, &err),
              err, FZIP_ERR_INVALID_ARGUMENT);
  areq.page_token = "Zm9vfGJhcnxiYXp8cXV4"; /* base64url of "foo|bar|baz|qux" */
  CHECK_FAILS(call(&resp, auth_a, "ListAccounts", &areq.base,
                   &fzip__v1__list_accounts_response__descriptor, &err),
              err, FZIP_ERR_INVALID_ARGUMENT);
}

static void test_user_b_sees_none_of_user_a_data(void) {
  fzip_error_t err = {0};
  Fzip__V1__DataSummary *s = summary_of(auth_b, &err);
  Fzip__V1__ListAccountsRequest req = FZIP__V1__LIST_ACCOUNTS_REQUEST__INIT;
  Fzip__V1__ListAccountsResponse *r = NULL;
  bool ok;
  CHECK_OK(s != NULL, err);
  ok = s->accounts_count == 1 && s->transactions_count == 0 && s->categories_count == 0 &&
       s->transaction_files_count == 1 && s->file_bytes == 10;
  protobuf_c_message_free_unpacked(&s->base, NULL);
  CHECK(ok);
  CHECK_OK(call((ProtobufCMessage **)&r, auth_b, "ListAccounts", &req.base,
                &fzip__v1__list_accounts_response__descriptor, &err),
           err);
  ok = r->n_accounts == 1 && strcmp(r->accounts[0]->account_name, "B account") == 0;
  protobuf_c_message_free_unpacked(&r->base, NULL);
  CHECK(ok);
}

/* Every method of the service descriptor, so a method added to the proto
 * is covered without touching this test: no token, and a token that is not
 * a JWT, are refused before any handler runs. */
static void test_every_method_refuses_a_missing_or_bad_token(void) {
  const ProtobufCServiceDescriptor *svc = &fzip__v1__data_service__descriptor;
  CHECK(svc->n_methods >= 7);
  for (unsigned i = 0; i < svc->n_methods; i++) {
    const ProtobufCMethodDescriptor *m = &svc->methods[i];
    ProtobufCMessage *req = calloc(1, m->input->sizeof_message);
    ProtobufCMessage *resp = NULL;
    fzip_error_t none = {0}, bad = {0};
    bool none_ok, bad_ok;
    CHECK(req != NULL);
    protobuf_c_message_init(m->input, req);
    none_ok = !call(&resp, NULL, m->name, req, m->output, &none);
    bad_ok = !call(&resp, "Bearer not.a.token", m->name, req, m->output, &bad);
    free(req);
    if (!none_ok || none.code != FZIP_ERR_UNAUTHENTICATED ||
        !strstr(none.message, "missing authorization") || !bad_ok ||
        bad.code != FZIP_ERR_UNAUTHENTICATED || !strstr(bad.message, "malformed"))
      fprintf(stderr, "  %s: no token [%s] %s; bad token [%s] %s\n", m->name,
              fzip_code_name((fzip_code_t)none.code), none.message,
              fzip_code_name((fzip_code_t)bad.code), bad.message);
    CHECK(none_ok && none.code == FZIP_ERR_UNAUTHENTICATED);
    CHECK(strstr(none.message, "missing authorization") != NULL);
    CHECK(bad_ok && bad.code == FZIP_ERR_UNAUTHENTICATED);
    CHECK(strstr(bad.message, "malformed") != NULL);
  }
}

static void test_delete_all_requires_the_exact_confirmation(void) {
  fzip_error_t err = {0};
  Fzip__V1__DeleteAllDataRequest req = FZIP__V1__DELETE_ALL_DATA_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  Fzip__V1__DataSummary *s = NULL;
  bool ok;
  CHECK_FAILS(call(&resp, auth_a, "DeleteAllData", &req.base,
                   &fzip__v1__delete_all_data_response__descriptor, &err),
              err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK(strstr(err.message, SVC_DATA_DELETE_CONFIRM) != NULL);
  req.confirm = "delete all data";
  CHECK_FAILS(call(&resp, auth_a, "DeleteAllData", &req.base,
                   &fzip__v1__delete_all_data_response__descriptor, &err),
              err, FZIP_ERR_INVALID_ARGUMENT);
  s = summary_of(auth_a, &err);
  CHECK_OK(s != NULL, err);
  ok = s->transactions_count == N_TRANSACTIONS;
  protobuf_c_message_free_unpacked(&s->base, NULL);
  CHECK(ok);
}

static bool blob_exists(const char *blob_id) {
  store_blob_info_t info;
  fzip_error_t err = {0};
  return store_blob_stat(&info, store, STORE_BUCKET_FILES, blob_id, &err);
}

static void test_delete_all_removes_entities_and_blobs_of_the_caller_only(void) {
  fzip_error_t err = {0};
  Fzip__V1__DeleteAllDataRequest req = FZIP__V1__DELETE_ALL_DATA_REQUEST__INIT;
  Fzip__V1__DeleteAllDataResponse *r = NULL;
  Fzip__V1__DataSummary *s = NULL;
  char blob[256];
  bool ok;
  req.confirm = SVC_DATA_DELETE_CONFIRM;
  CHECK_OK(call((ProtobufCMessage **)&r, auth_a, "DeleteAllData", &req.base,
                &fzip__v1__delete_all_data_response__descriptor, &err),
           err);
  ok = r->deleted->accounts_count == N_ACCOUNTS && r->deleted->transactions_count == N_TRANSACTIONS &&
       r->deleted->categories_count == N_CATEGORIES && r->deleted->file_maps_count == N_FILE_MAPS &&
       r->deleted->transaction_files_count == N_FILES + 1 &&
       r->deleted->analytics_count == N_ANALYTICS &&
       r->deleted->file_bytes == (int64_t)N_FILES * FILE_BYTES_EACH;
  protobuf_c_message_free_unpacked(&r->base, NULL);
  CHECK(ok);
  s = summary_of(auth_a, &err);
  CHECK_OK(s != NULL, err);
  ok = s->accounts_count == 0 && s->transactions_count == 0 && s->transaction_files_count == 0 &&
       s->analytics_count == 0 && s->file_bytes == 0;
  protobuf_c_message_free_unpacked(&s->base, NULL);
  CHECK(ok);
  for (int i = 0; i < N_FILES; i++) {
    char id[64];
    id_of(id, sizeof id, "file", i);
    snprintf(blob, sizeof blob, "%s/%s", user_a, id);
    CHECK(!blob_exists(blob));
  }
  /* B's data, and B's blob that one of A's files pointed at, are intact. */
  snprintf(blob, sizeof blob, "%s/file-b", user_b);
  CHECK(blob_exists(blob));
  s = summary_of(auth_b, &err);
  CHECK_OK(s != NULL, err);
  ok = s->accounts_count == 1 && s->transaction_files_count == 1;
  protobuf_c_message_free_unpacked(&s->base, NULL);
  CHECK(ok);
}

/* ---- main --------------------------------------------------------------- */

/* The server opens (and sets up) the store on its own while ours is
 * closed, as two fzipd replicas starting one after the other would. */
static bool reopen_around_server_start(const char *binary, const char *secret,
                                       const store_options_t *so, fzip_error_t *err) {
  store_destroy(store);
  store = NULL;
  return start_server(binary, secret, err) && store_open(&store, so, err);
}

static bool set_up(const char *binary, const char *backend, const char *uri,
                   fzip_error_t *err) {
  char secret[PATH_MAX_LEN + 16];
  snprintf(tmpdir, sizeof tmpdir, "/tmp/fzip-data-test-XXXXXX");
  if (!mkdtemp(tmpdir))
    return fzip_error_set(err, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "mkdtemp: %s", strerror(errno));
  snprintf(database, sizeof database, "fzip_data_test_%d", (int)getpid());
  snprintf(user_a, sizeof user_a, "user-a-%d", (int)getpid());
  snprintf(user_b, sizeof user_b, "user-b-%d", (int)getpid());
  if (strcmp(backend, "mongo") == 0) {
    /* mongodb://host:port/DATABASE from the fixture: the database is ours. */
    const char *slash = strrchr(uri, '/');
    if (!slash || slash[1] == '\0' || strncmp(uri, "mongodb://", 10) != 0 ||
        slash < uri + 10)
      return fzip_error_set(err, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                            "want mongodb://HOST:PORT/DATABASE, got %s", uri);
    snprintf(store_uri, sizeof store_uri, "%s", uri);
    snprintf(database, sizeof database, "%.*s", (int)strcspn(slash + 1, "?"), slash + 1);
  } else {
    snprintf(store_uri, sizeof store_uri, "sqlite:%s/fzip.db", tmpdir);
  }
  snprintf(secret, sizeof secret, "%s/secret", tmpdir);
  store_options_t so = {.uri = store_uri, .database = database};
  return auth_write_random_secret(secret, err) && mint(auth_a, sizeof auth_a, secret, user_a, err) &&
         mint(auth_b, sizeof auth_b, secret, user_b, err) && store_open(&store, &so, err) &&
         fill_user_a(err) && fill_user_b(err) && reopen_around_server_start(binary, secret, &so, err);
}

static void tear_down(void) {
  char cmd[PATH_MAX_LEN + 16];
  fzip_error_t err = {0};
  stop_server();
  if (store) {
    for (int k = 0; k < FZIP_KIND_COUNT; k++) {
      store_entity_delete_all(NULL, store, user_a, (fzip_kind_t)k, &err);
      store_entity_delete_all(NULL, store, user_b, (fzip_kind_t)k, &err);
    }
    char blob[256];
    snprintf(blob, sizeof blob, "%s/file-b", user_b);
    store_blob_delete(store, STORE_BUCKET_FILES, blob, &err);
  }
  store_destroy(store);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmpdir);
}

int main(int argc, char **argv) {
  fzip_error_t err = {0};
  if (argc < 3 || (strcmp(argv[2], "mongo") == 0 && argc < 4)) {
    fprintf(stderr, "usage: %s SERVER_BINARY sqlite|mongo [MONGODB_URI]\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  if (!set_up(argv[1], argv[2], argc > 3 ? argv[3] : NULL, &err)) {
    fprintf(stderr, "set-up failed: [%s] %s\n", fzip_code_name((fzip_code_t)err.code), err.message);
    tear_down();
    fzip_test_failed_count++;
    return fzip_test_summary();
  }
  RUN(test_summary_counts_every_kind_and_file_bytes);
  RUN(test_transaction_pages_return_every_id_once_in_order);
  RUN(test_transactions_filter_by_account_and_date);
  RUN(test_files_filter_by_account_and_other_lists_convert);
  RUN(test_page_size_out_of_range_is_invalid_argument);
  RUN(test_foreign_and_garbage_tokens_are_invalid_argument);
  RUN(test_user_b_sees_none_of_user_a_data);
  RUN(test_every_method_refuses_a_missing_or_bad_token);
  RUN(test_delete_all_requires_the_exact_confirmation);
  RUN(test_delete_all_removes_entities_and_blobs_of_the_caller_only);
  tear_down();
  return fzip_test_summary();
}
