/*
 * seed: a deterministic synthetic HouseF3 dataset, written through the
 * storage API, for tests, benchmarks and demos (`fzipd seed`).
 *
 * One 64-bit seed and a transaction count decide everything: ids (UUIDs
 * drawn from the generator, rule ids "rule_" + 8 hex), names, amounts,
 * dates (from a fixed base date, never the clock) and the bytes of every
 * transaction file.  The same seed and count give identical documents and
 * identical blobs on any backend; the user id only names where they go.
 *
 * What is produced (docs/FORMAT.md field names, housef3-app.md rules):
 *   accounts of every type and several currencies (JPY with 0 decimals),
 *   a category tree at least 4 levels deep with rules of every condition
 *   on every fieldToMatch, one file map per account plus generic ones,
 *   transaction files whose CSV / OFX / QIF bytes (bucket
 *   STORE_BUCKET_FILES, blob id = s3Key = "<user>/<fileId>") list exactly
 *   the transactions that point at them, the transactions themselves, and
 *   optionally a few analytics records.  Accounts, files and categories
 *   grow with the transaction count, so the total file bytes do too.
 *
 * Memory stays bounded whatever the count: transactions are generated
 * file by file, each file's text streamed into its blob writer while its
 * transactions go out in STORE_BATCH_MAX batches (STORE_WRITE_REPLACE, so
 * a rerun with the same seed overwrites instead of failing).
 */
#ifndef FZIP_SEED_H
#define FZIP_SEED_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "fzip_error.h"
#include "store.h"

/* Largest transaction count accepted (about 1 KiB of store per transaction). */
#define SEED_TRANSACTIONS_MAX 100000000ULL

typedef struct {
  uint64_t seed;         /* decides every value */
  uint64_t transactions; /* exact number of transactions, <= SEED_TRANSACTIONS_MAX */
  bool analytics;        /* also write analytics records */
  bool clean;            /* first delete all of the user's entities and file blobs */
  FILE *progress;        /* progress lines go here (NULL: silent) */
} seed_options_t;

typedef struct {
  uint64_t accounts;
  uint64_t categories;
  uint64_t rules;
  uint64_t file_maps;
  uint64_t files;
  uint64_t transactions;
  uint64_t analytics;
  uint64_t file_bytes; /* total bytes of the transaction files' blobs */
  uint64_t transactions_read; /* seed_mutate: transactions looked at */
  int64_t elapsed_ms;
} seed_stats_t;

/* Writes the dataset of `options` for `user_id` into `store`.  *stats (may
 * be NULL) is overwritten with what was written.  On failure the store
 * holds a partial dataset; rerunning with the same options completes it. */
bool seed_generate(seed_stats_t *stats, store_t *store, const char *user_id,
                   const seed_options_t *options, fzip_error_t *error);

/* Rewrites about `percent` (0 < percent <= 100) of user_id's transactions
 * with a new memo, through store_entity_put_batch (STORE_BATCH_MAX at a
 * time, memory flat): which ones and their memos are decided by `seed`
 * and the transactions' id order, so the same data and seed change the
 * same transactions the same way.  stats->transactions = how many were
 * rewritten, stats->transactions_read = how many were looked at. */
bool seed_mutate(seed_stats_t *stats, store_t *store, const char *user_id, uint64_t seed,
                 double percent, fzip_error_t *error);

/* The HouseF3 duplicate-detection hash: the first 16 hex digits of
 * SHA-256("accountId|date|amount|description") (date as epoch ms in
 * decimal, amount as the transaction's decimal string), read as an
 * unsigned 64-bit number and stored as int64 (two's complement). */
int64_t seed_transaction_hash(const char *account_id, int64_t date_ms, const char *amount,
                              const char *description);

/* `fzipd seed ...`: argv[0] is "seed".  Returns the process exit status
 * (0 success, 1 failure, 2 usage error). */
int seed_main(int argc, char **argv);

#endif
