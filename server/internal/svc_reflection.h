/*
 * svc_reflection: gRPC server reflection (grpc.reflection.v1 and
 * v1alpha) answered from the FileDescriptorSet compiled in at build time
 * (proto/fzip_descriptors.h), so that grpcurl `list`, `describe` and calls
 * work with no proto files.  The two versions share one wire format, so
 * both rows use the v1 message descriptors.
 */
#ifndef FZIP_SVC_REFLECTION_H
#define FZIP_SVC_REFLECTION_H

#include <stddef.h>

#include "fzip_error.h"
#include "rpc.h"

typedef struct svc_reflection svc_reflection_t;

/* Indexes the descriptor set (borrowed: it must outlive the service). */
bool svc_reflection_new(svc_reflection_t **out, const unsigned char *set, size_t set_len,
                        fzip_error_t *error);
void svc_reflection_destroy(svc_reflection_t *svc);
/* The two method rows (v1, v1alpha); borrowed from svc. */
const rpc_method_t *const *svc_reflection_methods(svc_reflection_t *svc, size_t *n);

#endif
