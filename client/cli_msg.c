/*
 * cli_msg: see cli_msg.h.  Values are reached through the descriptor's
 * offsets exactly as protobuf-c lays them out: singular fields in place,
 * presence by oneof case, has_ flag or non-NULL pointer, repeated fields as
 * (count at quantifier_offset, array at offset).  JSON goes through the
 * project's pkg_json writer, so strings are escaped one way everywhere.
 */
#include "cli_msg.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pkg_json.h"

#define TEXT_DEPTH_MAX 8 /* nesting shown in text output */

typedef const ProtobufCFieldDescriptor field_t;

static const void *at(const ProtobufCMessage *m, size_t offset) {
  return (const char *)m + offset;
}

static bool present(const ProtobufCMessage *m, field_t *f) {
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
    return *(const uint32_t *)at(m, f->quantifier_offset) == f->id;
  if (f->type == PROTOBUF_C_TYPE_MESSAGE)
    return *(ProtobufCMessage *const *)at(m, f->offset) != NULL;
  if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING)
    return *(const protobuf_c_boolean *)at(m, f->quantifier_offset);
  return true;
}

static size_t elem_size(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    return 8;
  case PROTOBUF_C_TYPE_DOUBLE:
    return sizeof(double);
  case PROTOBUF_C_TYPE_BOOL:
    return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_STRING:
    return sizeof(char *);
  case PROTOBUF_C_TYPE_BYTES:
    return sizeof(ProtobufCBinaryData);
  case PROTOBUF_C_TYPE_MESSAGE:
    return sizeof(ProtobufCMessage *);
  default:
    return 4; /* 32-bit integers, float, enum */
  }
}

/* Integer-like value (ints, enums, bools) at p. */
static int64_t int_at(const void *p, ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_ENUM:
    return *(const int32_t *)p;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    return *(const uint32_t *)p;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64: /* ids and sizes fit in int64 */
  case PROTOBUF_C_TYPE_FIXED64:
    return *(const int64_t *)p;
  case PROTOBUF_C_TYPE_BOOL:
    return *(const protobuf_c_boolean *)p ? 1 : 0;
  default:
    return 0;
  }
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v) {
  const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
  return ev ? ev->name : NULL;
}

/* Length of the type prefix of an enum's value names, taken from its zero
 * value "<PREFIX>UNSPECIFIED" (every fzip enum has one). */
static size_t enum_prefix_len(const ProtobufCEnumDescriptor *d) {
  const char *zero = enum_name(d, 0);
  const char *u = zero ? strstr(zero, "UNSPECIFIED") : NULL;
  return u ? (size_t)(u - zero) : 0;
}

/* ---- JSON ---------------------------------------------------------------- */

static bool file_sink(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  if (fwrite(data, 1, len, (FILE *)ctx) != len)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "write to stdout failed");
  return true;
}

#define RAW(w, s) pkgjson_write_raw((w), (s), strlen(s), error)

static bool json_message(pkgjson_writer_t *w, const ProtobufCMessage *m, fzip_error_t *error);

static bool json_base64(pkgjson_writer_t *w, const ProtobufCBinaryData *b, fzip_error_t *error) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char quad[5] = {0};
  if (!RAW(w, "\""))
    return false;
  for (size_t i = 0; i < b->len; i += 3) {
    uint32_t v = (uint32_t)b->data[i] << 16;
    size_t left = b->len - i;
    if (left > 1)
      v |= (uint32_t)b->data[i + 1] << 8;
    if (left > 2)
      v |= b->data[i + 2];
    quad[0] = tbl[(v >> 18) & 63];
    quad[1] = tbl[(v >> 12) & 63];
    quad[2] = left > 1 ? tbl[(v >> 6) & 63] : '=';
    quad[3] = left > 2 ? tbl[v & 63] : '=';
    if (!RAW(w, quad))
      return false;
  }
  return RAW(w, "\"");
}

/* 64-bit integers as JSON strings, as the proto3 JSON mapping says:
 * JavaScript and jq hold numbers as doubles, exact only up to 2^53, and a
 * transactionHash or a byte count above that would come out changed. */
static bool json_int64_string(pkgjson_writer_t *w, ProtobufCType t, const void *p,
                              fzip_error_t *error) {
  char buf[32];
  if (t == PROTOBUF_C_TYPE_UINT64 || t == PROTOBUF_C_TYPE_FIXED64)
    snprintf(buf, sizeof buf, "%" PRIu64, *(const uint64_t *)p);
  else
    snprintf(buf, sizeof buf, "%" PRId64, *(const int64_t *)p);
  return pkgjson_write_string(w, buf, strlen(buf), error);
}

static bool json_value(pkgjson_writer_t *w, field_t *f, const void *p, fzip_error_t *error) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)p;
    return pkgjson_write_string(w, s ? s : "", s ? strlen(s) : 0, error);
  }
  case PROTOBUF_C_TYPE_BYTES:
    return json_base64(w, (const ProtobufCBinaryData *)p, error);
  case PROTOBUF_C_TYPE_MESSAGE:
    return json_message(w, *(ProtobufCMessage *const *)p, error);
  case PROTOBUF_C_TYPE_BOOL:
    return RAW(w, *(const protobuf_c_boolean *)p ? "true" : "false");
  case PROTOBUF_C_TYPE_DOUBLE:
    return pkgjson_write_double(w, *(const double *)p, error);
  case PROTOBUF_C_TYPE_FLOAT:
    return pkgjson_write_double(w, *(const float *)p, error);
  case PROTOBUF_C_TYPE_ENUM: {
    int v = *(const int *)p;
    const char *name = enum_name(f->descriptor, v);
    return name ? pkgjson_write_string(w, name, strlen(name), error) : pkgjson_write_int64(w, v, error);
  }
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    return json_int64_string(w, f->type, p, error);
  default:
    return pkgjson_write_int64(w, int_at(p, f->type), error);
  }
}

static bool json_field(pkgjson_writer_t *w, const ProtobufCMessage *m, field_t *f,
                       fzip_error_t *error) {
  if (!pkgjson_write_string(w, f->name, strlen(f->name), error) || !RAW(w, ":"))
    return false;
  if (f->label != PROTOBUF_C_LABEL_REPEATED)
    return json_value(w, f, at(m, f->offset), error);
  size_t n = *(const size_t *)at(m, f->quantifier_offset);
  const char *arr = *(const char *const *)at(m, f->offset);
  if (!RAW(w, "["))
    return false;
  for (size_t i = 0; i < n; i++)
    if ((i > 0 && !RAW(w, ",")) || !json_value(w, f, arr + i * elem_size(f->type), error))
      return false;
  return RAW(w, "]");
}

static bool json_message(pkgjson_writer_t *w, const ProtobufCMessage *m, fzip_error_t *error) {
  bool first = true;
  if (!RAW(w, "{"))
    return false;
  for (unsigned i = 0; i < m->descriptor->n_fields; i++) {
    field_t *f = &m->descriptor->fields[i];
    if (f->label != PROTOBUF_C_LABEL_REPEATED && !present(m, f))
      continue;
    if ((!first && !RAW(w, ",")) || !json_field(w, m, f, error))
      return false;
    first = false;
  }
  return RAW(w, "}");
}

bool cli_msg_print_json(FILE *f, const ProtobufCMessage *m, fzip_error_t *error) {
  pkgjson_writer_t *w = pkgjson_writer_new(file_sink, f);
  bool ok = false;
  if (!w)
    return fzip_error_oom(error, NULL);
  ok = json_message(w, m, error) && RAW(w, "\n") && pkgjson_flush(w, error);
  pkgjson_writer_destroy(w);
  fflush(f);
  return ok;
}

/* ---- text ---------------------------------------------------------------- */

void cli_msg_format_time(char *out, size_t cap, int64_t ms) {
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  if (!gmtime_r(&s, &tm) || strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(out, cap, "%" PRId64, ms);
}

static bool is_time_field(const char *name) {
  size_t n = strlen(name);
  return (n > 3 && strcmp(name + n - 3, "_at") == 0) || (n > 5 && strcmp(name + n - 5, "_date") == 0) ||
         strstr(name, "timestamp") != NULL || strcmp(name, "from") == 0 || strcmp(name, "to") == 0 ||
         strcmp(name, "date") == 0 || strcmp(name, "at") == 0;
}

/* Scalar value as text; false for a default value not worth showing. */
static bool text_scalar(FILE *out, field_t *f, const void *p, bool force) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)p;
    if (!force && (!s || !s[0]))
      return false;
    fputs(s ? s : "", out);
    return true;
  }
  case PROTOBUF_C_TYPE_BYTES:
    fprintf(out, "(%zu bytes)", ((const ProtobufCBinaryData *)p)->len);
    return true;
  case PROTOBUF_C_TYPE_DOUBLE:
  case PROTOBUF_C_TYPE_FLOAT: {
    double d = f->type == PROTOBUF_C_TYPE_DOUBLE ? *(const double *)p : *(const float *)p;
    if (!force && d == 0)
      return false;
    fprintf(out, "%.17g", d);
    return true;
  }
  case PROTOBUF_C_TYPE_ENUM: {
    int v = *(const int *)p;
    const char *name = enum_name(f->descriptor, v);
    if (!force && v == 0)
      return false;
    if (name)
      fputs(name + enum_prefix_len(f->descriptor), out);
    else
      fprintf(out, "%d", v);
    return true;
  }
  case PROTOBUF_C_TYPE_BOOL:
    if (!force && !*(const protobuf_c_boolean *)p)
      return false;
    fputs(*(const protobuf_c_boolean *)p ? "true" : "false", out);
    return true;
  default: {
    int64_t v = int_at(p, f->type);
    char when[40];
    if (!force && v == 0)
      return false;
    if (is_time_field(f->name) && v > 0) {
      cli_msg_format_time(when, sizeof when, v);
      fprintf(out, "%s (%" PRId64 ")", when, v);
    } else {
      fprintf(out, "%" PRId64, v);
    }
    return true;
  }
  }
}

static void text_message(FILE *out, const ProtobufCMessage *m, int indent, int depth);

/* A scalar field's text, or NULL when it holds its default (and on
 * allocation failure): printed into a buffer first so that a default
 * leaves no label behind.  The caller frees it. */
static char *scalar_text(const ProtobufCMessage *m, field_t *f) {
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  bool shown;
  if (!mem)
    return NULL;
  shown = text_scalar(mem, f, at(m, f->offset), false);
  fclose(mem);
  if (!shown) {
    free(buf);
    return NULL;
  }
  return buf;
}

static void text_field(FILE *out, const ProtobufCMessage *m, field_t *f, int indent, int depth) {
  if (f->label == PROTOBUF_C_LABEL_REPEATED) {
    size_t n = *(const size_t *)at(m, f->quantifier_offset);
    const char *arr = *(const char *const *)at(m, f->offset);
    for (size_t i = 0; i < n; i++) {
      const void *p = arr + i * elem_size(f->type);
      fprintf(out, "%*s%s[%zu]:", indent, "", f->name, i);
      if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        fputc('\n', out);
        text_message(out, *(ProtobufCMessage *const *)p, indent + 2, depth + 1);
      } else {
        fputc(' ', out);
        text_scalar(out, f, p, true);
        fputc('\n', out);
      }
    }
    return;
  }
  if (!present(m, f))
    return;
  if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
    fprintf(out, "%*s%s:\n", indent, "", f->name);
    text_message(out, *(ProtobufCMessage *const *)at(m, f->offset), indent + 2, depth + 1);
    return;
  }
  char *text = scalar_text(m, f);
  if (text)
    fprintf(out, "%*s%s: %s\n", indent, "", f->name, text);
  free(text);
}

static void text_message(FILE *out, const ProtobufCMessage *m, int indent, int depth) {
  if (depth > TEXT_DEPTH_MAX) {
    fprintf(out, "%*s...\n", indent, "");
    return;
  }
  for (unsigned i = 0; i < m->descriptor->n_fields; i++)
    text_field(out, m, &m->descriptor->fields[i], indent, depth);
}

bool cli_msg_print(FILE *f, const ProtobufCMessage *m, bool json, fzip_error_t *error) {
  if (json)
    return cli_msg_print_json(f, m, error);
  cli_msg_print_text(f, m, 0);
  return true;
}

void cli_msg_print_text(FILE *f, const ProtobufCMessage *m, int indent) {
  text_message(f, m, indent, 0);
  fflush(f);
}

void cli_msg_print_line(FILE *out, const ProtobufCMessage *m) {
  bool first = true;
  for (unsigned i = 0; i < m->descriptor->n_fields; i++) {
    field_t *f = &m->descriptor->fields[i];
    if (f->label == PROTOBUF_C_LABEL_REPEATED || f->type == PROTOBUF_C_TYPE_MESSAGE ||
        f->type == PROTOBUF_C_TYPE_BYTES || !present(m, f))
      continue;
    char *text = scalar_text(m, f);
    if (text) {
      fprintf(out, "%s%s=%s", first ? "" : " ", f->name, text);
      first = false;
    }
    free(text);
  }
  fputc('\n', out);
}

/* ---- field access -------------------------------------------------------- */

static field_t *field_of(const ProtobufCMessage *m, const char *name, ProtobufCLabel label) {
  field_t *f = m ? protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name) : NULL;
  if (!f || (label == PROTOBUF_C_LABEL_REPEATED) != (f->label == PROTOBUF_C_LABEL_REPEATED))
    return NULL;
  return f;
}

const char *cli_msg_string(const ProtobufCMessage *m, const char *field) {
  field_t *f = field_of(m, field, PROTOBUF_C_LABEL_NONE);
  if (!f || f->type != PROTOBUF_C_TYPE_STRING || !present(m, f))
    return "";
  const char *s = *(char *const *)at(m, f->offset);
  return s ? s : "";
}

int64_t cli_msg_int(const ProtobufCMessage *m, const char *field) {
  field_t *f = field_of(m, field, PROTOBUF_C_LABEL_NONE);
  if (!f || !present(m, f))
    return 0;
  return int_at(at(m, f->offset), f->type);
}

const ProtobufCMessage *cli_msg_sub(const ProtobufCMessage *m, const char *field) {
  field_t *f = field_of(m, field, PROTOBUF_C_LABEL_NONE);
  if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE || !present(m, f))
    return NULL;
  return *(ProtobufCMessage *const *)at(m, f->offset);
}

ProtobufCMessage *const *cli_msg_repeated(size_t *n, const ProtobufCMessage *m,
                                          const char *field) {
  field_t *f = field_of(m, field, PROTOBUF_C_LABEL_REPEATED);
  *n = 0;
  if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE)
    return NULL;
  *n = *(const size_t *)at(m, f->quantifier_offset);
  return *(ProtobufCMessage *const *const *)at(m, f->offset);
}

const char *cli_msg_enum_short(const ProtobufCMessage *m, const char *field) {
  field_t *f = field_of(m, field, PROTOBUF_C_LABEL_NONE);
  if (!f || f->type != PROTOBUF_C_TYPE_ENUM)
    return "?";
  const char *name = enum_name(f->descriptor, *(const int *)at(m, f->offset));
  return name ? name + enum_prefix_len(f->descriptor) : "?";
}

bool cli_msg_set_string(ProtobufCMessage *m, const char *field, const char *value) {
  field_t *f = field_of(m, field, PROTOBUF_C_LABEL_NONE);
  if (!f || f->type != PROTOBUF_C_TYPE_STRING || (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
    return false;
  *(const char **)((char *)m + f->offset) = value;
  return true;
}

bool cli_msg_enum_parse(int *out, const ProtobufCEnumDescriptor *desc, const char *name) {
  size_t plen = enum_prefix_len(desc);
  for (unsigned i = 0; i < desc->n_values; i++) {
    const char *full = desc->values[i].name;
    if (strcasecmp(full, name) == 0 || strcasecmp(full + plen, name) == 0) {
      *out = desc->values[i].value;
      return true;
    }
  }
  return false;
}
