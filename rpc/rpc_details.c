/* rpc_details: see rpc_details.h.  The messages are built on the stack
 * with protobuf-c's generated types and packed into malloc'd buffers; the
 * sanitising rule is two small tables, so what a client may read is
 * decided by the error's domain and code, never by looking at its text. */
#include "rpc_details.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/any.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

#define TYPE_URL_PREFIX "type.googleapis.com/"
#define ERROR_INFO_TYPE_URL TYPE_URL_PREFIX "google.rpc.ErrorInfo"
#define BAD_REQUEST_TYPE_URL TYPE_URL_PREFIX "google.rpc.BadRequest"
/* ErrorInfo and BadRequest at most. */
#define DETAILS_MAX 2
/* fzip_domain and request_id. */
#define METADATA_COUNT 2

/* Codes a store error is sent with as it is: answers about the caller's
 * own records (an id not found, a version that changed), worded from ids
 * the caller sent.  Never for sys: its errors are about the server's own
 * files (a package's temp path not found), whatever the code. */
static const fzip_code_t caller_codes[] = {
    FZIP_ERR_NOT_FOUND,        FZIP_ERR_ALREADY_EXISTS, FZIP_ERR_INVALID_ARGUMENT,
    FZIP_ERR_FAILED_PRECONDITION, FZIP_ERR_OUT_OF_RANGE, FZIP_ERR_ABORTED,
};

/* Codes sanitised whatever the domain: a failure of the server, whose
 * message is for its operator.  (DATA_LOSS is not here: outside store and
 * sys it is the caller's upload or package failing its checksum, and the
 * caller needs to hear which.) */
static const fzip_code_t server_codes[] = {
    FZIP_ERR_INTERNAL,
    FZIP_ERR_UNAVAILABLE,
};

static bool code_in(fzip_code_t code, const fzip_code_t *codes, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (codes[i] == code)
      return true;
  }
  return false;
}

bool rpc_details_sanitised(const fzip_error_t *error) {
  fzip_code_t code = (fzip_code_t)error->code;
  if (code == FZIP_OK)
    return false;
  if (code_in(code, server_codes, sizeof server_codes / sizeof server_codes[0]))
    return true;
  if (error->domain == FZIP_DOMAIN_SYS)
    return true;
  if (error->domain == FZIP_DOMAIN_STORE)
    return !code_in(code, caller_codes, sizeof caller_codes / sizeof caller_codes[0]);
  return false;
}

/* What the generic message says happened, by code. */
static const char *generic_what(fzip_code_t code) {
  switch (code) {
  case FZIP_ERR_UNAVAILABLE:
    return "unavailable; retry later";
  case FZIP_ERR_DEADLINE_EXCEEDED:
    return "did not answer in time; retry later";
  case FZIP_ERR_RESOURCE_EXHAUSTED:
    return "full or out of resources";
  case FZIP_ERR_DATA_LOSS:
    return "data failed an integrity check";
  case FZIP_ERR_CANCELLED:
    return "operation cancelled";
  default:
    return "internal error";
  }
}

void rpc_details_client_message(char *out, size_t size, const fzip_error_t *error,
                                const char *request_id) {
  if (!rpc_details_sanitised(error)) {
    snprintf(out, size, "%s", error->message);
    return;
  }
  const char *what = error->domain == FZIP_DOMAIN_STORE ? "storage" : "server";
  if (request_id && *request_id)
    snprintf(out, size, "%s %s (request id %s)", what, generic_what((fzip_code_t)error->code),
             request_id);
  else
    snprintf(out, size, "%s %s", what, generic_what((fzip_code_t)error->code));
}

/* Packs `msg` into a malloc'd Any of `type_url`; false on no memory. */
static bool any_pack(Google__Protobuf__Any *any, const ProtobufCMessage *msg,
                     const char *type_url, fzip_error_t *err) {
  size_t n = protobuf_c_message_get_packed_size(msg);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf)
    return fzip_error_oom(err, "error details");
  protobuf_c_message_pack(msg, buf);
  google__protobuf__any__init(any);
  any->type_url = (char *)type_url;
  any->value.data = buf;
  any->value.len = n;
  return true;
}

static bool pack_error_info(Google__Protobuf__Any *any, const fzip_error_t *error,
                            const char *request_id, fzip_error_t *err) {
  Google__Rpc__ErrorInfo info;
  Google__Rpc__ErrorInfo__MetadataEntry entries[METADATA_COUNT];
  Google__Rpc__ErrorInfo__MetadataEntry *md[METADATA_COUNT];
  const char *keys[METADATA_COUNT] = {RPC_DETAILS_KEY_FZIP_DOMAIN, RPC_DETAILS_KEY_REQUEST_ID};
  const char *values[METADATA_COUNT] = {fzip_domain_name((fzip_domain_t)error->domain),
                                        request_id ? request_id : ""};

  google__rpc__error_info__init(&info);
  info.reason = (char *)fzip_error_reason(error);
  info.domain = RPC_DETAILS_DOMAIN;
  for (size_t i = 0; i < METADATA_COUNT; i++) {
    google__rpc__error_info__metadata_entry__init(&entries[i]);
    entries[i].key = (char *)keys[i];
    entries[i].value = (char *)values[i];
    md[i] = &entries[i];
  }
  info.n_metadata = METADATA_COUNT;
  info.metadata = md;
  return any_pack(any, &info.base, ERROR_INFO_TYPE_URL, err);
}

static bool pack_bad_request(Google__Protobuf__Any *any, const char *message,
                             const rpc_violation_t *violations, size_t n, fzip_error_t *err) {
  Google__Rpc__BadRequest req;
  Google__Rpc__BadRequest__FieldViolation fv[RPC_DETAILS_VIOLATIONS_MAX];
  Google__Rpc__BadRequest__FieldViolation *list[RPC_DETAILS_VIOLATIONS_MAX];
  const rpc_violation_t whole = {.field = "", .description = message};

  if (n == 0) {
    violations = &whole;
    n = 1;
  }
  if (n > RPC_DETAILS_VIOLATIONS_MAX)
    n = RPC_DETAILS_VIOLATIONS_MAX; /* the first ones; the log has the message */
  google__rpc__bad_request__init(&req);
  for (size_t i = 0; i < n; i++) {
    google__rpc__bad_request__field_violation__init(&fv[i]);
    fv[i].field = (char *)(violations[i].field ? violations[i].field : "");
    fv[i].description = (char *)(violations[i].description ? violations[i].description : "");
    list[i] = &fv[i];
  }
  req.n_field_violations = n;
  req.field_violations = list;
  return any_pack(any, &req.base, BAD_REQUEST_TYPE_URL, err);
}

bool rpc_details_pack(uint8_t **out, size_t *out_len, const fzip_error_t *error, int grpc_code,
                      const char *message, const char *request_id,
                      const rpc_violation_t *violations, size_t n_violations,
                      fzip_error_t *err) {
  Google__Rpc__Status status;
  Google__Protobuf__Any anys[DETAILS_MAX];
  Google__Protobuf__Any *details[DETAILS_MAX];
  size_t n_details = 0;
  uint8_t *buf = NULL;
  bool ok = false;

  memset(anys, 0, sizeof anys);
  if (!pack_error_info(&anys[n_details], error, request_id, err))
    goto done;
  details[n_details] = &anys[n_details];
  n_details++;
  if (error->code == FZIP_ERR_INVALID_ARGUMENT) {
    if (!pack_bad_request(&anys[n_details], message, violations, n_violations, err))
      goto done;
    details[n_details] = &anys[n_details];
    n_details++;
  }
  google__rpc__status__init(&status);
  status.code = grpc_code;
  status.message = (char *)(message ? message : "");
  status.n_details = n_details;
  status.details = details;
  *out_len = protobuf_c_message_get_packed_size(&status.base);
  buf = malloc(*out_len ? *out_len : 1);
  if (!buf) {
    fzip_error_oom(err, "error details");
    goto done;
  }
  protobuf_c_message_pack(&status.base, buf);
  *out = buf;
  ok = true;
done:
  for (size_t i = 0; i < DETAILS_MAX; i++)
    free(anys[i].value.data);
  return ok;
}

static void copy_string(char *dst, size_t size, const char *src) {
  snprintf(dst, size, "%s", src ? src : "");
}

static void read_error_info(rpc_details_t *out, const Google__Protobuf__Any *any) {
  Google__Rpc__ErrorInfo *info =
      google__rpc__error_info__unpack(NULL, any->value.len, any->value.data);
  if (!info)
    return;
  copy_string(out->reason, sizeof out->reason, info->reason);
  copy_string(out->domain, sizeof out->domain, info->domain);
  for (size_t i = 0; i < info->n_metadata; i++) {
    const Google__Rpc__ErrorInfo__MetadataEntry *e = info->metadata[i];
    if (strcmp(e->key, RPC_DETAILS_KEY_FZIP_DOMAIN) == 0)
      copy_string(out->fzip_domain, sizeof out->fzip_domain, e->value);
    else if (strcmp(e->key, RPC_DETAILS_KEY_REQUEST_ID) == 0)
      copy_string(out->request_id, sizeof out->request_id, e->value);
  }
  google__rpc__error_info__free_unpacked(info, NULL);
}

static void read_bad_request(rpc_details_t *out, const Google__Protobuf__Any *any) {
  Google__Rpc__BadRequest *req =
      google__rpc__bad_request__unpack(NULL, any->value.len, any->value.data);
  if (!req)
    return;
  out->n_violations = req->n_field_violations;
  if (req->n_field_violations > 0)
    copy_string(out->first_field, sizeof out->first_field, req->field_violations[0]->field);
  google__rpc__bad_request__free_unpacked(req, NULL);
}

bool rpc_details_parse(rpc_details_t *out, const uint8_t *data, size_t len) {
  Google__Rpc__Status *status = google__rpc__status__unpack(NULL, len, data);
  memset(out, 0, sizeof *out);
  if (!status)
    return false;
  out->code = status->code;
  for (size_t i = 0; i < status->n_details; i++) {
    const Google__Protobuf__Any *any = status->details[i];
    if (strcmp(any->type_url, ERROR_INFO_TYPE_URL) == 0)
      read_error_info(out, any);
    else if (strcmp(any->type_url, BAD_REQUEST_TYPE_URL) == 0)
      read_bad_request(out, any);
  }
  google__rpc__status__free_unpacked(status, NULL);
  return true;
}
