/*
 * entity_conv: entity documents (bson_t, camelCase, as the store and the
 * FZIP package hold them) <-> fzip.v1 protobuf-c messages (snake_case).
 *
 * The conversion is driven by the protobuf-c descriptors rather than one
 * hand-written function per kind: a message field `first_transaction_date`
 * is the document field `firstTransactionDate`, nested messages are
 * sub-documents, repeated messages are arrays, and an enum value is the
 * value name minus its prefix, matched case-insensitively
 * (ACCOUNT_TYPE_CREDIT_CARD <-> "credit_card").  The few places where the
 * package departs from that rule are data in a small override table in the
 * .c file (AnalyticsRecord.data_json <-> the object `data`; CategoryType is
 * written upper-case, INCOME/EXPENSE/TRANSFER).
 *
 * Documents come from users' packages and other services, so the forward
 * direction is forgiving: unknown enum strings become the UNSPECIFIED (0)
 * value, fields of the wrong BSON type are skipped (logged at debug), and
 * unknown document fields are ignored.  Integer fields accept int32, int64
 * and integral doubles; string fields also accept Decimal128 (money).  Only
 * exhausted memory and the bounds below fail a conversion.
 *
 * Absent vs zero: protoc-c 1.4 has no proto3 `optional`, so in messages an
 * empty string, a 0 number and the UNSPECIFIED enum value mean "absent";
 * the reverse direction omits such fields.  Booleans are always written
 * (false is meaningful: isActive, enabled) and repeated fields are always
 * written as arrays, possibly empty.
 */
#ifndef FZIP_ENTITY_CONV_H
#define FZIP_ENTITY_CONV_H

#include <bson/bson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "fzip_entity.h"
#include "fzip_error.h"

/* Deepest nesting of sub-messages followed (entities need 2). */
#define CONV_DEPTH_MAX 8
/* Most elements of one repeated field (a transaction's category
 * assignments, a category's rules); more is INVALID_ARGUMENT. */
#define CONV_REPEATED_MAX 10000
/* Longest document / message field name handled (bytes). */
#define CONV_NAME_MAX 64

/* The message type entities of `kind` convert to (fzip__v1__account__descriptor
 * for FZIP_KIND_ACCOUNT, ...); NULL for an unknown kind. */
const ProtobufCMessageDescriptor *conv_kind_descriptor(fzip_kind_t kind);

/* Converts `doc` into a new message of type `desc`.  *out and everything
 * it points to are allocated from `allocator` (the rpc call arena, from
 * rpc_ctx_allocator); with a NULL allocator they come from malloc and the
 * caller releases them with protobuf_c_message_free_unpacked(*out, NULL).
 * Fails only with RESOURCE_EXHAUSTED (allocation) or INVALID_ARGUMENT
 * (nesting or repetition beyond the bounds above). */
bool conv_doc_to_message(ProtobufCMessage **out, ProtobufCAllocator *allocator,
                         const ProtobufCMessageDescriptor *desc, const bson_t *doc,
                         fzip_error_t *error);

/* Same, choosing the message type from the entity kind. */
bool conv_entity_to_message(ProtobufCMessage **out, ProtobufCAllocator *allocator,
                            fzip_kind_t kind, const bson_t *doc, fzip_error_t *error);

/* Appends the fields of `msg` to `out` (an initialised, caller-owned
 * document, usually empty) in the document form above.  Fails with
 * INVALID_ARGUMENT if AnalyticsRecord.data_json is not a JSON object, or
 * beyond CONV_DEPTH_MAX. */
bool conv_message_to_doc(bson_t *out, const ProtobufCMessage *msg, fzip_error_t *error);

/* The document spelling of enum value `value` of `desc` ("credit_card",
 * "INCOME"), written into buf; false if the value is unknown or UNSPECIFIED
 * or buf is too small. */
bool conv_enum_to_string(char *buf, size_t buf_size, const ProtobufCEnumDescriptor *desc,
                         int value);
/* The enum value whose name (minus prefix) equals `s` ignoring case; 0
 * (UNSPECIFIED) if none does. */
int conv_enum_from_string(const ProtobufCEnumDescriptor *desc, const char *s);

#endif
