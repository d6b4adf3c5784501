/* The serialized google.protobuf.FileDescriptorSet of every proto fzipd
 * serves (fzip.v1 + grpc health/reflection, imports included), compiled
 * in at build time for server reflection. */
#ifndef FZIP_DESCRIPTORS_H
#define FZIP_DESCRIPTORS_H
#include <stddef.h>
extern const unsigned char fzip_descriptor_set[];
extern const size_t fzip_descriptor_set_len;
#endif
