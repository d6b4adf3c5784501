/*
 * cli_msg: protobuf-c messages read and printed through their descriptors.
 *
 * The CLI prints many message types (jobs, summaries, entities) and builds
 * a few requests that differ only by the name of an id field.  Walking the
 * descriptor does all of them with one piece of code instead of one
 * printer per type, and a field added to the protos shows up in the
 * output without a client change.
 *
 * JSON output: one object per message, proto field names, every singular
 * scalar written (defaults included, so scripts can rely on a key),
 * unset sub-messages omitted, enums by name, 64-bit integers as decimal
 * strings (the proto3 JSON mapping: exact in jq and JavaScript past 2^53),
 * bytes as base64.  Text output: "name: value" lines of the fields that
 * are set, sub-messages indented, epoch-ms times (fields named *_at or
 * *timestamp) also shown as UTC.
 */
#ifndef CLI_MSG_H
#define CLI_MSG_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "fzip_error.h"

/* One JSON object and a newline on f. */
bool cli_msg_print_json(FILE *f, const ProtobufCMessage *m, fzip_error_t *error);
/* Readable lines, each prefixed by `indent` spaces. */
void cli_msg_print_text(FILE *f, const ProtobufCMessage *m, int indent);
/* A command's result: one JSON object with `json` (--json), else the
 * readable lines. */
bool cli_msg_print(FILE *f, const ProtobufCMessage *m, bool json, fzip_error_t *error);
/* One line of the set scalar fields, "name=value name=value". */
void cli_msg_print_line(FILE *f, const ProtobufCMessage *m);

/* Field readers by name; absent or mistyped fields read as ""/0/NULL. */
const char *cli_msg_string(const ProtobufCMessage *m, const char *field);
int64_t cli_msg_int(const ProtobufCMessage *m, const char *field);
const ProtobufCMessage *cli_msg_sub(const ProtobufCMessage *m, const char *field);
/* Items of a repeated message field; *n is their count. */
ProtobufCMessage *const *cli_msg_repeated(size_t *n, const ProtobufCMessage *m,
                                          const char *field);
/* An enum field's value name without the type prefix: "COMPLETED". */
const char *cli_msg_enum_short(const ProtobufCMessage *m, const char *field);

/* Sets a string field of a message the caller built (not one unpacked by
 * protobuf-c): the value is borrowed, not copied.  False if no such
 * string field. */
bool cli_msg_set_string(ProtobufCMessage *m, const char *field, const char *value);

/* Parses "COMPLETE"/"complete"/"EXPORT_TYPE_COMPLETE" into the enum's
 * number; false if it names no value. */
bool cli_msg_enum_parse(int *out, const ProtobufCEnumDescriptor *desc, const char *name);

/* Epoch ms as "2026-11-21T12:00:00Z" into out (at least 32 bytes). */
void cli_msg_format_time(char *out, size_t cap, int64_t ms);

#endif
