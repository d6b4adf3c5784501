/* fzip_failpoint: see fzip_failpoint.h.  The specification is parsed once,
 * on first use, into a fixed table; hits are counted atomically. */
#include "fzip_failpoint.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One "name=action" entry of the variable; a longer one is ignored. */
#define FAILPOINT_SPEC_MAX 128
#define ACTION_ERROR "error@"
#define ACTION_DELAY "delay:"

typedef struct {
  char name[FZIP_FAILPOINT_NAME_MAX];
  long error_at; /* 0: never fails */
  long delay_ms;
  long delay_from; /* the first hit that sleeps (1 unless "delay:MS@N") */
  atomic_long hits;
} failpoint_t;

static failpoint_t points[FZIP_FAILPOINTS_MAX];
static int n_points;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* "MS" or "MS@N". */
static void parse_delay(failpoint_t *p, const char *arg) {
  char *end;
  p->delay_ms = strtol(arg, &end, 10);
  p->delay_from = *end == '@' ? strtol(end + 1, NULL, 10) : 1;
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
    parse_delay(p, action + strlen(ACTION_DELAY));
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
    if (p->delay_ms > 0 && hit >= p->delay_from) {
      struct timespec ts = {p->delay_ms / 1000, (p->delay_ms % 1000) * 1000000L};
      nanosleep(&ts, NULL);
    }
    if (p->error_at > 0 && hit >= p->error_at)
      return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_UNAVAILABLE,
                            "failpoint %s: injected failure (hit %ld)", name, hit);
  }
  return true;
}
