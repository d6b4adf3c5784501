/*
 * Tests of entity_conv: every field of every entity kind survives
 * document -> message -> protobuf wire -> message -> document, enum strings
 * map through the descriptors, and outside data that does not fit (wrong
 * types, unknown enum strings, exhausted memory) is skipped or reported,
 * never a crash.
 */
#include <bson/bson.h>
#include <stdlib.h>
#include <string.h>

#include "entity_conv.h"
#include "fzip/v1/entities.pb-c.h"
#include "fzip_test.h"
#include "fzip_test_bson.h"

/* ---- helpers ------------------------------------------------------------ */

static bson_t *doc_from_json(const char *json) {
  bson_error_t berr;
  bson_t *doc = bson_new_from_json((const uint8_t *)json, -1, &berr);
  if (!doc)
    fprintf(stderr, "  bad test JSON: %s\n", berr.message);
  return doc;
}

/* doc -> message -> wire -> message -> doc; true if the final document
 * equals the first.  *msg_out (may be NULL) receives the first message,
 * which the caller frees with protobuf_c_message_free_unpacked. */
static bool round_trips(ProtobufCMessage **msg_out, fzip_kind_t kind, const char *json) {
  fzip_error_t err = {0};
  bson_t *doc = doc_from_json(json);
  bson_t back = BSON_INITIALIZER;
  ProtobufCMessage *msg = NULL, *unpacked = NULL;
  uint8_t *wire = NULL;
  size_t len;
  bool ok = false;
  if (!doc)
    goto done;
  if (!conv_entity_to_message(&msg, NULL, kind, doc, &err)) {
    fprintf(stderr, "  to message: %s\n", err.message);
    goto done;
  }
  if (!protobuf_c_message_check(msg))
    goto done;
  len = protobuf_c_message_get_packed_size(msg);
  wire = malloc(len ? len : 1);
  protobuf_c_message_pack(msg, wire);
  unpacked = protobuf_c_message_unpack(conv_kind_descriptor(kind), NULL, len, wire);
  if (!unpacked)
    goto done;
  if (!conv_message_to_doc(&back, unpacked, &err)) {
    fprintf(stderr, "  to document: %s\n", err.message);
    goto done;
  }
  ok = fzip_test_same_doc(doc, &back);
  if (!ok) {
    char *a = bson_as_canonical_extended_json(doc, NULL);
    char *b = bson_as_canonical_extended_json(&back, NULL);
    fprintf(stderr, "  in:  %s\n  out: %s\n", a, b);
    bson_free(a);
    bson_free(b);
  }
done:
  if (msg_out && ok) {
    *msg_out = msg;
    msg = NULL;
  }
  if (msg)
    protobuf_c_message_free_unpacked(msg, NULL);
  if (unpacked)
    protobuf_c_message_free_unpacked(unpacked, NULL);
  free(wire);
  bson_destroy(&back);
  bson_destroy(doc);
  return ok;
}

#define L(n) "{\"$numberLong\": \"" #n "\"}"

/* ---- round trips of every field of every kind --------------------------- */

static void test_account_round_trips_every_field(void) {
  ProtobufCMessage *m = NULL;
  Fzip__V1__Account *a;
  CHECK(round_trips(&m, FZIP_KIND_ACCOUNT,
                    "{\"accountId\": \"a1\", \"accountName\": \"Main\","
                    " \"accountType\": \"credit_card\", \"institution\": \"Bank\","
                    " \"balance\": \"-1234.56\", \"currency\": \"EUR\", \"notes\": \"n\","
                    " \"isActive\": false, \"defaultFileMapId\": \"fm1\","
                    " \"firstTransactionDate\": " L(1700000000001) ","
                    " \"lastTransactionDate\": " L(1700000000002) ","
                    " \"importsStartDate\": " L(1700000000003) ","
                    " \"importsEndDate\": " L(1700000000004) ","
                    " \"createdAt\": " L(1600000000000) ", \"updatedAt\": " L(1600000000009) "}"));
  a = (Fzip__V1__Account *)m;
  CHECK(a->account_type == FZIP__V1__ACCOUNT_TYPE__ACCOUNT_TYPE_CREDIT_CARD);
  CHECK(strcmp(a->balance, "-1234.56") == 0);
  CHECK(a->imports_end_date == 1700000000004LL);
  CHECK(!a->is_active);
  protobuf_c_message_free_unpacked(m, NULL);
}

static void test_transaction_round_trips_with_category_assignments(void) {
  ProtobufCMessage *m = NULL;
  Fzip__V1__Transaction *t;
  CHECK(round_trips(
      &m, FZIP_KIND_TRANSACTION,
      "{\"transactionId\": \"t1\", \"accountId\": \"a1\", \"fileId\": \"f1\","
      " \"date\": " L(1700000000000) ", \"description\": \"Coffee\", \"amount\": \"-3.50\","
      " \"currency\": \"USD\", \"balance\": \"100.00\", \"importOrder\": " L(7) ","
      " \"transactionType\": \"DEBIT\", \"memo\": \"m\", \"checkNumber\": \"101\","
      " \"fitId\": \"fit-9\", \"status\": \"posted\", \"statusDate\": \"posted#1700000000000\","
      " \"transactionHash\": " L(1234567890123456) ","
      " \"categories\": [{\"categoryId\": \"c1\", \"status\": \"confirmed\", \"confidence\": 87.5,"
      "   \"isManual\": true, \"assignedAt\": " L(1700000000100) ","
      "   \"confirmedAt\": " L(1700000000200) ", \"ruleId\": \"rule_0a1b2c3d\"},"
      "  {\"categoryId\": \"c2\", \"status\": \"suggested\", \"confidence\": 10.0,"
      "   \"isManual\": false, \"assignedAt\": " L(1700000000300) "}],"
      " \"primaryCategoryId\": \"c1\", \"createdAt\": " L(1) ", \"updatedAt\": " L(2) "}"));
  t = (Fzip__V1__Transaction *)m;
  CHECK(t->n_categories == 2);
  CHECK(t->categories[0]->status == FZIP__V1__ASSIGNMENT_STATUS__ASSIGNMENT_STATUS_CONFIRMED);
  CHECK(t->categories[0]->confidence == 87.5);
  CHECK(t->categories[1]->status == FZIP__V1__ASSIGNMENT_STATUS__ASSIGNMENT_STATUS_SUGGESTED);
  CHECK(strcmp(t->categories[0]->rule_id, "rule_0a1b2c3d") == 0);
  CHECK(t->transaction_hash == 1234567890123456LL);
  protobuf_c_message_free_unpacked(m, NULL);
}

static void test_category_round_trips_with_rules_and_upper_case_type(void) {
  ProtobufCMessage *m = NULL;
  Fzip__V1__Category *c;
  CHECK(round_trips(
      &m, FZIP_KIND_CATEGORY,
      "{\"categoryId\": \"c1\", \"name\": \"Salary\", \"type\": \"INCOME\","
      " \"parentCategoryId\": \"c0\", \"icon\": \"money\", \"color\": \"#00ff00\","
      " \"inheritParentRules\": true, \"ruleInheritanceMode\": \"override\","
      " \"rules\": [{\"ruleId\": \"rule_deadbeef\", \"fieldToMatch\": \"amount\","
      "   \"condition\": \"amount_between\", \"value\": \"x\", \"caseSensitive\": true,"
      "   \"priority\": 50, \"enabled\": false, \"confidence\": 90, \"amountMin\": \"10.00\","
      "   \"amountMax\": \"20.00\", \"allowMultipleMatches\": false, \"autoSuggest\": true},"
      "  {\"ruleId\": \"rule_00000001\", \"fieldToMatch\": \"payee\", \"condition\": \"regex\","
      "   \"value\": \"^ACME\", \"caseSensitive\": false, \"enabled\": true,"
      "   \"allowMultipleMatches\": true, \"autoSuggest\": false}],"
      " \"createdAt\": " L(5) ", \"updatedAt\": " L(6) "}"));
  c = (Fzip__V1__Category *)m;
  CHECK(c->type == FZIP__V1__CATEGORY_TYPE__CATEGORY_TYPE_INCOME);
  CHECK(c->rule_inheritance_mode ==
        FZIP__V1__RULE_INHERITANCE_MODE__RULE_INHERITANCE_MODE_OVERRIDE);
  CHECK(c->n_rules == 2);
  CHECK(c->rules[0]->condition == FZIP__V1__MATCH_CONDITION__MATCH_CONDITION_AMOUNT_BETWEEN);
  CHECK(c->rules[0]->field_to_match == FZIP__V1__MATCH_FIELD__MATCH_FIELD_AMOUNT);
  CHECK(c->rules[0]->priority == 50 && c->rules[0]->confidence == 90);
  protobuf_c_message_free_unpacked(m, NULL);
}

static void test_file_map_round_trips_with_mappings(void) {
  ProtobufCMessage *m = NULL;
  CHECK(round_trips(&m, FZIP_KIND_FILE_MAP,
                    "{\"fileMapId\": \"fm1\", \"name\": \"Chase CSV\","
                    " \"mappings\": [{\"sourceField\": \"Posting Date\", \"targetField\": \"date\","
                    "   \"transformation\": \"MM/DD/YYYY\"},"
                    "  {\"sourceField\": \"Amount\", \"targetField\": \"amount\"}],"
                    " \"accountId\": \"a1\", \"description\": \"d\", \"reverseAmounts\": true,"
                    " \"createdAt\": " L(11) ", \"updatedAt\": " L(12) "}"));
  CHECK(((Fzip__V1__FileMap *)m)->n_mappings == 2);
  CHECK(strcmp(((Fzip__V1__FileMap *)m)->mappings[1]->transformation, "") == 0);
  protobuf_c_message_free_unpacked(m, NULL);
}

static void test_transaction_file_round_trips_with_date_range(void) {
  ProtobufCMessage *m = NULL;
  Fzip__V1__TransactionFile *f;
  CHECK(round_trips(
      &m, FZIP_KIND_TRANSACTION_FILE,
      "{\"fileId\": \"f1\", \"fileName\": \"jan.csv\", \"uploadDate\": " L(100) ","
      " \"fileSize\": " L(4096) ", \"s3Key\": \"u1/f1\", \"processingStatus\": \"needs_mapping\","
      " \"processedDate\": " L(101) ", \"fileFormat\": \"csv\", \"accountId\": \"a1\","
      " \"fileMapId\": \"fm1\", \"recordCount\": " L(42) ","
      " \"dateRange\": {\"startDate\": " L(1000) ", \"endDate\": " L(2000) "},"
      " \"errorMessage\": \"e\", \"openingBalance\": \"1.00\", \"closingBalance\": \"2.00\","
      " \"currency\": \"JPY\", \"duplicateCount\": " L(3) ", \"transactionCount\": " L(39) ","
      " \"createdAt\": " L(102) ", \"updatedAt\": " L(103) ","
      " \"sha256\": \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}"));
  f = (Fzip__V1__TransactionFile *)m;
  CHECK(f->processing_status == FZIP__V1__PROCESSING_STATUS__PROCESSING_STATUS_NEEDS_MAPPING);
  CHECK(f->date_range && f->date_range->start_date == 1000 && f->date_range->end_date == 2000);
  CHECK(strcmp(f->s3_key, "u1/f1") == 0);
  CHECK(f->file_size == 4096);
  protobuf_c_message_free_unpacked(m, NULL);
}

static void test_analytics_round_trips_data_object_as_json(void) {
  ProtobufCMessage *m = NULL;
  Fzip__V1__AnalyticsRecord *r;
  bson_t *data = NULL;
  bson_error_t berr;
  bson_iter_t it;
  CHECK(round_trips(&m, FZIP_KIND_ANALYTICS,
                    "{\"analyticsId\": \"cash_flow#2024-01#a1\", \"analyticType\": \"cash_flow\","
                    " \"timePeriod\": \"2024-01\", \"accountId\": \"a1\","
                    " \"data\": {\"income\": \"100.00\", \"n\": 3, \"ratio\": 0.25,"
                    "   \"big\": " L(9007199254740993) ", \"nested\": {\"ok\": true, \"l\": [1, 2]}},"
                    " \"computedDate\": " L(55) ", \"dataThroughDate\": " L(54) "}"));
  r = (Fzip__V1__AnalyticsRecord *)m;
  CHECK(r->analytic_type == FZIP__V1__ANALYTIC_TYPE__ANALYTIC_TYPE_CASH_FLOW);
  data = bson_new_from_json((const uint8_t *)r->data_json, -1, &berr);
  CHECK(data != NULL);
  CHECK(bson_iter_init_find(&it, data, "income") && strcmp(bson_iter_utf8(&it, NULL), "100.00") == 0);
  bson_destroy(data);
  protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- forgiving forward direction --------------------------------------- */

static void test_enum_strings_match_case_insensitively(void) {
  const ProtobufCEnumDescriptor *d = &fzip__v1__account_type__descriptor;
  char buf[32];
  CHECK(conv_enum_from_string(d, "Credit_Card") == FZIP__V1__ACCOUNT_TYPE__ACCOUNT_TYPE_CREDIT_CARD);
  CHECK(conv_enum_from_string(d, "SAVINGS") == FZIP__V1__ACCOUNT_TYPE__ACCOUNT_TYPE_SAVINGS);
  CHECK(conv_enum_from_string(&fzip__v1__category_type__descriptor, "expense") ==
        FZIP__V1__CATEGORY_TYPE__CATEGORY_TYPE_EXPENSE);
  CHECK(conv_enum_to_string(buf, sizeof buf, d, FZIP__V1__ACCOUNT_TYPE__ACCOUNT_TYPE_CREDIT_CARD));
  CHECK(strcmp(buf, "credit_card") == 0);
  CHECK(conv_enum_to_string(buf, sizeof buf, &fzip__v1__category_type__descriptor,
                            FZIP__V1__CATEGORY_TYPE__CATEGORY_TYPE_TRANSFER));
  CHECK(strcmp(buf, "TRANSFER") == 0);
  CHECK(!conv_enum_to_string(buf, sizeof buf, d, 0));
  CHECK(!conv_enum_to_string(buf, sizeof buf, d, 99));
  CHECK(!conv_enum_to_string(buf, 4, d, FZIP__V1__ACCOUNT_TYPE__ACCOUNT_TYPE_CREDIT_CARD));
}

static void test_unknown_enum_strings_become_unspecified(void) {
  fzip_error_t err = {0};
  ProtobufCMessage *m = NULL;
  bson_t *doc = doc_from_json("{\"accountId\": \"a1\", \"accountType\": \"crypto_wallet\"}");
  bson_t back = BSON_INITIALIZER;
  CHECK(doc);
  CHECK(conv_doc_to_message(&m, NULL, &fzip__v1__account__descriptor, doc, &err));
  CHECK(((Fzip__V1__Account *)m)->account_type == FZIP__V1__ACCOUNT_TYPE__ACCOUNT_TYPE_UNSPECIFIED);
  CHECK(conv_enum_from_string(&fzip__v1__account_type__descriptor, "unspecified_x") == 0);
  CHECK(conv_message_to_doc(&back, m, &err));
  CHECK(!bson_has_field(&back, "accountType"));
  protobuf_c_message_free_unpacked(m, NULL);
  bson_destroy(&back);
  bson_destroy(doc);
}

static void test_wrong_typed_fields_are_skipped(void) {
  fzip_error_t err = {0};
  ProtobufCMessage *m = NULL;
  Fzip__V1__Transaction *t;
  bson_t *doc = doc_from_json(
      "{\"transactionId\": \"t1\", \"accountId\": 17, \"date\": \"yesterday\","
      " \"amount\": {\"v\": 1}, \"importOrder\": 1.5, \"transactionHash\": true,"
      " \"categories\": [\"c1\", 5, {\"categoryId\": \"c2\", \"isManual\": \"yes\"}],"
      " \"description\": [\"a\"], \"createdAt\": 1e300, \"updatedAt\": null,"
      " \"primaryCategoryId\": \"c2\", \"userId\": \"someone\"}");
  CHECK(doc);
  CHECK(conv_entity_to_message(&m, NULL, FZIP_KIND_TRANSACTION, doc, &err));
  t = (Fzip__V1__Transaction *)m;
  CHECK(strcmp(t->transaction_id, "t1") == 0);
  CHECK(strcmp(t->account_id, "") == 0);
  CHECK(t->date == 0 && t->import_order == 0 && t->transaction_hash == 0 && t->created_at == 0);
  CHECK(strcmp(t->amount, "") == 0 && strcmp(t->description, "") == 0);
  CHECK(t->n_categories == 1 && strcmp(t->categories[0]->category_id, "c2") == 0);
  CHECK(!t->categories[0]->is_manual);
  CHECK(strcmp(t->primary_category_id, "c2") == 0);
  CHECK(protobuf_c_message_check(m));
  protobuf_c_message_free_unpacked(m, NULL);
  bson_destroy(doc);
}

static void test_other_numeric_encodings_are_accepted(void) {
  fzip_error_t err = {0};
  ProtobufCMessage *m = NULL;
  Fzip__V1__Account *a;
  bson_t doc = BSON_INITIALIZER;
  bson_decimal128_t dec;
  CHECK(bson_decimal128_from_string("1234.50", &dec));
  BSON_APPEND_UTF8(&doc, "accountId", "a1");
  BSON_APPEND_DECIMAL128(&doc, "balance", &dec);
  BSON_APPEND_INT32(&doc, "createdAt", 123);
  BSON_APPEND_DOUBLE(&doc, "updatedAt", 1700000000000.0);
  CHECK(conv_entity_to_message(&m, NULL, FZIP_KIND_ACCOUNT, &doc, &err));
  a = (Fzip__V1__Account *)m;
  CHECK(strcmp(a->balance, "1234.50") == 0);
  CHECK(a->created_at == 123 && a->updated_at == 1700000000000LL);
  protobuf_c_message_free_unpacked(m, NULL);
  bson_destroy(&doc);
}

/* ---- reverse direction -------------------------------------------------- */

static void test_absent_fields_are_omitted_and_bools_kept(void) {
  fzip_error_t err = {0};
  Fzip__V1__Account a = FZIP__V1__ACCOUNT__INIT;
  bson_t doc = BSON_INITIALIZER;
  bson_iter_t it;
  a.account_id = "a1";
  CHECK(conv_message_to_doc(&doc, &a.base, &err));
  CHECK(bson_count_keys(&doc) == 2);
  CHECK(bson_iter_init_find(&it, &doc, "isActive") && !bson_iter_bool(&it));
  bson_destroy(&doc);
}

static void test_analytics_data_json_must_be_an_object(void) {
  fzip_error_t err = {0};
  Fzip__V1__AnalyticsRecord r = FZIP__V1__ANALYTICS_RECORD__INIT;
  bson_t doc = BSON_INITIALIZER;
  r.analytics_id = "x";
  r.data_json = "[1, 2]";
  CHECK_FAILS(conv_message_to_doc(&doc, &r.base, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  bson_reinit(&doc);
  r.data_json = "{\"a\": ";
  CHECK_FAILS(conv_message_to_doc(&doc, &r.base, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  bson_destroy(&doc);
}

/* ---- bounds and memory -------------------------------------------------- */

typedef struct {
  int left; /* allocations granted before failing */
  int live; /* outstanding allocations */
} budget_t;

static void *budget_alloc(void *data, size_t size) {
  budget_t *b = data;
  void *p;
  if (b->left-- <= 0)
    return NULL;
  p = malloc(size);
  b->live += p != NULL;
  return p;
}

static void budget_free(void *data, void *p) {
  budget_t *b = data;
  b->live -= p != NULL;
  free(p);
}

static void test_allocation_failure_reports_exhausted_and_frees_everything(void) {
  fzip_error_t err = {0};
  bson_t *doc = doc_from_json(
      "{\"categoryId\": \"c1\", \"name\": \"n\", \"rules\": [{\"ruleId\": \"r1\","
      " \"value\": \"v\"}, {\"ruleId\": \"r2\", \"value\": \"w\"}], \"icon\": \"i\"}");
  CHECK(doc);
  /* Fail at every allocation point in turn; none may leak or crash. */
  for (int n = 0; n < 12; n++) {
    budget_t b = {n, 0};
    ProtobufCAllocator alloc = {budget_alloc, budget_free, &b};
    ProtobufCMessage *m = NULL;
    bool ok = conv_doc_to_message(&m, &alloc, &fzip__v1__category__descriptor, doc, &err);
    if (ok) {
      protobuf_c_message_free_unpacked(m, &alloc);
    } else {
      CHECK(m == NULL);
      CHECK(err.code == FZIP_ERR_RESOURCE_EXHAUSTED);
    }
    CHECK(b.live == 0);
  }
  bson_destroy(doc);
}

static void test_too_many_repeated_elements_are_rejected(void) {
  fzip_error_t err = {0};
  bson_t doc = BSON_INITIALIZER, arr;
  ProtobufCMessage *m = NULL;
  BSON_APPEND_UTF8(&doc, "categoryId", "c1");
  BSON_APPEND_ARRAY_BEGIN(&doc, "rules", &arr);
  for (int i = 0; i <= CONV_REPEATED_MAX; i++) {
    char key[16];
    const char *k;
    bson_t rule;
    bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
    bson_append_document_begin(&arr, k, -1, &rule);
    bson_append_document_end(&arr, &rule);
  }
  bson_append_array_end(&doc, &arr);
  CHECK_FAILS(conv_entity_to_message(&m, NULL, FZIP_KIND_CATEGORY, &doc, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  CHECK(m == NULL);
  bson_destroy(&doc);
}

int main(void) {
  RUN(test_account_round_trips_every_field);
  RUN(test_transaction_round_trips_with_category_assignments);
  RUN(test_category_round_trips_with_rules_and_upper_case_type);
  RUN(test_file_map_round_trips_with_mappings);
  RUN(test_transaction_file_round_trips_with_date_range);
  RUN(test_analytics_round_trips_data_object_as_json);
  RUN(test_enum_strings_match_case_insensitively);
  RUN(test_unknown_enum_strings_become_unspecified);
  RUN(test_wrong_typed_fields_are_skipped);
  RUN(test_other_numeric_encodings_are_accepted);
  RUN(test_absent_fields_are_omitted_and_bools_kept);
  RUN(test_analytics_data_json_must_be_an_object);
  RUN(test_allocation_failure_reports_exhausted_and_frees_everything);
  RUN(test_too_many_repeated_elements_are_rejected);
  return fzip_test_summary();
}
