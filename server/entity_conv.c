/*
 * entity_conv: see entity_conv.h.
 *
 * One generic walk over a ProtobufCMessageDescriptor in each direction.
 * Forward (document -> message) every field is looked up in the document
 * by its camelCase name and set by type; a field that cannot be set is
 * skipped, never fatal, because documents are outside data.  Messages are
 * kept consistent at every step (strings start as protobuf_c_empty_string,
 * repeated counts grow with each element stored), so a conversion that
 * fails half-way can be released with protobuf_c_message_free_unpacked.
 */
#include "entity_conv.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fzip/v1/entities.pb-c.h"
#include "fzip_log.h"

/* ---- the exceptions to the generic rules, as data -------------------- */

typedef enum { FIELD_PLAIN = 0, FIELD_JSON_OBJECT } field_form_t;

typedef struct {
  const ProtobufCMessageDescriptor *message;
  const char *field;    /* protobuf field name */
  const char *doc_name; /* document field name */
  field_form_t form;
} field_override_t;

static const field_override_t field_overrides[] = {
    /* The package keeps analytics data as a JSON object; the API as text. */
    {&fzip__v1__analytics_record__descriptor, "data_json", "data", FIELD_JSON_OBJECT},
};

/* Enums the app writes upper-case (models/category.py: INCOME, EXPENSE...). */
static const ProtobufCEnumDescriptor *const upper_case_enums[] = {
    &fzip__v1__category_type__descriptor,
};

#define ENUM_UNSPECIFIED_SUFFIX "UNSPECIFIED"
/* Longest JSON text accepted for a JSON-object field: a whole document. */
#define CONV_JSON_MAX (4 * 1024 * 1024)

static const field_override_t *find_override(const ProtobufCMessageDescriptor *desc,
                                             const ProtobufCFieldDescriptor *f) {
  for (size_t i = 0; i < sizeof field_overrides / sizeof field_overrides[0]; i++) {
    if (field_overrides[i].message == desc && strcmp(field_overrides[i].field, f->name) == 0)
      return &field_overrides[i];
  }
  return NULL;
}

static bool enum_is_upper_case(const ProtobufCEnumDescriptor *desc) {
  for (size_t i = 0; i < sizeof upper_case_enums / sizeof upper_case_enums[0]; i++) {
    if (upper_case_enums[i] == desc)
      return true;
  }
  return false;
}

/* snake_case -> camelCase ("first_transaction_date" -> "firstTransactionDate",
 * "s3_key" -> "s3Key"); false if it does not fit. */
static bool camel_name(char *buf, size_t size, const char *snake) {
  size_t n = 0;
  bool upper_next = false;
  for (const char *p = snake; *p; p++) {
    if (*p == '_') {
      upper_next = n > 0;
      continue;
    }
    if (n + 1 >= size)
      return false;
    buf[n++] = upper_next ? (char)toupper((unsigned char)*p) : *p;
    upper_next = false;
  }
  buf[n] = '\0';
  return true;
}

static bool doc_field_name(char *buf, size_t size, const ProtobufCMessageDescriptor *desc,
                           const ProtobufCFieldDescriptor *f, field_form_t *form) {
  const field_override_t *o = find_override(desc, f);
  *form = o ? o->form : FIELD_PLAIN;
  if (o) {
    size_t len = strlen(o->doc_name);
    if (len >= size)
      return false;
    memcpy(buf, o->doc_name, len + 1);
    return true;
  }
  return camel_name(buf, size, f->name);
}

static void log_skip(const ProtobufCMessageDescriptor *desc, const char *field,
                     const char *reason) {
  if (!fzip_log_enabled(FZIP_LOG_DEBUG))
    return;
  fzip_log(FZIP_LOG_DEBUG, "conv", "document field skipped", "message", desc->name, "field",
           field, "reason", reason, NULL);
}

/* ---- enums ------------------------------------------------------------ */

/* Length of the common prefix of the enum's value names, taken from the
 * UNSPECIFIED value ("ACCOUNT_TYPE_UNSPECIFIED" -> 13). */
static size_t enum_prefix_len(const ProtobufCEnumDescriptor *desc) {
  const ProtobufCEnumValue *zero = protobuf_c_enum_descriptor_get_value(desc, 0);
  size_t suffix = strlen(ENUM_UNSPECIFIED_SUFFIX);
  size_t len;
  if (!zero)
    return 0;
  len = strlen(zero->name);
  if (len < suffix || strcmp(zero->name + len - suffix, ENUM_UNSPECIFIED_SUFFIX) != 0)
    return 0;
  return len - suffix;
}

int conv_enum_from_string(const ProtobufCEnumDescriptor *desc, const char *s) {
  size_t prefix = enum_prefix_len(desc);
  if (!s || !*s)
    return 0;
  for (unsigned i = 0; i < desc->n_values; i++) {
    const char *name = desc->values[i].name;
    if (strlen(name) > prefix && strcasecmp(name + prefix, s) == 0)
      return desc->values[i].value;
  }
  return 0;
}

bool conv_enum_to_string(char *buf, size_t buf_size, const ProtobufCEnumDescriptor *desc,
                         int value) {
  const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(desc, value);
  bool upper = enum_is_upper_case(desc);
  const char *s;
  size_t len;
  if (!v || value == 0)
    return false;
  s = v->name + enum_prefix_len(desc);
  len = strlen(s);
  if (len == 0 || len >= buf_size)
    return false;
  for (size_t i = 0; i <= len; i++)
    buf[i] = upper ? (char)toupper((unsigned char)s[i]) : (char)tolower((unsigned char)s[i]);
  return true;
}

/* ---- document -> message ---------------------------------------------- */

static void *system_alloc(void *data, size_t size) { return malloc(size); }
static void system_free(void *data, void *p) { free(p); }
static ProtobufCAllocator system_allocator = {system_alloc, system_free, NULL};

typedef struct {
  ProtobufCAllocator *alloc;
  fzip_error_t *error;
} fwd_t;

static void *fwd_alloc(fwd_t *w, size_t size) {
  void *p = w->alloc->alloc(w->alloc->allocator_data, size);
  if (!p)
    fzip_error_set(w->error, FZIP_DOMAIN_RPC, FZIP_ERR_RESOURCE_EXHAUSTED,
                   "out of memory converting an entity (%zu bytes)", size);
  return p;
}

static char *fwd_strndup(fwd_t *w, const char *s, size_t len) {
  char *copy = fwd_alloc(w, len + 1);
  if (copy) {
    memcpy(copy, s, len);
    copy[len] = '\0';
  }
  return copy;
}

static bool doc_to_message(ProtobufCMessage **out, fwd_t *w,
                           const ProtobufCMessageDescriptor *desc, const bson_t *doc, int depth);

/* Integer value of a numeric BSON element; false if not an exact integer. */
static bool iter_integer(int64_t *out, const bson_iter_t *it) {
  double d;
  switch (bson_iter_type(it)) {
  case BSON_TYPE_INT32:
    *out = bson_iter_int32(it);
    return true;
  case BSON_TYPE_INT64:
    *out = bson_iter_int64(it);
    return true;
  case BSON_TYPE_DOUBLE:
    d = bson_iter_double(it);
    /* 2^63 is exactly representable; anything at or above it is not an int64. */
    if (!isfinite(d) || d != floor(d) || d < -9223372036854775808.0 ||
        d >= 9223372036854775808.0)
      return false;
    *out = (int64_t)d;
    return true;
  default:
    return false;
  }
}

/* A string-valued element (UTF-8, or Decimal128 money) copied into the
 * allocator; *out NULL and true when the element is of another type. */
static bool iter_string_copy(char **out, fwd_t *w, const bson_iter_t *it) {
  *out = NULL;
  if (BSON_ITER_HOLDS_UTF8(it)) {
    uint32_t len = 0;
    const char *s = bson_iter_utf8(it, &len);
    *out = fwd_strndup(w, s, len);
    return *out != NULL;
  }
  if (BSON_ITER_HOLDS_DECIMAL128(it)) {
    bson_decimal128_t dec;
    char text[BSON_DECIMAL128_STRING];
    if (!bson_iter_decimal128(it, &dec))
      return true;
    bson_decimal128_to_string(&dec, text);
    *out = fwd_strndup(w, text, strlen(text));
    return *out != NULL;
  }
  return true;
}

static bool iter_json_object_copy(char **out, fwd_t *w, const bson_iter_t *it) {
  const uint8_t *data = NULL;
  uint32_t len = 0;
  bson_t sub;
  char *json = NULL;
  size_t json_len = 0;
  *out = NULL;
  if (!BSON_ITER_HOLDS_DOCUMENT(it))
    return true;
  bson_iter_document(it, &len, &data);
  if (!bson_init_static(&sub, data, len))
    return true;
  json = bson_as_relaxed_extended_json(&sub, &json_len);
  if (!json)
    return true; /* not representable (invalid UTF-8): skip like a wrong type */
  *out = fwd_strndup(w, json, json_len);
  bson_free(json);
  return *out != NULL;
}

static bool iter_subdoc(bson_t *sub, const bson_iter_t *it) {
  const uint8_t *data = NULL;
  uint32_t len = 0;
  if (BSON_ITER_HOLDS_DOCUMENT(it))
    bson_iter_document(it, &len, &data);
  else if (BSON_ITER_HOLDS_ARRAY(it))
    bson_iter_array(it, &len, &data);
  else
    return false;
  return bson_init_static(sub, data, len);
}

/* Sets one non-repeated field at `member` from the element; *skipped says
 * why it could not (wrong type).  False only on a hard failure. */
static bool set_scalar(void *member, bool *skipped, fwd_t *w,
                       const ProtobufCMessageDescriptor *desc, const ProtobufCFieldDescriptor *f,
                       field_form_t form, const bson_iter_t *it, int depth) {
  int64_t n = 0;
  *skipped = false;
  switch (f->type) {
  case PROTOBUF_C_TYPE_STRING: {
    char *s = NULL;
    bool ok = form == FIELD_JSON_OBJECT ? iter_json_object_copy(&s, w, it)
                                         : iter_string_copy(&s, w, it);
    if (!ok)
      return false;
    if (s)
      *(char **)member = s;
    else
      *skipped = true;
    return true;
  }
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    if (iter_integer(&n, it))
      *(int64_t *)member = n;
    else
      *skipped = true;
    return true;
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    if (iter_integer(&n, it) && n >= INT32_MIN && n <= INT32_MAX)
      *(int32_t *)member = (int32_t)n;
    else
      *skipped = true;
    return true;
  case PROTOBUF_C_TYPE_BOOL:
    if (BSON_ITER_HOLDS_BOOL(it))
      *(protobuf_c_boolean *)member = bson_iter_bool(it);
    else
      *skipped = true;
    return true;
  case PROTOBUF_C_TYPE_DOUBLE:
    if (BSON_ITER_HOLDS_NUMBER(it))
      *(double *)member = bson_iter_as_double(it);
    else
      *skipped = true;
    return true;
  case PROTOBUF_C_TYPE_ENUM:
    if (BSON_ITER_HOLDS_UTF8(it)) {
      const char *s = bson_iter_utf8(it, NULL);
      int v = conv_enum_from_string(f->descriptor, s);
      if (v == 0)
        log_skip(desc, f->name, "unknown enum value, using UNSPECIFIED");
      *(int *)member = v;
    } else {
      *skipped = true;
    }
    return true;
  case PROTOBUF_C_TYPE_MESSAGE: {
    bson_t sub;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !iter_subdoc(&sub, it)) {
      *skipped = true;
      return true;
    }
    return doc_to_message((ProtobufCMessage **)member, w, f->descriptor, &sub, depth + 1);
  }
  default:
    /* No fzip.v1 entity uses the other types; say so instead of guessing. */
    *skipped = true;
    return true;
  }
}

/* Repeated fields: arrays of sub-documents (messages) or strings. */
static bool set_repeated(ProtobufCMessage *msg, fwd_t *w, const ProtobufCMessageDescriptor *desc,
                         const ProtobufCFieldDescriptor *f, const bson_iter_t *it, int depth) {
  size_t *count = (size_t *)((char *)msg + f->quantifier_offset);
  void **array_slot = (void **)((char *)msg + f->offset);
  bson_t arr;
  bson_iter_t el;
  size_t total = 0;
  void **array = NULL;

  if (f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING) {
    log_skip(desc, f->name, "repeated field type not handled");
    return true;
  }
  if (!BSON_ITER_HOLDS_ARRAY(it) || !iter_subdoc(&arr, it) || !bson_iter_init(&el, &arr)) {
    log_skip(desc, f->name, "not an array");
    return true;
  }
  while (bson_iter_next(&el)) {
    if (++total > CONV_REPEATED_MAX)
      return fzip_error_set(w->error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                            "%s.%s has more than %d elements", desc->name, f->name,
                            CONV_REPEATED_MAX);
  }
  if (total == 0)
    return true;
  array = fwd_alloc(w, total * sizeof *array);
  if (!array)
    return false;
  *array_slot = array;
  *count = 0;
  bson_iter_init(&el, &arr);
  while (bson_iter_next(&el)) {
    bool skipped = false;
    bool ok;
    /* Store straight into the next slot and count it as soon as it holds
     * something, so a failure half-way still leaves a freeable message. */
    void **slot = &array[*count];
    *slot = NULL;
    if (f->type == PROTOBUF_C_TYPE_STRING)
      ok = iter_string_copy((char **)slot, w, &el);
    else
      ok = set_scalar(slot, &skipped, w, desc, f, FIELD_PLAIN, &el, depth);
    if (*slot)
      (*count)++;
    if (!ok)
      return false;
    if (!*slot)
      log_skip(desc, f->name, "array element of the wrong type");
  }
  return true;
}

static bool doc_to_message(ProtobufCMessage **out, fwd_t *w,
                           const ProtobufCMessageDescriptor *desc, const bson_t *doc, int depth) {
  ProtobufCMessage *msg = NULL;
  if (depth > CONV_DEPTH_MAX)
    return fzip_error_set(w->error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                          "%s nested deeper than %d levels", desc->name, CONV_DEPTH_MAX);
  msg = fwd_alloc(w, desc->sizeof_message);
  if (!msg)
    return false;
  protobuf_c_message_init(desc, msg);
  /* Attach before filling so a failure below leaves a freeable tree. */
  *out = msg;
  for (unsigned i = 0; i < desc->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &desc->fields[i];
    char name[CONV_NAME_MAX];
    field_form_t form;
    bson_iter_t it;
    bool skipped = false;
    if (!doc_field_name(name, sizeof name, desc, f, &form) || !bson_iter_init_find(&it, doc, name))
      continue;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      if (!set_repeated(msg, w, desc, f, &it, depth))
        return false;
      continue;
    }
    if (!set_scalar((char *)msg + f->offset, &skipped, w, desc, f, form, &it, depth))
      return false;
    if (skipped)
      log_skip(desc, name, "wrong BSON type");
  }
  return true;
}

bool conv_doc_to_message(ProtobufCMessage **out, ProtobufCAllocator *allocator,
                         const ProtobufCMessageDescriptor *desc, const bson_t *doc,
                         fzip_error_t *error) {
  fwd_t w = {allocator ? allocator : &system_allocator, error};
  ProtobufCMessage *msg = NULL;
  *out = NULL;
  if (!doc_to_message(&msg, &w, desc, doc, 0)) {
    if (msg)
      protobuf_c_message_free_unpacked(msg, allocator);
    return false;
  }
  *out = msg;
  return true;
}

const ProtobufCMessageDescriptor *conv_kind_descriptor(fzip_kind_t kind) {
  switch (kind) {
  case FZIP_KIND_ACCOUNT:
    return &fzip__v1__account__descriptor;
  case FZIP_KIND_CATEGORY:
    return &fzip__v1__category__descriptor;
  case FZIP_KIND_FILE_MAP:
    return &fzip__v1__file_map__descriptor;
  case FZIP_KIND_TRANSACTION_FILE:
    return &fzip__v1__transaction_file__descriptor;
  case FZIP_KIND_TRANSACTION:
    return &fzip__v1__transaction__descriptor;
  case FZIP_KIND_ANALYTICS:
    return &fzip__v1__analytics_record__descriptor;
  default:
    return NULL;
  }
}

bool conv_entity_to_message(ProtobufCMessage **out, ProtobufCAllocator *allocator,
                            fzip_kind_t kind, const bson_t *doc, fzip_error_t *error) {
  const ProtobufCMessageDescriptor *desc = conv_kind_descriptor(kind);
  if (!desc)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL, "unknown entity kind %d",
                          (int)kind);
  return conv_doc_to_message(out, allocator, desc, doc, error);
}

/* ---- message -> document ---------------------------------------------- */

static bool message_to_doc(bson_t *out, const ProtobufCMessage *msg, int depth,
                           fzip_error_t *error);

static bool append_json_object(bson_t *out, const char *name, const char *json,
                               const ProtobufCMessageDescriptor *desc, fzip_error_t *error) {
  bson_t parsed = BSON_INITIALIZER;
  bson_error_t berr;
  const char *p = json;
  size_t len = strlen(json);
  bool ok = false;
  while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
    p++;
  if (*p != '{' || len > CONV_JSON_MAX) {
    fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                   "%s.%s must be a JSON object of at most %d bytes", desc->name, name,
                   CONV_JSON_MAX);
    goto done;
  }
  bson_destroy(&parsed);
  if (!bson_init_from_json(&parsed, json, (ssize_t)len, &berr)) {
    bson_init(&parsed);
    fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT, "%s.%s: %s", desc->name,
                   name, berr.message);
    goto done;
  }
  ok = bson_append_document(out, name, -1, &parsed);
  if (!ok)
    fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_RESOURCE_EXHAUSTED,
                   "%s.%s does not fit in a document", desc->name, name);
done:
  bson_destroy(&parsed);
  return ok;
}

static bool append_submessage(bson_t *out, const char *name, const ProtobufCMessage *sub,
                              int depth, fzip_error_t *error) {
  bson_t child;
  bool ok;
  if (!bson_append_document_begin(out, name, -1, &child))
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "document too large at %s", name);
  ok = message_to_doc(&child, sub, depth + 1, error);
  bson_append_document_end(out, &child);
  return ok;
}

static bool append_repeated(bson_t *out, const char *name, const ProtobufCMessage *msg,
                            const ProtobufCFieldDescriptor *f, int depth, fzip_error_t *error) {
  size_t n = *(const size_t *)((const char *)msg + f->quantifier_offset);
  void *const *array = *(void *const *const *)((const char *)msg + f->offset);
  bson_t child;
  bool ok = true;
  if (f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING)
    return true; /* as in the forward direction: only what entities use */
  bson_append_array_begin(out, name, -1, &child);
  for (size_t i = 0; ok && i < n; i++) {
    char key[16];
    const char *k = NULL;
    bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
    if (f->type == PROTOBUF_C_TYPE_STRING)
      ok = bson_append_utf8(&child, k, -1, array[i], -1);
    else
      ok = append_submessage(&child, k, array[i], depth, error);
  }
  bson_append_array_end(out, &child);
  return ok;
}

static bool append_field(bson_t *out, const char *name, field_form_t form,
                         const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                         int depth, fzip_error_t *error) {
  const void *member = (const char *)msg + f->offset;
  char text[CONV_NAME_MAX];
  switch (f->type) {
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)member;
    if (!s || !*s)
      return true;
    if (form == FIELD_JSON_OBJECT)
      return append_json_object(out, name, s, msg->descriptor, error);
    return bson_append_utf8(out, name, -1, s, -1);
  }
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    return *(const int64_t *)member == 0 || bson_append_int64(out, name, -1, *(const int64_t *)member);
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    return *(const int32_t *)member == 0 || bson_append_int32(out, name, -1, *(const int32_t *)member);
  case PROTOBUF_C_TYPE_BOOL:
    return bson_append_bool(out, name, -1, *(const protobuf_c_boolean *)member != 0);
  case PROTOBUF_C_TYPE_DOUBLE:
    return *(const double *)member == 0 || bson_append_double(out, name, -1, *(const double *)member);
  case PROTOBUF_C_TYPE_ENUM:
    if (!conv_enum_to_string(text, sizeof text, f->descriptor, *(const int *)member))
      return true; /* UNSPECIFIED or unknown number: absent */
    return bson_append_utf8(out, name, -1, text, -1);
  case PROTOBUF_C_TYPE_MESSAGE: {
    const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)member;
    return !sub || append_submessage(out, name, sub, depth, error);
  }
  default:
    return true;
  }
}

static bool message_to_doc(bson_t *out, const ProtobufCMessage *msg, int depth,
                           fzip_error_t *error) {
  const ProtobufCMessageDescriptor *desc = msg->descriptor;
  if (depth > CONV_DEPTH_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                          "%s nested deeper than %d levels", desc->name, CONV_DEPTH_MAX);
  for (unsigned i = 0; i < desc->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &desc->fields[i];
    char name[CONV_NAME_MAX];
    field_form_t form;
    bool ok;
    if (!doc_field_name(name, sizeof name, desc, f, &form))
      continue;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
      ok = append_repeated(out, name, msg, f, depth, error);
    else
      ok = append_field(out, name, form, msg, f, depth, error);
    if (!ok) {
      if (!fzip_error_is_set(error))
        fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_RESOURCE_EXHAUSTED,
                       "%s.%s does not fit in a document", desc->name, f->name);
      return false;
    }
  }
  return true;
}

bool conv_message_to_doc(bson_t *out, const ProtobufCMessage *msg, fzip_error_t *error) {
  return message_to_doc(out, msg, 0, error);
}
