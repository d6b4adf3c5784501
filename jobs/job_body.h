/*
 * job_body: how a job's protobuf message (fzip.v1.ExportJob / ImportJob)
 * is kept in a store job record's body.
 *
 * The body holds the packed message under "job" (binary), so the record
 * stays exactly what the API returns, plus a few readable fields for
 * operators looking at the database ("status", "progress") and the
 * reaper's "packageBlobId" (STORE_JOB_PACKAGE_BLOB_FIELD).  The cancel flag
 * (JOB_CANCEL_FIELD) is managed by jobs.c and preserved here.
 */
#ifndef FZIP_JOB_BODY_H
#define FZIP_JOB_BODY_H

#include <bson/bson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "fzip_error.h"

#define JOB_BODY_MAX (1024 * 1024) /* packed job message bound */

/* Builds a body into `out` (initialised by the caller with bson_init or
 * bson_new; appended to).  status_name/blob_id may be NULL. */
bool job_body_build(bson_t *out, const ProtobufCMessage *job, const char *status_name,
                    int progress, const char *blob_id, bool cancel_requested,
                    fzip_error_t *error);

/* Unpacks the message from a body with `allocator` (NULL: malloc; free
 * with protobuf_c_message_free_unpacked and the same allocator). */
bool job_body_unpack(ProtobufCMessage **out, const bson_t *body,
                     const ProtobufCMessageDescriptor *desc, ProtobufCAllocator *allocator,
                     fzip_error_t *error);

/* The body's blob id, or NULL (borrowed from body). */
const char *job_body_blob_id(const bson_t *body);

/* A running job's progress: the highest a worker reports before the job
 * ends (100 is for an ended job). */
#define JOB_PROGRESS_RUNNING_MAX 99
/* Progress `p` for a running job now at `current`: never past
 * JOB_PROGRESS_RUNNING_MAX, never backwards. */
int job_progress_clamp(int current, int p);

/* Editing a job message unpacked with the default (malloc) allocator, as
 * workers keep them: replaces a string field (freeing the old value). */
bool job_msg_set_str(char **field, const char *value);
/* Appends a JobEvent to the message's "events" field (at most `max`
 * events are kept: later ones are dropped, the status says the rest). */
bool job_msg_add_event(ProtobufCMessage *job, const char *type, const char *message, size_t max);
/* Sets the message's "error" field (a JobError) from an fzip error, its
 * message as job_public_message gives it. */
bool job_msg_set_error(ProtobufCMessage *job, const fzip_error_t *err, const char *phase);
/* The same for the JobError field named `field` (a Schedule's
 * "last_error"); false when msg has no such JobError field. */
bool job_msg_set_error_field(ProtobufCMessage *msg, const char *field, const fzip_error_t *err,
                             const char *phase);
/* What a client may read of `err` in a job (JobError.message, the
 * "failed" event): clients read jobs with GetX/ListX/WatchX, so the rule of
 * the RPC boundary applies here too.  An error rpc_details_sanitised()
 * selects (store and system failures can name hosts, URIs and paths) gets
 * the generic text naming the request id of the running thread's log
 * lines (fzip_log_request_id: the job runner sets the creating call's id),
 * and those lines keep the full message; any other keeps its own.
 * Writes into out (size bytes, always terminated) and returns out. */
const char *job_public_message(char *out, size_t size, const fzip_error_t *err);

/* Name of an enum value ("EXPORT_STATUS_COMPLETED"), or "UNKNOWN". */
const char *job_enum_name(const ProtobufCEnumDescriptor *desc, int value);

#endif
