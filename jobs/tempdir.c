/* tempdir: see tempdir.h.  The lock file is opened once and its
 * descriptor kept (never closed before destroy): closing any descriptor of
 * it would not drop a flock, but keeping one is what holds it. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "tempdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fzip_log.h"
#include "fzip_util.h"

#define TEMPDIR_NFTW_FDS 16 /* descriptors nftw may hold open at once */

struct tempdir {
  char root[PATH_MAX];
  char path[PATH_MAX];
  int lock_fd;
};

static const char *const LEGACY_PREFIXES[] = {"fzip-import-", "fzip-package-", "fzip-pkg-"};

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  if (remove(path) != 0 && errno != ENOENT)
    fzip_log(FZIP_LOG_WARN, "tempdir", "cannot remove a leftover temporary", "path", path,
             "error", strerror(errno), NULL);
  return 0; /* go on with the rest */
}

/* rm -r without following symlinks. */
static void remove_tree(const char *path) {
  nftw(path, remove_one, TEMPDIR_NFTW_FDS, FTW_DEPTH | FTW_PHYS);
}

bool tempdir_new(tempdir_t **out, const char *root, fzip_error_t *error) {
  tempdir_t *t = calloc(1, sizeof *t);
  char lock[PATH_MAX];
  bool made = false; /* the directory exists: cleanup removes it */
  bool ok = false;

  *out = NULL;
  if (!t) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  t->lock_fd = -1;
  snprintf(t->root, sizeof t->root, "%s", fzip_tmp_root(root));
  if ((size_t)snprintf(t->path, sizeof t->path, "%s/" TEMPDIR_PREFIX "%ld-XXXXXX", t->root,
                       (long)getpid()) >= sizeof t->path - 64) {
    fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                   "temp dir path too long: %s", t->root);
    goto done;
  }
  if (!mkdtemp(t->path)) {
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "cannot create a directory in %s: %s",
                   t->root, strerror(errno));
    goto done;
  }
  made = true;
  snprintf(lock, sizeof lock, "%s/" TEMPDIR_LOCK_NAME, t->path);
  t->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (t->lock_fd < 0 || flock(t->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "cannot lock %s: %s", lock,
                   strerror(errno));
    goto done;
  }
  *out = t;
  t = NULL;
  ok = true;
done:
  if (t && made)
    tempdir_destroy(t);
  else
    free(t);
  return ok;
}

const char *tempdir_path(const tempdir_t *t) { return t->path; }
const char *tempdir_root(const tempdir_t *t) { return t->root; }

void tempdir_destroy(tempdir_t *t) {
  if (!t)
    return;
  remove_tree(t->path); /* the lock goes last, with the descriptor */
  if (t->lock_fd >= 0)
    close(t->lock_fd);
  free(t);
}

/* ---- the sweep ---------------------------------------------------------- */

static bool is_legacy_name(const char *name) {
  for (size_t i = 0; i < sizeof LEGACY_PREFIXES / sizeof LEGACY_PREFIXES[0]; i++)
    if (strncmp(name, LEGACY_PREFIXES[i], strlen(LEGACY_PREFIXES[i])) == 0)
      return true;
  return false;
}

static int64_t mtime_ms(const struct stat *st) {
  return (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
}

/* A private dir: removed when its owner's lock can be taken (the owner is
 * gone), or when it never got a lock file and is past the creation grace. */
static bool sweep_private(const char *path, const struct stat *st, int64_t now) {
  char lock[PATH_MAX];
  int fd;
  bool removed = false;

  snprintf(lock, sizeof lock, "%s/" TEMPDIR_LOCK_NAME, path);
  fd = open(lock, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT && now - mtime_ms(st) > TEMPDIR_CREATING_GRACE_MS) {
      remove_tree(path);
      removed = true;
    }
    return removed;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
    /* Held by us now: nobody else can take it while we remove it. */
    remove_tree(path);
    removed = true;
  }
  close(fd);
  return removed;
}

bool tempdir_sweep(tempdir_sweep_stats_t *stats, const char *root, int64_t legacy_age_ms,
                   fzip_error_t *error) {
  const char *dir = fzip_tmp_root(root);
  DIR *d = opendir(dir);
  struct dirent *e;
  int64_t now = fzip_now_ms();

  memset(stats, 0, sizeof *stats);
  if (!d)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "cannot read temp dir %s: %s",
                          dir, strerror(errno));
  while ((e = readdir(d)) != NULL) {
    char path[PATH_MAX];
    struct stat st;
    bool private_dir = strncmp(e->d_name, TEMPDIR_PREFIX, strlen(TEMPDIR_PREFIX)) == 0;

    if (!private_dir && !is_legacy_name(e->d_name))
      continue;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path ||
        lstat(path, &st) != 0)
      continue;
    if (private_dir) {
      if (S_ISDIR(st.st_mode) && sweep_private(path, &st, now)) {
        stats->dirs++;
        fzip_log(FZIP_LOG_INFO, "tempdir", "removed a dead process's temp dir", "path", path,
                 NULL);
      }
      continue;
    }
    if (now - mtime_ms(&st) < legacy_age_ms)
      continue;
    remove_tree(path);
    stats->legacy++;
    fzip_log(FZIP_LOG_INFO, "tempdir", "removed an old temporary", "path", path, NULL);
  }
  closedir(d);
  return true;
}
