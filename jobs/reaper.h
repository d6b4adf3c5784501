/*
 * reaper: the background thread that removes what has expired: export
 * packages past their TTL (the export turns EXPIRED), ended jobs past
 * their retention, uploads abandoned mid-way (uncommitted blobs), and the
 * temp directories of fzipd processes that died (tempdir.h).
 * Expiry never relies on TTL indexes (FerretDB has none, and GridFS
 * chunks are never removed by TTL): every replica runs this loop and the
 * store operations it uses are safe to race (docs/STORAGE.md).
 */
#ifndef FZIP_REAPER_H
#define FZIP_REAPER_H

#include <stdint.h>

#include "fzip_error.h"
#include "job_kind.h"
#include "store.h"

typedef struct reaper reaper_t;

typedef struct {
  int64_t interval_ms;            /* between runs; 0: 60000 */
  int64_t uncommitted_age_ms;     /* uncommitted blobs older than this go; 0: 24 h */
  const char *temp_root;          /* NULL: no temp sweep; else tempdir_sweep'd every run */
  /* Expiry per job kind, indexed by store_job_kind_t; may be NULL. */
  store_reap_hook_fn hooks[JOB_KIND_COUNT];
  void *hook_ctx[JOB_KIND_COUNT];
} reaper_options_t;

/* Starts the thread; the first run happens at once.  `store` is borrowed. */
bool reaper_new(reaper_t **out, store_t *store, const reaper_options_t *options,
                fzip_error_t *error);
/* Runs one pass now, on the caller's thread (tests, and the thread itself). */
bool reaper_run_once(reaper_t *reaper, store_reap_stats_t *stats, fzip_error_t *error);
void reaper_destroy(reaper_t *reaper); /* stops and joins; accepts NULL */

#endif
