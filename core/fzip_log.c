/* fzip_log: see fzip_log.h.  Lines are built in a fixed buffer (longer
 * values are cut with "..." rather than growing without bound) and written
 * with a single write(2), so concurrent lines never interleave. */
#include "fzip_log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Kept free at the end of the buffer for the closing "}\n". */
#define LOG_CLOSE_RESERVE 8
/* A string stops taking characters this close to the end: room for its
 * last escape (6 bytes), the "..." and the closing quote. */
#define LOG_CUT_MARGIN 32
/* An int64 in decimal with its sign, and the NUL. */
#define LOG_NUMBER_MAX 24
/* Bytes of the longest escape of one key byte (\u00XX). */
#define LOG_ESCAPE_MAX 6
/* The comma, the key's quotes and the colon around a pair. */
#define LOG_PAIR_EXTRA 4

static atomic_int log_level = FZIP_LOG_INFO;
/* The request id of the work this thread is doing: per thread, so that
 * concurrent handlers and jobs never see each other's. */
static _Thread_local char thread_request_id[FZIP_LOG_REQUEST_ID_MAX];
#define LOG_REQUEST_ID_KEY "request_id"
/* Indexed by fzip_log_level_t: what "level" says and what parse reads. */
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void fzip_log_set_level(fzip_log_level_t level) { atomic_store(&log_level, (int)level); }

bool fzip_log_enabled(fzip_log_level_t level) { return (int)level >= atomic_load(&log_level); }

bool fzip_log_level_parse(fzip_log_level_t *out, const char *s) {
  for (int i = 0; i < (int)(sizeof level_names / sizeof level_names[0]); i++) {
    if (s && strcmp(s, level_names[i]) == 0) {
      *out = (fzip_log_level_t)i;
      return true;
    }
  }
  return false;
}

void fzip_log_set_request_id(const char *id) {
  snprintf(thread_request_id, sizeof thread_request_id, "%s", id ? id : "");
}

const char *fzip_log_request_id(void) { return thread_request_id; }

typedef struct {
  char buf[FZIP_LOG_LINE_MAX];
  size_t len;
} line_t;

static void put_raw(line_t *l, const char *s, size_t n) {
  size_t room = sizeof l->buf - LOG_CLOSE_RESERVE - l->len;
  if (n > room)
    n = room;
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

static bool line_full(const line_t *l) { return l->len > sizeof l->buf - LOG_CUT_MARGIN; }

static void put_str(line_t *l, const char *s) {
  static const char hex[] = "0123456789abcdef";
  put_raw(l, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (line_full(l)) {
      put_raw(l, "...", 3);
      break;
    }
    if (*p == '"' || *p == '\\') {
      char esc[2] = {'\\', (char)*p};
      put_raw(l, esc, 2);
    } else if (*p < 0x20) {
      char esc[LOG_ESCAPE_MAX] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
      put_raw(l, esc, sizeof esc);
    } else {
      put_raw(l, (const char *)p, 1);
    }
  }
  put_raw(l, "\"", 1);
}

/* ts, level, component and msg: what every line starts with. */
static void line_begin(line_t *l, fzip_log_level_t level, const char *component,
                       const char *msg) {
  char ts[96];
  struct timespec now;
  struct tm tm;

  l->len = 0;
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
  put_raw(l, "{\"ts\":", 6);
  put_str(l, ts);
  put_raw(l, ",\"level\":", 9);
  put_str(l, level_names[level]);
  put_raw(l, ",\"component\":", 13);
  put_str(l, component);
  put_raw(l, ",\"msg\":", 7);
  put_str(l, msg);
}

/* Adds ,"key":value; false (nothing added) once the line is full: half a
 * pair would not be JSON, so the pairs left are dropped. */
static bool put_field(line_t *l, const fzip_log_field_t *f) {
  char num[LOG_NUMBER_MAX];
  int n;

  if (line_full(l))
    return false;
  /* A number or boolean is never cut (a cut one would not be JSON): it
   * goes only with room for its key escaped in full. */
  if (f->type != FZIP_LOG_STR &&
      sizeof l->buf - LOG_CLOSE_RESERVE - l->len < LOG_PAIR_EXTRA + LOG_NUMBER_MAX +
                                                       LOG_ESCAPE_MAX * strlen(f->key ? f->key : ""))
    return false;
  put_raw(l, ",", 1);
  put_str(l, f->key);
  put_raw(l, ":", 1);
  switch (f->type) {
  case FZIP_LOG_INT:
    n = snprintf(num, sizeof num, "%" PRId64, f->num);
    put_raw(l, num, (size_t)n);
    break;
  case FZIP_LOG_BOOL:
    if (f->flag)
      put_raw(l, "true", sizeof "true" - 1);
    else
      put_raw(l, "false", sizeof "false" - 1);
    break;
  default:
    put_str(l, f->str);
    break;
  }
  return true;
}

/* The thread's request id, when it has one and the line brings none of
 * its own: it goes first after msg, so a full line never drops it. */
static void put_thread_request_id(line_t *l, bool line_has_own) {
  if (line_has_own || thread_request_id[0] == '\0')
    return;
  fzip_log_field_t f = fzip_log_str(LOG_REQUEST_ID_KEY, thread_request_id);
  put_field(l, &f);
}

static bool is_request_id_key(const char *key) {
  return key && strcmp(key, LOG_REQUEST_ID_KEY) == 0;
}

static void line_end(line_t *l) {
  memcpy(l->buf + l->len, "}\n", 2);
  l->len += 2;
  if (write(STDERR_FILENO, l->buf, l->len) < 0) {
    /* Nowhere left to report a failure to log. */
  }
}

/* True when the rest of the key/value list has a request_id key; reads
 * (uses up) *ap, so pass a copy. */
static bool va_has_request_id(va_list *ap) {
  for (;;) {
    const char *key = va_arg(*ap, const char *);
    if (!key)
      return false;
    (void)va_arg(*ap, const char *);
    if (is_request_id_key(key))
      return true;
  }
}

void fzip_log(fzip_log_level_t level, const char *component, const char *msg, ...) {
  line_t l;
  va_list ap;
  va_list scan;

  if (!fzip_log_enabled(level))
    return;
  line_begin(&l, level, component, msg);
  va_start(ap, msg);
  va_copy(scan, ap);
  put_thread_request_id(&l, va_has_request_id(&scan));
  va_end(scan);
  for (;;) {
    const char *key = va_arg(ap, const char *);
    if (!key)
      break;
    fzip_log_field_t f = fzip_log_str(key, va_arg(ap, const char *));
    if (!put_field(&l, &f))
      break;
  }
  va_end(ap);
  line_end(&l);
}

void fzip_log_fields(fzip_log_level_t level, const char *component, const char *msg,
                     const fzip_log_field_t *fields, size_t n) {
  line_t l;

  if (!fzip_log_enabled(level))
    return;
  line_begin(&l, level, component, msg);
  bool has_own = false;
  for (size_t i = 0; i < n && !has_own; i++)
    has_own = is_request_id_key(fields[i].key);
  put_thread_request_id(&l, has_own);
  for (size_t i = 0; i < n && put_field(&l, &fields[i]); i++)
    ;
  line_end(&l);
}
