/*
 * fzip_util: small helpers every module needs: wall-clock and monotonic
 * time, random UUIDs, and an incremental SHA-256 (OpenSSL EVP underneath,
 * no hand-written crypto).
 */
#ifndef FZIP_UTIL_H
#define FZIP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_error.h"

#include <pthread.h>
#include <time.h>

int64_t fzip_now_ms(void);       /* wall clock, epoch milliseconds */
int64_t fzip_monotonic_ms(void); /* for timeouts and rates */
/* Sleeps `ms` milliseconds (none if ms <= 0), resuming after a signal. */
void fzip_sleep_ms(int64_t ms);

/* The one way fzip picks a scratch directory (pkg's temporary files, the
 * process's temp dir, the import's fetched package, the client's opened
 * sealed package): dir when set and not
 * empty, else $TMPDIR when set and not empty, else /tmp.  The result is
 * dir's, the environment's or static. */
const char *fzip_tmp_root(const char *dir);

/* errno after a failed call on a temporary file, as an error of
 * FZIP_DOMAIN_SYS: RESOURCE_EXHAUSTED when the disk is full (ENOSPC,
 * EDQUOT), INTERNAL otherwise ("short read" when errno is 0), "<what>:
 * <doing> its temporary file in <root>: <reason>".  Returns false. */
bool fzip_tmp_error(fzip_error_t *error, const char *what, const char *doing, const char *root);

/* Timed waits: a condition variable whose pthread_cond_timedwait reads
 * the monotonic clock, and the absolute deadline `ms` from now on that
 * clock.  A wall clock set back (NTP, a VM resumed) would otherwise stall
 * every timed wait by the size of the step.  Returns pthread_cond_init's
 * result. */
int fzip_cond_init_monotonic(pthread_cond_t *cv);
struct timespec fzip_monotonic_deadline(int64_t ms);

#define FZIP_UUID_LEN 36
/* Writes a random (v4) UUID, lower-case, NUL-terminated, into out[37]. */
bool fzip_uuid_v4(char out[FZIP_UUID_LEN + 1], fzip_error_t *error);

#define FZIP_SHA256_HEX_LEN 64
typedef struct fzip_sha256 fzip_sha256_t;
/* Returns NULL only on allocation failure.  Caller destroys. */
fzip_sha256_t *fzip_sha256_new(void);
void fzip_sha256_update(fzip_sha256_t *h, const void *data, size_t len);
/* Writes 64 lower-case hex digits + NUL; the hasher may not be updated
 * afterwards (reset it to reuse). */
void fzip_sha256_final_hex(fzip_sha256_t *h, char out[FZIP_SHA256_HEX_LEN + 1]);
void fzip_sha256_reset(fzip_sha256_t *h);
void fzip_sha256_destroy(fzip_sha256_t *h); /* accepts NULL */
/* One-shot helper. */
void fzip_sha256_hex(char out[FZIP_SHA256_HEX_LEN + 1], const void *data, size_t len);

/* Reads a whole small file (a key, a certificate, a secret) of at most
 * `max` bytes into a NUL-terminated buffer the caller frees; *len (may be
 * NULL) gets its length.  CONFIG/INVALID_ARGUMENT naming the file when it
 * cannot be opened or read or is larger than `max`. */
bool fzip_read_small_file(char **out, size_t *len, const char *path, size_t max,
                          fzip_error_t *error);

/* Hands the heap's free pages back to the system (glibc's malloc_trim;
 * nothing elsewhere).  For the end of big work -- a job, a streaming
 * call: glibc keeps what a thread freed in that thread's arena, so
 * without it fzipd's RSS stays at the peak of the largest job it ever
 * ran, where the next job would reuse at most part of it.  Costs a walk of
 * the free lists and a madvise per free run of pages: 0.1-1 ms in fzipd
 * after jobs of 1M transactions, more for a larger, more fragmented heap
 * (~7 ms for 170 MiB in a synthetic test): not for per-message paths. */
void fzip_release_memory(void);

/* glibc malloc arenas a long-lived server may use, unless the environment
 * sets MALLOC_ARENA_MAX itself.  glibc gives threads up to 8 arenas per
 * core, and every arena keeps the high-water mark of what its threads had
 * in use; fzipd's many threads (completion queues, workers, jobs, deflate,
 * read-ahead) each came to hold their own.  Measured on the 1M package's
 * validate-only (2 cores, docs/BENCHMARKS.md run U): peak RSS 45.0-46.5
 * MiB with glibc's default, 38.8-39.0 with 4 arenas, 37.1-37.2 with 2,
 * 36.8-36.9 with 1, in the same 7.7-8.5 s. */
#define FZIP_MALLOC_ARENAS 2

/* Caps glibc's arenas at FZIP_MALLOC_ARENAS (nothing elsewhere, or when
 * MALLOC_ARENA_MAX is set).  Call before any thread starts: a thread
 * keeps the arena it first used. */
void fzip_limit_malloc_arenas(void);

/* Duplicate at most `max` bytes of `s` (NUL-terminated); NULL on OOM or NULL s. */
char *fzip_strndup(const char *s, size_t max);

#endif
