/*
 * pkg_spool: see pkg_spool.h.
 *
 * The file is written and read through one stdio stream with a
 * PKG_SPOOL_BUFFER buffer (documents of a few hundred bytes would
 * otherwise be a system call each); each kind's documents are one span
 * of it from off[kind], count[kind] documents in the order they were put.
 */
#include "pkg_spool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pkg_tmp.h"

#define SPOOL_WHAT "entity spool" /* names the spool in its errors */
#define SPOOL_DOC_MIN 5u /* an empty BSON document: length and terminator */

struct pkg_spool {
  FILE *file;
  char *vbuf;      /* PKG_SPOOL_BUFFER, the stream's */
  char *temp_dir;
  bool reading;    /* rewound once: no more puts */
  int last_kind;   /* the kind put last, -1 before the first */
  uint64_t end;    /* bytes written */
  uint64_t off[FZIP_KIND_COUNT], count[FZIP_KIND_COUNT];
  /* reading: the kind's documents not read yet, and the last one */
  uint64_t left;
  uint8_t *doc_buf;
  size_t doc_cap;
  bson_t doc;
};

/* errno after a failed file call, said with the directory the file is in. */
static bool file_error(fzip_error_t *error, const pkg_spool_t *s, const char *what) {
  return fzip_tmp_error(error, SPOOL_WHAT, what, s->temp_dir);
}

bool pkg_spool_new(pkg_spool_t **out, const char *temp_dir, fzip_error_t *error) {
  pkg_spool_t *s = NULL;

  *out = NULL;
  /* The struct holds a bson_t, which libbson aligns beyond what calloc
   * promises (UBSan: misaligned member access). */
  if (posix_memalign((void **)&s, _Alignof(pkg_spool_t), sizeof *s) != 0)
    return fzip_error_oom(error, SPOOL_WHAT);
  memset(s, 0, sizeof *s);
  s->last_kind = -1;
  if (!(s->temp_dir = strdup(fzip_tmp_root(temp_dir))) || !(s->vbuf = malloc(PKG_SPOOL_BUFFER))) {
    fzip_error_oom(error, SPOOL_WHAT);
    goto fail;
  }
  if (!pkg_tmp_file(&s->file, s->temp_dir, "fzip-spool-", SPOOL_WHAT, error))
    goto fail;
  errno = 0;
  if (setvbuf(s->file, s->vbuf, _IOFBF, PKG_SPOOL_BUFFER) != 0) {
    file_error(error, s, "buffering");
    goto fail;
  }
  *out = s;
  return true;
fail:
  pkg_spool_destroy(s);
  return false;
}

bool pkg_spool_put(pkg_spool_t *s, fzip_kind_t kind, const bson_t *doc, fzip_error_t *error) {
  if (s->reading || (unsigned)kind >= FZIP_KIND_COUNT || (int)kind < s->last_kind)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          SPOOL_WHAT ": %s put after %s",
                          (unsigned)kind < FZIP_KIND_COUNT ? fzip_kind_info(kind)->name : "?",
                          s->reading ? "the reading began" : "a later kind");
  if (doc->len > PKG_SPOOL_DOC_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_RESOURCE_EXHAUSTED,
                          SPOOL_WHAT ": a %s of %u bytes, more than %u",
                          fzip_kind_info(kind)->name, doc->len, PKG_SPOOL_DOC_MAX);
  if ((int)kind != s->last_kind) {
    s->last_kind = (int)kind;
    s->off[kind] = s->end;
  }
  errno = 0;
  if (fwrite(bson_get_data(doc), 1, doc->len, s->file) != doc->len)
    return file_error(error, s, "writing");
  s->end += doc->len;
  s->count[kind]++;
  return true;
}

uint64_t pkg_spool_count(const pkg_spool_t *s, fzip_kind_t kind) {
  return (unsigned)kind < FZIP_KIND_COUNT ? s->count[kind] : 0;
}

bool pkg_spool_rewind(pkg_spool_t *s, fzip_kind_t kind, fzip_error_t *error) {
  if ((unsigned)kind >= FZIP_KIND_COUNT)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          SPOOL_WHAT ": bad kind");
  s->reading = true;
  s->left = s->count[kind];
  errno = 0;
  /* fseeko flushes what is still buffered for writing first. */
  if (s->left && fseeko(s->file, (off_t)s->off[kind], SEEK_SET) != 0)
    return file_error(error, s, "seeking in");
  return true;
}

static bool room(pkg_spool_t *s, size_t len, fzip_error_t *error) {
  if (len <= s->doc_cap)
    return true;
  uint8_t *b = realloc(s->doc_buf, len);
  if (!b)
    return fzip_error_oom(error, SPOOL_WHAT);
  s->doc_buf = b;
  s->doc_cap = len;
  return true;
}

bool pkg_spool_next(pkg_spool_t *s, const bson_t **doc, fzip_error_t *error) {
  uint8_t head[4];
  uint32_t len;

  *doc = NULL;
  if (!s->reading || s->left == 0)
    return false;
  errno = 0;
  if (fread(head, 1, sizeof head, s->file) != sizeof head)
    return file_error(error, s, "reading");
  len = (uint32_t)head[0] | (uint32_t)head[1] << 8 | (uint32_t)head[2] << 16 |
        (uint32_t)head[3] << 24;
  /* The file is ours, but a length is checked before it sizes a buffer. */
  if (len < SPOOL_DOC_MIN || len > PKG_SPOOL_DOC_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL,
                          SPOOL_WHAT ": a document of %u bytes in its temporary file", len);
  if (!room(s, len, error))
    return false;
  memcpy(s->doc_buf, head, sizeof head);
  errno = 0;
  if (fread(s->doc_buf + sizeof head, 1, len - sizeof head, s->file) != len - sizeof head)
    return file_error(error, s, "reading");
  if (!bson_init_static(&s->doc, s->doc_buf, len))
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL,
                          SPOOL_WHAT ": a broken document in its temporary file");
  s->left--;
  *doc = &s->doc;
  return true;
}

void pkg_spool_destroy(pkg_spool_t *s) {
  if (!s)
    return;
  if (s->file)
    fclose(s->file);
  free(s->vbuf);
  free(s->temp_dir);
  free(s->doc_buf);
  free(s);
}
