/* job_body: see job_body.h. */
#include "job_body.h"

#include <stdlib.h>
#include <string.h>

#include "fzip/v1/jobs.pb-c.h"
#include "fzip_log.h"
#include "fzip_util.h"
#include "jobs.h"
#include "rpc_details.h"
#include "store.h"

bool job_body_build(bson_t *out, const ProtobufCMessage *job, const char *status_name,
                    int progress, const char *blob_id, bool cancel_requested,
                    fzip_error_t *error) {
  size_t len = protobuf_c_message_get_packed_size(job);
  uint8_t *buf = NULL;

  if (len > JOB_BODY_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "job record of %zu bytes exceeds %d", len, JOB_BODY_MAX);
  buf = malloc(len ? len : 1);
  if (!buf)
    return fzip_error_oom(error, NULL);
  protobuf_c_message_pack(job, buf);
  BSON_APPEND_BINARY(out, "job", BSON_SUBTYPE_BINARY, buf, (uint32_t)len);
  free(buf);
  if (status_name)
    BSON_APPEND_UTF8(out, "status", status_name);
  BSON_APPEND_INT32(out, "progress", progress);
  if (blob_id)
    BSON_APPEND_UTF8(out, STORE_JOB_PACKAGE_BLOB_FIELD, blob_id);
  if (cancel_requested)
    BSON_APPEND_BOOL(out, JOB_CANCEL_FIELD, true);
  return true;
}

bool job_body_unpack(ProtobufCMessage **out, const bson_t *body,
                     const ProtobufCMessageDescriptor *desc, ProtobufCAllocator *allocator,
                     fzip_error_t *error) {
  bson_iter_t it;
  const uint8_t *data = NULL;
  uint32_t len = 0;
  bson_subtype_t sub;

  *out = NULL;
  if (!body || !bson_iter_init_find(&it, body, "job") || !BSON_ITER_HOLDS_BINARY(&it))
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_DATA_LOSS,
                          "job record has no job message");
  bson_iter_binary(&it, &sub, &len, &data);
  *out = protobuf_c_message_unpack(desc, allocator, len, data);
  if (!*out)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_DATA_LOSS,
                          "job record's message does not parse");
  return true;
}

const char *job_body_blob_id(const bson_t *body) {
  bson_iter_t it;
  if (body && bson_iter_init_find(&it, body, STORE_JOB_PACKAGE_BLOB_FIELD) &&
      BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return NULL;
}

const char *job_enum_name(const ProtobufCEnumDescriptor *desc, int value) {
  const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(desc, value);
  return v ? v->name : "UNKNOWN";
}

bool job_msg_set_str(char **field, const char *value) {
  char *copy = strdup(value ? value : "");
  if (!copy)
    return false;
  if (*field && *field != protobuf_c_empty_string)
    free(*field);
  *field = copy;
  return true;
}

static void *field_of(ProtobufCMessage *msg, const char *name,
                      const ProtobufCFieldDescriptor **fd) {
  *fd = protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, name);
  return *fd ? (char *)msg + (*fd)->offset : NULL;
}

bool job_msg_add_event(ProtobufCMessage *job, const char *type, const char *message, size_t max) {
  const ProtobufCFieldDescriptor *fd = NULL;
  Fzip__V1__JobEvent ***events = field_of(job, "events", &fd);
  size_t *n = NULL;
  Fzip__V1__JobEvent *ev = NULL;
  Fzip__V1__JobEvent **grown = NULL;

  if (!events || fd->descriptor != &fzip__v1__job_event__descriptor)
    return false;
  n = (size_t *)((char *)job + fd->quantifier_offset);
  if (*n >= max)
    return true; /* bounded history */
  ev = malloc(sizeof *ev);
  if (!ev)
    return false;
  fzip__v1__job_event__init(ev);
  ev->at = fzip_now_ms();
  if (!job_msg_set_str(&ev->type, type) || !job_msg_set_str(&ev->message, message))
    goto fail;
  grown = realloc(*events, (*n + 1) * sizeof *grown);
  if (!grown)
    goto fail;
  *events = grown;
  grown[(*n)++] = ev;
  return true;
fail:
  fzip__v1__job_event__free_unpacked(ev, NULL);
  return false;
}

const char *job_public_message(char *out, size_t size, const fzip_error_t *err) {
  rpc_details_client_message(out, size, err, fzip_log_request_id());
  return out;
}

bool job_msg_set_error(ProtobufCMessage *job, const fzip_error_t *err, const char *phase) {
  return job_msg_set_error_field(job, "error", err, phase);
}

bool job_msg_set_error_field(ProtobufCMessage *msg, const char *field, const fzip_error_t *err,
                             const char *phase) {
  char message[FZIP_ERROR_MESSAGE_MAX];
  const ProtobufCFieldDescriptor *fd = NULL;
  Fzip__V1__JobError **slot = field_of(msg, field, &fd);

  if (!slot || fd->descriptor != &fzip__v1__job_error__descriptor)
    return false;
  if (!*slot) {
    *slot = malloc(sizeof **slot);
    if (!*slot)
      return false;
    fzip__v1__job_error__init(*slot);
  }
  return job_msg_set_str(&(*slot)->code, fzip_code_name((fzip_code_t)err->code)) &&
         job_msg_set_str(&(*slot)->message, job_public_message(message, sizeof message, err)) &&
         job_msg_set_str(&(*slot)->phase, phase);
}

int job_progress_clamp(int current, int p) {
  if (p > JOB_PROGRESS_RUNNING_MAX)
    p = JOB_PROGRESS_RUNNING_MAX;
  return p < current ? current : p;
}
