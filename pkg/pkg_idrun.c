/*
 * pkg_idrun: see pkg_idrun.h.
 *
 * The temporary file is a sequence of sorted runs, each a sequence of
 * records: one length byte (ids are at most FZIP_ID_MAX = 128 bytes) and
 * the id's bytes, no NUL.  It is written through stdio (appends only,
 * flushed after each run) and read back with pread, one read buffer per
 * run, so that the runs can be consumed side by side.  The merge is a
 * binary heap of sources ordered by their current id: every file run,
 * and the buffer itself, sorted in memory, as the last one (it is never
 * written: a stream that fits the buffer touches no file).
 */
#include "pkg_idrun.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pkg_tmp.h"

#define IDRUN_WHAT "duplicate-id check" /* names the run in its errors */

_Static_assert(FZIP_ID_MAX <= UCHAR_MAX, "a record's length is one byte");
_Static_assert(PKG_IDRUN_READ_BYTES >= 1 + FZIP_ID_MAX, "a read buffer holds a whole record");

/* A sorted run in the file: bytes [off, end). */
typedef struct {
  uint64_t off, end;
} span_t;

/* One input of the merge: a file run (rd) or the buffer (rd NULL). */
typedef struct {
  const char *cur; /* its smallest id not merged yet; NULL when spent */
  uint64_t off, end; /* file run: bytes not yet read into buf */
  size_t pos, have;  /* file run: buf[pos, have) not yet consumed */
  size_t next;       /* buffer: index of the next id */
  char *buf;         /* file run: PKG_IDRUN_READ_BYTES */
  char id[FZIP_ID_MAX + 1]; /* file run: cur points here */
} source_t;

struct pkg_idrun {
  const char *temp_dir;
  size_t run_max;
  uint64_t ids_max;
  uint64_t n; /* ids kept */
  bool external, finished;
  char prev[FZIP_ID_MAX + 1]; /* the id kept last (valid when n > 0) */
  /* the sorted prefix, to be replayed */
  uint64_t prefix_calls, prefix_kept, replayed, replay_kept;
  char replay_prev[FZIP_ID_MAX + 1];
  /* external mode: the buffer */
  char **ids;
  size_t n_ids;
  char *arena;
  size_t arena_used, arena_cap;
  /* external mode: the file */
  FILE *file;
  uint64_t file_end;
  span_t *spans; /* PKG_IDRUN_RUNS_MAX */
  size_t n_spans;
};

/* ---- errors ----------------------------------------------------------- */

/* errno after a failed file call, said with the directory the file is in. */
static bool file_error(fzip_error_t *error, const pkg_idrun_t *run, const char *what) {
  return fzip_tmp_error(error, IDRUN_WHAT, what, run->temp_dir);
}

static bool id_length(size_t *len, const char *id, fzip_error_t *error) {
  *len = strnlen(id, FZIP_ID_MAX + 1);
  if (*len == 0 || *len > FZIP_ID_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "duplicate-id check: an id must have 1 to %d bytes", FZIP_ID_MAX);
  return true;
}

/* ---- life ------------------------------------------------------------- */

bool pkg_idrun_new(pkg_idrun_t **out, const pkg_idrun_options_t *options, fzip_error_t *error) {
  pkg_idrun_t *run = calloc(1, sizeof *run);
  if (!run)
    return fzip_error_oom(error, IDRUN_WHAT);
  run->temp_dir = fzip_tmp_root(options ? options->temp_dir : NULL);
  run->run_max = options && options->run_max ? options->run_max : PKG_IDRUN_RUN_MAX;
  if (run->run_max > PKG_IDRUN_RUN_MAX)
    run->run_max = PKG_IDRUN_RUN_MAX; /* the memory bound holds whatever is asked */
  run->ids_max = options && options->ids_max ? options->ids_max : UINT64_MAX;
  *out = run;
  return true;
}

void pkg_idrun_destroy(pkg_idrun_t *run) {
  if (!run)
    return;
  if (run->file)
    fclose(run->file);
  free(run->ids);
  free(run->arena);
  free(run->spans);
  free(run);
}

bool pkg_idrun_external(const pkg_idrun_t *run) { return run->external; }
size_t pkg_idrun_runs(const pkg_idrun_t *run) { return run->n_spans; }

uint64_t pkg_idrun_replay_wanted(const pkg_idrun_t *run) {
  return run->external ? run->prefix_calls - run->replayed : 0;
}

/* ---- external mode: the buffer and the runs --------------------------- */

/* The buffer, sized for run_max ids of at most FZIP_ID_MAX bytes each or
 * PKG_IDRUN_RUN_BYTES, whichever is less; the prefix so far is what is
 * to be replayed. */
static bool go_external(pkg_idrun_t *run, fzip_error_t *error) {
  size_t cap = PKG_IDRUN_RUN_BYTES;
  if (run->run_max < cap / (FZIP_ID_MAX + 1))
    cap = run->run_max * (FZIP_ID_MAX + 1);
  run->ids = malloc(run->run_max * sizeof *run->ids);
  run->arena = malloc(cap);
  run->spans = malloc(PKG_IDRUN_RUNS_MAX * sizeof *run->spans);
  if (!run->ids || !run->arena || !run->spans) {
    free(run->ids);
    free(run->arena);
    free(run->spans);
    run->ids = NULL;
    run->arena = NULL;
    run->spans = NULL;
    return fzip_error_oom(error, "duplicate-id check");
  }
  run->arena_cap = cap;
  run->external = true;
  run->prefix_kept = run->n;
  return true;
}

static bool open_file(pkg_idrun_t *run, fzip_error_t *error) {
  return pkg_tmp_file(&run->file, run->temp_dir, "fzip-idrun-", IDRUN_WHAT, error);
}

static int cmp_ids(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts the buffer, appends it to the file as one run and empties it. */
static bool spill(pkg_idrun_t *run, fzip_error_t *error) {
  span_t *s = &run->spans[run->n_spans];
  if (!run->file && !open_file(run, error))
    return false;
  qsort(run->ids, run->n_ids, sizeof *run->ids, cmp_ids);
  s->off = run->file_end;
  for (size_t i = 0; i < run->n_ids; i++) {
    size_t len = strlen(run->ids[i]);
    errno = 0;
    if (fputc((int)len, run->file) == EOF || fwrite(run->ids[i], 1, len, run->file) != len)
      return file_error(error, run, "writing");
    run->file_end += 1 + len;
  }
  errno = 0;
  if (fflush(run->file) != 0)
    return file_error(error, run, "writing");
  s->end = run->file_end;
  run->n_spans++;
  run->n_ids = 0;
  run->arena_used = 0;
  return true;
}

/* Copies id into the buffer, spilling it first when full; *kept false
 * when there is no room left (PKG_IDRUN_RUNS_MAX runs written). */
static bool buffer_id(bool *kept, pkg_idrun_t *run, const char *id, size_t len,
                      fzip_error_t *error) {
  *kept = false;
  if (run->n_ids == run->run_max || run->arena_used + len + 1 > run->arena_cap) {
    if (run->n_spans == PKG_IDRUN_RUNS_MAX)
      return true;
    if (!spill(run, error))
      return false;
  }
  run->ids[run->n_ids++] = memcpy(run->arena + run->arena_used, id, len + 1);
  run->arena_used += len + 1;
  *kept = true;
  return true;
}

/* ---- adding ----------------------------------------------------------- */

bool pkg_idrun_add(pkg_idrun_rc_t *rc, pkg_idrun_t *run, const char *id, fzip_error_t *error) {
  size_t len;
  int order;
  bool kept = true;

  if (!id_length(&len, id, error))
    return false;
  if (run->finished)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_FAILED_PRECONDITION,
                          "duplicate-id check: id added after the end");
  order = run->n ? strcmp(id, run->prev) : 1;
  if (order == 0) {
    *rc = PKG_IDRUN_AGAIN;
  } else if (run->n >= run->ids_max) {
    *rc = PKG_IDRUN_FULL;
  } else if (!run->external && order > 0) {
    *rc = PKG_IDRUN_NEW; /* sorted: the previous id is all there is to keep */
  } else {
    if (!run->external && !go_external(run, error))
      return false;
    if (!buffer_id(&kept, run, id, len, error))
      return false;
    *rc = kept ? PKG_IDRUN_NEW : PKG_IDRUN_FULL;
  }
  if (*rc == PKG_IDRUN_NEW) {
    memcpy(run->prev, id, len + 1);
    run->n++;
  }
  if (!run->external)
    run->prefix_calls++;
  return true;
}

/* The prefix's ids go through the same rules as when they were added
 * (AGAIN, then FULL past prefix_kept), so exactly the ids kept then are
 * buffered now. */
bool pkg_idrun_replay(pkg_idrun_t *run, const char *id, fzip_error_t *error) {
  size_t len;
  bool kept;

  if (!id_length(&len, id, error))
    return false;
  if (!pkg_idrun_replay_wanted(run))
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "duplicate-id check: no id of the sorted prefix is wanted");
  run->replayed++;
  if (run->replay_kept) {
    int order = strcmp(id, run->replay_prev);
    if (order < 0)
      return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                            "duplicate-id check: the replayed prefix is not the one added");
    if (order == 0)
      return true;
  }
  if (run->replay_kept >= run->prefix_kept)
    return true;
  if (!buffer_id(&kept, run, id, len, error))
    return false;
  if (!kept)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "duplicate-id check: more than %d sorted runs", PKG_IDRUN_RUNS_MAX);
  memcpy(run->replay_prev, id, len + 1);
  run->replay_kept++;
  return true;
}

/* ---- the merge -------------------------------------------------------- */

/* At least `want` bytes in s->buf[pos, have), read from the file. */
static bool fill(pkg_idrun_t *run, source_t *s, size_t want, fzip_error_t *error) {
  if (s->have - s->pos >= want)
    return true;
  memmove(s->buf, s->buf + s->pos, s->have - s->pos);
  s->have -= s->pos;
  s->pos = 0;
  while (s->have < want) {
    size_t room = PKG_IDRUN_READ_BYTES - s->have;
    ssize_t got;
    if (room > s->end - s->off)
      room = (size_t)(s->end - s->off);
    errno = 0;
    got = room ? pread(fileno(run->file), s->buf + s->have, room, (off_t)s->off) : 0;
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      return file_error(error, run, "reading");
    s->have += (size_t)got;
    s->off += (uint64_t)got;
  }
  return true;
}

/* Moves s to its next id (s->cur NULL at its end). */
static bool source_next(pkg_idrun_t *run, source_t *s, fzip_error_t *error) {
  size_t len;
  if (!s->buf) {
    s->cur = s->next < run->n_ids ? run->ids[s->next++] : NULL;
    return true;
  }
  if (s->pos == s->have && s->off == s->end) {
    s->cur = NULL;
    return true;
  }
  if (!fill(run, s, 1, error))
    return false;
  len = (unsigned char)s->buf[s->pos];
  if (len == 0 || len > FZIP_ID_MAX) {
    errno = EILSEQ;
    return file_error(error, run, "reading a malformed record from");
  }
  if (!fill(run, s, 1 + len, error))
    return false;
  memcpy(s->id, s->buf + s->pos + 1, len);
  s->id[len] = '\0';
  s->pos += 1 + len;
  s->cur = s->id;
  return true;
}

static void sift_down(source_t **heap, size_t n, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && strcmp(heap[l]->cur, heap[m]->cur) < 0)
      m = l;
    if (r < n && strcmp(heap[r]->cur, heap[m]->cur) < 0)
      m = r;
    if (m == i)
      return;
    source_t *t = heap[i];
    heap[i] = heap[m];
    heap[m] = t;
    i = m;
  }
}

/* Every id in ascending order; one that equals the one before it is a
 * duplicate. */
static bool merge(uint64_t *n_dups, pkg_idrun_t *run, pkg_idrun_dup_fn dup, void *ctx,
                  fzip_error_t *error) {
  size_t n_src = run->n_spans + 1, n_heap = 0;
  source_t *src = calloc(n_src, sizeof *src);
  source_t **heap = calloc(n_src, sizeof *heap);
  char *bufs = run->n_spans ? malloc(run->n_spans * (size_t)PKG_IDRUN_READ_BYTES) : NULL;
  char last[FZIP_ID_MAX + 1] = ""; /* "" is no id */
  bool ok = false;

  if (!src || !heap || (run->n_spans && !bufs)) {
    fzip_error_oom(error, "duplicate-id check");
    goto done;
  }
  for (size_t i = 0; i < n_src; i++) {
    if (i < run->n_spans) {
      src[i].buf = bufs + i * (size_t)PKG_IDRUN_READ_BYTES;
      src[i].off = run->spans[i].off;
      src[i].end = run->spans[i].end;
    }
    if (!source_next(run, &src[i], error))
      goto done;
    if (src[i].cur)
      heap[n_heap++] = &src[i];
  }
  for (size_t i = n_heap / 2; i-- > 0;)
    sift_down(heap, n_heap, i);
  while (n_heap) {
    source_t *s = heap[0];
    if (strcmp(s->cur, last) == 0) {
      ++*n_dups;
      if (dup && !dup(ctx, s->cur, error))
        goto done;
    } else {
      memcpy(last, s->cur, strlen(s->cur) + 1);
    }
    if (!source_next(run, s, error))
      goto done;
    if (!s->cur)
      heap[0] = heap[--n_heap];
    sift_down(heap, n_heap, 0);
  }
  ok = true;
done:
  free(bufs);
  free(heap);
  free(src);
  return ok;
}

bool pkg_idrun_finish(uint64_t *n_dups, pkg_idrun_t *run, pkg_idrun_dup_fn dup, void *ctx,
                      fzip_error_t *error) {
  uint64_t dups = 0;
  bool ok;
  if (n_dups)
    *n_dups = 0;
  if (run->finished)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_FAILED_PRECONDITION,
                          "duplicate-id check: finished twice");
  if (pkg_idrun_replay_wanted(run))
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_FAILED_PRECONDITION,
                          "duplicate-id check: %llu ids of the sorted prefix not replayed",
                          (unsigned long long)pkg_idrun_replay_wanted(run));
  run->finished = true;
  if (!run->external)
    return true;
  qsort(run->ids, run->n_ids, sizeof *run->ids, cmp_ids);
  ok = merge(&dups, run, dup, ctx, error);
  if (n_dups)
    *n_dups = dups;
  return ok;
}
