/*
 * retention_restamp: test fixture for the retention end-to-end test.  A
 * real export (made by fzipd, with its package) is given the schedule id,
 * completion time and expiry the test needs, through the store API, as if
 * a schedule had made it on that day: retention buckets span days and
 * weeks, which a test cannot wait for.
 *
 *   retention_restamp STORE_URI USER EXPORT_ID SCHEDULE_ID COMPLETED_AT_MS EXPIRES_AT_MS
 *
 * Exits 0 when saved, 2 on a usage or store error (printed on stderr).
 */
#include <stdio.h>
#include <stdlib.h>

#include "fzip/v1/jobs.pb-c.h"
#include "fzip_error.h"
#include "fzip_util.h"
#include "job_body.h"
#include "job_kind.h"
#include "store.h"
#include "svc_export.h"

int main(int argc, char **argv) {
  fzip_error_t err = {0};
  store_t *store = NULL;
  store_job_t *rec = NULL;
  Fzip__V1__ExportJob *job = NULL;
  int rc = 2;

  if (argc != 7) {
    fprintf(stderr, "usage: %s STORE_URI USER EXPORT_ID SCHEDULE_ID COMPLETED_AT_MS "
                    "EXPIRES_AT_MS\n", argv[0]);
    return 2;
  }
  store_options_t so = {.uri = argv[1]};
  if (!store_open(&store, &so, &err) ||
      !store_job_get(&rec, store, STORE_JOB_EXPORT, argv[2], argv[3], &err) ||
      !job_body_unpack((ProtobufCMessage **)&job, rec->body, &fzip__v1__export_job__descriptor,
                       NULL, &err))
    goto done;
  if (!job_msg_set_str(&job->schedule_id, argv[4])) {
    fzip_error_oom(&err, NULL);
    goto done;
  }
  job->completed_at = strtoll(argv[5], NULL, 10);
  job->expires_at = rec->expires_at = strtoll(argv[6], NULL, 10);
  if (job_store_unowned(store, &export_job_kind, rec, &job->base, fzip_now_ms(), false, &err))
    rc = 0;
done:
  if (rc != 0)
    fprintf(stderr, "retention_restamp: [%s] %s\n", fzip_code_name((fzip_code_t)err.code),
            err.message);
  if (job)
    protobuf_c_message_free_unpacked(&job->base, NULL);
  store_job_destroy(rec);
  store_destroy(store);
  return rc;
}
