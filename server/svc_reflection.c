/*
 * svc_reflection: see svc_reflection.h.
 *
 * At start-up the FileDescriptorSet is cut into its FileDescriptorProto
 * byte slices (field 1 of the set, length-delimited) and each slice is
 * unpacked once to learn its name, package, dependencies and symbols.
 * Answers send the original slices (never re-encoded), the requested file
 * first and then its transitive dependencies, as grpcurl expects.
 */
#include "svc_reflection.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fzip_log.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

#define REFL_MAX_FILES 64
#define REFL_NAME_MAX 512
/* The service is served under both names clients use: v1 and v1alpha. */
#define REFL_N_PATHS 2
/* Message nesting searched for a symbol: protoc output nests far less. */
#define REFL_NESTING_MAX 16
/* FileDescriptorSet.file: field 1, wire type 2 (length-delimited). */
#define DESCRIPTOR_SET_FILE_TAG ((1u << 3) | 2)

typedef struct {
  const uint8_t *data;
  size_t len;
  Google__Protobuf__FileDescriptorProto *fd; /* unpacked, owned */
} refl_file_t;

struct svc_reflection {
  refl_file_t files[REFL_MAX_FILES];
  size_t n_files;
  rpc_method_t rows[REFL_N_PATHS];
  const rpc_method_t *row_ptrs[REFL_N_PATHS];
};

/* ---- indexing --------------------------------------------------------- */

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return true;
    }
  }
  return false;
}

static bool index_set(svc_reflection_t *svc, const uint8_t *set, size_t len, fzip_error_t *error) {
  const uint8_t *p = set, *end = set + len;

  while (p < end) {
    uint64_t tag, n;
    if (!read_varint(&p, end, &tag) || tag != DESCRIPTOR_SET_FILE_TAG || !read_varint(&p, end, &n) ||
        n > (uint64_t)(end - p))
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL,
                            "embedded descriptor set is malformed");
    if (svc->n_files == REFL_MAX_FILES)
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL,
                            "embedded descriptor set has more than %d files", REFL_MAX_FILES);
    refl_file_t *f = &svc->files[svc->n_files];
    f->data = p;
    f->len = (size_t)n;
    f->fd = google__protobuf__file_descriptor_proto__unpack(NULL, f->len, f->data);
    if (!f->fd)
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL,
                            "embedded descriptor %zu does not parse", svc->n_files);
    svc->n_files++;
    p += n;
  }
  return true;
}

static const refl_file_t *file_by_name(const svc_reflection_t *svc, const char *name) {
  for (size_t i = 0; i < svc->n_files; i++) {
    if (strcmp(svc->files[i].fd->name, name) == 0)
      return &svc->files[i];
  }
  return NULL;
}

/* "pkg.Name" == prefix + "." + name, without building strings. */
static bool qualified_eq(const char *sym, const char *prefix, const char *name) {
  size_t pl = strlen(prefix);
  if (pl) {
    if (strncmp(sym, prefix, pl) != 0 || sym[pl] != '.')
      return false;
    sym += pl + 1;
  }
  return strcmp(sym, name) == 0;
}

static bool message_has_symbol(const Google__Protobuf__DescriptorProto *m, const char *prefix,
                               const char *sym, int depth) {
  char inner[REFL_NAME_MAX];

  if (qualified_eq(sym, prefix, m->name))
    return true;
  if (depth > REFL_NESTING_MAX)
    return false;
  snprintf(inner, sizeof inner, "%s%s%s", prefix, *prefix ? "." : "", m->name);
  for (size_t i = 0; i < m->n_enum_type; i++) {
    if (qualified_eq(sym, inner, m->enum_type[i]->name))
      return true;
  }
  for (size_t i = 0; i < m->n_nested_type; i++) {
    if (message_has_symbol(m->nested_type[i], inner, sym, depth + 1))
      return true;
  }
  return false;
}

static bool file_has_symbol(const Google__Protobuf__FileDescriptorProto *fd, const char *sym) {
  const char *pkg = fd->package ? fd->package : "";
  char svcname[REFL_NAME_MAX];

  for (size_t i = 0; i < fd->n_service; i++) {
    const Google__Protobuf__ServiceDescriptorProto *s = fd->service[i];
    if (qualified_eq(sym, pkg, s->name))
      return true;
    snprintf(svcname, sizeof svcname, "%s%s%s", pkg, *pkg ? "." : "", s->name);
    for (size_t j = 0; j < s->n_method; j++) {
      if (qualified_eq(sym, svcname, s->method[j]->name))
        return true;
    }
  }
  for (size_t i = 0; i < fd->n_enum_type; i++) {
    if (qualified_eq(sym, pkg, fd->enum_type[i]->name))
      return true;
  }
  for (size_t i = 0; i < fd->n_message_type; i++) {
    if (message_has_symbol(fd->message_type[i], pkg, sym, 0))
      return true;
  }
  return false;
}

static const refl_file_t *file_by_symbol(const svc_reflection_t *svc, const char *sym) {
  for (size_t i = 0; i < svc->n_files; i++) {
    if (file_has_symbol(svc->files[i].fd, sym))
      return &svc->files[i];
  }
  return NULL;
}

/* ---- answering -------------------------------------------------------- */

/* Appends `f` then its dependencies (depth-first, each file once). */
static void collect(const svc_reflection_t *svc, const refl_file_t *f, const refl_file_t **out,
                    size_t *n) {
  for (size_t i = 0; i < *n; i++) {
    if (out[i] == f)
      return;
  }
  if (*n == REFL_MAX_FILES)
    return;
  out[(*n)++] = f;
  for (size_t i = 0; i < f->fd->n_dependency; i++) {
    const refl_file_t *dep = file_by_name(svc, f->fd->dependency[i]);
    if (dep)
      collect(svc, dep, out, n);
  }
}

static bool answer_files(rpc_ctx_t *ctx, const svc_reflection_t *svc, const refl_file_t *f,
                         Grpc__Reflection__V1__ServerReflectionResponse *resp) {
  const refl_file_t *list[REFL_MAX_FILES];
  size_t n = 0;
  Grpc__Reflection__V1__FileDescriptorResponse *fdr = rpc_ctx_alloc(ctx, sizeof *fdr);
  ProtobufCBinaryData *blobs;

  collect(svc, f, list, &n);
  blobs = rpc_ctx_alloc(ctx, n * sizeof *blobs);
  if (!fdr || !blobs)
    return false;
  grpc__reflection__v1__file_descriptor_response__init(fdr);
  for (size_t i = 0; i < n; i++) {
    blobs[i].data = (uint8_t *)list[i]->data; /* static: outlives the call */
    blobs[i].len = list[i]->len;
  }
  fdr->n_file_descriptor_proto = n;
  fdr->file_descriptor_proto = blobs;
  resp->message_response_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
  resp->file_descriptor_response = fdr;
  return true;
}

static bool answer_services(rpc_ctx_t *ctx, const svc_reflection_t *svc,
                            Grpc__Reflection__V1__ServerReflectionResponse *resp) {
  size_t total = 0, k = 0;
  Grpc__Reflection__V1__ListServiceResponse *lsr = rpc_ctx_alloc(ctx, sizeof *lsr);
  Grpc__Reflection__V1__ServiceResponse **items;

  for (size_t i = 0; i < svc->n_files; i++)
    total += svc->files[i].fd->n_service;
  items = rpc_ctx_alloc(ctx, (total ? total : 1) * sizeof *items);
  if (!lsr || !items)
    return false;
  grpc__reflection__v1__list_service_response__init(lsr);
  for (size_t i = 0; i < svc->n_files; i++) {
    const Google__Protobuf__FileDescriptorProto *fd = svc->files[i].fd;
    const char *pkg = fd->package ? fd->package : "";
    for (size_t j = 0; j < fd->n_service; j++) {
      char name[REFL_NAME_MAX];
      Grpc__Reflection__V1__ServiceResponse *sr = rpc_ctx_alloc(ctx, sizeof *sr);
      if (!sr)
        return false;
      grpc__reflection__v1__service_response__init(sr);
      snprintf(name, sizeof name, "%s%s%s", pkg, *pkg ? "." : "", fd->service[j]->name);
      sr->name = rpc_ctx_strdup(ctx, name);
      if (!sr->name)
        return false;
      items[k++] = sr;
    }
  }
  lsr->n_service = k;
  lsr->service = items;
  resp->message_response_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
  resp->list_services_response = lsr;
  return true;
}

static bool answer_error(rpc_ctx_t *ctx, int code, const char *msg,
                         Grpc__Reflection__V1__ServerReflectionResponse *resp) {
  Grpc__Reflection__V1__ErrorResponse *er = rpc_ctx_alloc(ctx, sizeof *er);
  if (!er)
    return false;
  grpc__reflection__v1__error_response__init(er);
  er->error_code = code;
  er->error_message = rpc_ctx_strdup(ctx, msg);
  if (!er->error_message)
    return false;
  resp->message_response_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
  resp->error_response = er;
  return true;
}

static bool reflection_reply(rpc_ctx_t *ctx, const ProtobufCMessage *msg, ProtobufCMessage **out,
                             fzip_error_t *error) {
  const svc_reflection_t *svc = rpc_ctx_method_data(ctx);
  const Grpc__Reflection__V1__ServerReflectionRequest *req = (const void *)msg;
  Grpc__Reflection__V1__ServerReflectionResponse *resp = rpc_ctx_alloc(ctx, sizeof *resp);
  const refl_file_t *f = NULL;
  bool ok = false;
  char why[sizeof "symbol not found: " + REFL_NAME_MAX];

  if (!resp)
    goto oom;
  grpc__reflection__v1__server_reflection_response__init(resp);
  resp->valid_host = rpc_ctx_strdup(ctx, req->host ? req->host : "");
  resp->original_request = (Grpc__Reflection__V1__ServerReflectionRequest *)req;
  switch (req->message_request_case) {
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
    ok = answer_services(ctx, svc, resp);
    break;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
    f = file_by_name(svc, req->file_by_filename);
    snprintf(why, sizeof why, "file not found: %.*s", REFL_NAME_MAX, req->file_by_filename);
    ok = f ? answer_files(ctx, svc, f, resp) : answer_error(ctx, rpc_status_code(FZIP_ERR_NOT_FOUND), why, resp);
    break;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
    f = file_by_symbol(svc, req->file_containing_symbol);
    snprintf(why, sizeof why, "symbol not found: %.*s", REFL_NAME_MAX,
             req->file_containing_symbol);
    ok = f ? answer_files(ctx, svc, f, resp) : answer_error(ctx, rpc_status_code(FZIP_ERR_NOT_FOUND), why, resp);
    break;
  default:
    /* fzip's protos declare no extensions. */
    ok = answer_error(ctx, rpc_status_code(FZIP_ERR_UNIMPLEMENTED),
                      "extensions are not supported", resp);
    break;
  }
  if (!ok)
    goto oom;
  *out = &resp->base;
  return true;
oom:
  return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_RESOURCE_EXHAUSTED,
                        "reflection answer exceeds the call's memory limit");
}

/* ---- lifecycle -------------------------------------------------------- */

bool svc_reflection_new(svc_reflection_t **out, const unsigned char *set, size_t set_len,
                        fzip_error_t *error) {
  static const char *const paths[REFL_N_PATHS] = {
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
  };
  svc_reflection_t *svc = calloc(1, sizeof *svc);

  *out = NULL;
  if (!svc)
    return fzip_error_oom(error, NULL);
  if (!index_set(svc, set, set_len, error)) {
    svc_reflection_destroy(svc);
    return false;
  }
  for (int i = 0; i < REFL_N_PATHS; i++) {
    svc->rows[i] = (rpc_method_t){
        .path = paths[i],
        .kind = RPC_BIDI_ONE_REPLY,
        .request = &grpc__reflection__v1__server_reflection_request__descriptor,
        .response = &grpc__reflection__v1__server_reflection_response__descriptor,
        .requires_auth = false,
        .quiet = true,
        .bidi = reflection_reply,
        .data = svc,
    };
    svc->row_ptrs[i] = &svc->rows[i];
  }
  *out = svc;
  return true;
}

void svc_reflection_destroy(svc_reflection_t *svc) {
  if (!svc)
    return;
  for (size_t i = 0; i < svc->n_files; i++)
    google__protobuf__file_descriptor_proto__free_unpacked(svc->files[i].fd, NULL);
  free(svc);
}

const rpc_method_t *const *svc_reflection_methods(svc_reflection_t *svc, size_t *n) {
  *n = REFL_N_PATHS;
  return svc->row_ptrs;
}
