/*
 * svc_export: fzip.v1.ExportService: export jobs (create, get, list,
 * watch, cancel, delete), the worker that builds packages with pkg_writer,
 * and DownloadExport streaming the finished package from the blob store.
 *
 * Job lifecycle (docs/EXPORT.md): INITIATED when created; a worker of any
 * replica claims it (jobs.h) and moves it through COLLECTING_DATA (reading
 * the store into temporary entries), BUILDING_PACKAGE (zip), UPLOADING
 * (into the packages bucket) to COMPLETED, or FAILED with the phase and
 * reason, or CANCELLED.  A completed package expires after `ttl_ms`: the
 * reaper deletes its blob and the job reads EXPIRED until it is removed
 * `retention_ms` later.
 */
#ifndef FZIP_SVC_EXPORT_H
#define FZIP_SVC_EXPORT_H

#include <stdint.h>

#include "fzip/v1/export_service.pb-c.h"
#include "fzip_error.h"
#include "job_kind.h"
#include "rpc.h"
#include "store.h"

typedef struct svc_export svc_export_t;

/* The export job kind: its status transitions, blob name ("export-<id>")
 * and cancel/delete/expiry rules. */
extern const job_kind_t export_job_kind;

typedef struct {
  int workers;               /* concurrent export jobs on this replica; 0: 2 */
  int64_t ttl_ms;            /* package lifetime after completion; 0: 24 h */
  int64_t retention_ms;      /* how long ended jobs stay listed; 0: 7 days */
  int64_t lease_ms;          /* 0: jobs.h default */
  int poll_ms;               /* 0: jobs.h default */
  const char *temp_dir;      /* NULL: $TMPDIR or /tmp */
  int64_t max_queued_per_user; /* runnable jobs of one user (both kinds) before a
                                * create is refused; 0: no cap (svc_jobs.h) */
  const char *owner;         /* replica id; NULL: generated */
} svc_export_options_t;

#define SVC_EXPORT_CHUNK_DEFAULT (1024 * 1024)
#define SVC_EXPORT_CHUNK_MAX (4 * 1024 * 1024) /* largest chunk_size a request may ask */
/* Stock gRPC clients refuse received messages over 4 MiB (4194304 bytes).
 * A chunk message is the chunk plus a field tag and length (at most 6
 * bytes) inside the 5-byte gRPC frame; 4 KiB of headroom keeps every
 * DownloadExport message under that limit whatever chunk_size asks. */
#define SVC_EXPORT_STOCK_RECV_LIMIT (4 * 1024 * 1024)
#define SVC_EXPORT_CHUNK_SENT_MAX (SVC_EXPORT_STOCK_RECV_LIMIT - 4 * 1024)
#define SVC_EXPORT_DESCRIPTION_MAX 1000

/* Longest chain of increments on one complete export: an increment on an
 * increment of chain_length EXPORT_CHAIN_MAX is refused (make a complete
 * export); it bounds what `fzip package apply` reads for one restore. */
#define EXPORT_CHAIN_MAX 100

/* Creates an export job exactly as CreateExport does: the request's
 * checks (incremental_base_id included), the request_id's replay window,
 * the per-user queue cap, the count behind the estimates.  `ctx` is the
 * call (the job is its user's; violations go into its status) or NULL for
 * a create no call asked for (the scheduler), then the job is `user_id`'s.
 * `schedule_id` (NULL or "": none) is recorded on the job.  *out is the
 * job record, the caller's to destroy (its body the packed ExportJob):
 * the new job, or, *replayed true, the one req->request_id created
 * before.  Errors as CreateExport's (INVALID_ARGUMENT, NOT_FOUND and
 * FAILED_PRECONDITION for a bad base, RESOURCE_EXHAUSTED, ALREADY_EXISTS). */
bool svc_export_create(store_job_t **out, bool *replayed, svc_export_t *svc, rpc_ctx_t *ctx,
                       const char *user_id, const Fzip__V1__CreateExportRequest *req,
                       const char *schedule_id, fzip_error_t *error);

/* Starts the export workers.  `store` is borrowed. */
bool svc_export_new(svc_export_t **out, store_t *store, const svc_export_options_t *options,
                    fzip_error_t *error);
/* Stops the workers (interrupted jobs are released for takeover). */
void svc_export_destroy(svc_export_t *svc);
/* The seven ExportService rows (borrowed from svc). */
const rpc_method_t *const *svc_export_methods(svc_export_t *svc, size_t *n);

/* The reaper expires these jobs through svc_jobs_expire, with the service
 * (whose svc_jobs base comes first) as its ctx: a completed export past
 * its expiry loses its blob and becomes EXPIRED, kept retention_ms more;
 * any other ended export is deleted with it. */

#endif
