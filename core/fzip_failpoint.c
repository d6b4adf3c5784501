/* fzip_failpoint: see fzip_failpoint.h.  The specification is parsed once,
 * on first use, into a fixed table; hits are counted atomically. */
#include "fzip_failpoint.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fzip_util.h"

/* One "name=action" entry of the variable, a hold's path included; a
 * longer one is ignored (tests/lib/fzipd_harness.py's Hold checks). */
#define FAILPOINT_SPEC_MAX 512
#define ACTION_ERROR "error@"
#define ACTION_DELAY "delay:"
#define ACTION_HOLD "hold:"
#define HOLD_POLL_MS 10

typedef struct {
  char name[FZIP_FAILPOINT_NAME_MAX];
  long error_at; /* 0: never fails */
  long delay_ms;
  char hold_path[FAILPOINT_SPEC_MAX]; /* "": never holds */
  long hold_from;                     /* the first hit that holds */
  atomic_long hits;
} failpoint_t;

static failpoint_t points[FZIP_FAILPOINTS_MAX];
static int n_points;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* "PATH" or "PATH@N" (the last '@'); a hit number below 1 is 1. */
static void parse_hold(failpoint_t *p, const char *arg) {
  const char *at = strrchr(arg, '@');
  size_t len = at ? (size_t)(at - arg) : strlen(arg);
  memcpy(p->hold_path, arg, len);
  p->hold_path[len] = '\0';
  p->hold_from = at ? strtol(at + 1, NULL, 10) : 1;
}

static void parse_one(const char *spec, size_t len) {
  char buf[FAILPOINT_SPEC_MAX];
  char *eq, *action;
  failpoint_t *p;

  if (len == 0 || len >= sizeof buf || n_points == FZIP_FAILPOINTS_MAX)
    return;
  memcpy(buf, spec, len);
  buf[len] = '\0';
  eq = strchr(buf, '=');
  if (!eq)
    return;
  *eq = '\0';
  action = eq + 1;
  p = NULL;
  for (int i = 0; i < n_points; i++)
    if (strcmp(points[i].name, buf) == 0)
      p = &points[i];
  if (!p) {
    p = &points[n_points++];
    snprintf(p->name, sizeof p->name, "%s", buf);
  }
  if (strncmp(action, ACTION_ERROR, strlen(ACTION_ERROR)) == 0)
    p->error_at = strtol(action + strlen(ACTION_ERROR), NULL, 10);
  else if (strncmp(action, ACTION_DELAY, strlen(ACTION_DELAY)) == 0)
    p->delay_ms = strtol(action + strlen(ACTION_DELAY), NULL, 10);
  else if (strncmp(action, ACTION_HOLD, strlen(ACTION_HOLD)) == 0)
    parse_hold(p, action + strlen(ACTION_HOLD));
}

static void parse(void) {
  const char *spec = getenv("FZIP_FAILPOINTS");
  while (spec && *spec) {
    size_t len = strcspn(spec, ",");
    parse_one(spec, len);
    spec += len + (spec[len] == ',');
  }
}

bool fzip_failpoint(const char *name, fzip_error_t *error) {
  pthread_once(&once, parse);
  for (int i = 0; i < n_points; i++) {
    failpoint_t *p = &points[i];
    long hit;
    if (strcmp(p->name, name) != 0)
      continue;
    hit = atomic_fetch_add(&p->hits, 1) + 1;
    if (p->delay_ms > 0)
      fzip_sleep_ms(p->delay_ms);
    if (p->hold_path[0] && hit >= p->hold_from)
      while (access(p->hold_path, F_OK) != 0)
        fzip_sleep_ms(HOLD_POLL_MS);
    if (p->error_at > 0 && hit >= p->error_at)
      return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_UNAVAILABLE,
                            "failpoint %s: injected failure (hit %ld)", name, hit);
  }
  return true;
}
