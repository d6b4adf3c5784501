/*
 * cli_progress: see cli_progress.h.  Redraws are throttled (TTY_INTERVAL)
 * because a fast download calls in for every chunk; the rate is this
 * run's bytes over this run's time, which is what the ETA needs.
 */
#include "cli_progress.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fzip_util.h"

#define LABEL_MAX 64
#define BAR_WIDTH 24
#define TTY_INTERVAL_MS 100
#define PLAIN_INTERVAL_MS 2000
#define STATE_MAX 96

struct cli_progress {
  cli_progress_mode_t mode;
  char label[LABEL_MAX];
  int64_t started_ms;
  int64_t last_ms;
  bool drawn;          /* a tty line is on screen */
  char last_state[STATE_MAX]; /* job: status/phase last printed */
  int last_percent;
};

cli_progress_t *cli_progress_new(cli_progress_mode_t mode, const char *label) {
  cli_progress_t *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->mode = mode;
  snprintf(p->label, sizeof p->label, "%s", label);
  p->started_ms = fzip_monotonic_ms();
  p->last_percent = -1;
  return p;
}

void cli_progress_destroy(cli_progress_t *p) {
  if (!p)
    return;
  if (p->mode == CLI_PROGRESS_TTY && p->drawn)
    fputc('\n', stderr);
  free(p);
}

static void human_bytes(char *out, size_t cap, double v) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  size_t u = 0;
  while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
    v /= 1024;
    u++;
  }
  snprintf(out, cap, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

static void bar(char *out, int percent) {
  int fill = percent * BAR_WIDTH / 100;
  for (int i = 0; i < BAR_WIDTH; i++)
    out[i] = i < fill ? '#' : '.';
  out[BAR_WIDTH] = '\0';
}

/* Whether to draw now: always the final state, else throttled. */
static bool due(cli_progress_t *p, bool final) {
  int64_t now = fzip_monotonic_ms();
  int64_t every = p->mode == CLI_PROGRESS_TTY ? TTY_INTERVAL_MS : PLAIN_INTERVAL_MS;
  if (p->mode == CLI_PROGRESS_OFF || (!final && p->last_ms && now - p->last_ms < every))
    return false;
  p->last_ms = now;
  return true;
}

void cli_progress_bytes(cli_progress_t *p, int64_t done, int64_t total, int64_t start) {
  char d[24], t[24], r[24], eta[24] = "--:--", b[BAR_WIDTH + 1];
  if (!p || !due(p, total > 0 && done >= total))
    return;
  double secs = (double)(fzip_monotonic_ms() - p->started_ms) / 1000.0;
  double rate = secs > 0 ? (double)(done - start) / secs : 0;
  int percent = total > 0 ? (int)(done * 100 / total) : 0;
  human_bytes(d, sizeof d, (double)done);
  human_bytes(t, sizeof t, (double)total);
  human_bytes(r, sizeof r, rate);
  if (rate > 0 && total > done) {
    int64_t left = (int64_t)((double)(total - done) / rate);
    snprintf(eta, sizeof eta, "%" PRId64 ":%02" PRId64, left / 60, left % 60);
  } else if (total > 0 && done >= total) {
    snprintf(eta, sizeof eta, "done");
  }
  if (p->mode == CLI_PROGRESS_TTY) {
    bar(b, percent);
    fprintf(stderr, "\r%s [%s] %3d%% %s/%s %s/s ETA %s\033[K", p->label, b, percent, d, t, r,
            eta);
    p->drawn = true;
  } else {
    fprintf(stderr, "%s: %" PRId64 "/%" PRId64 " bytes (%d%%) %s/s\n", p->label, done, total,
            percent, r);
  }
  fflush(stderr);
}

void cli_progress_job(cli_progress_t *p, int percent, const char *status, const char *phase) {
  char state[STATE_MAX], b[BAR_WIDTH + 1];
  if (!p || p->mode == CLI_PROGRESS_OFF)
    return;
  snprintf(state, sizeof state, "%s%s%s", status, phase[0] ? " " : "", phase);
  bool changed = strcmp(state, p->last_state) != 0;
  if (p->mode == CLI_PROGRESS_PLAIN && !changed && percent == p->last_percent)
    return;
  if (!changed && !due(p, false))
    return;
  p->last_ms = fzip_monotonic_ms();
  snprintf(p->last_state, sizeof p->last_state, "%s", state);
  p->last_percent = percent;
  if (p->mode == CLI_PROGRESS_TTY) {
    bar(b, percent < 0 ? 0 : percent > 100 ? 100 : percent);
    fprintf(stderr, "\r%s [%s] %3d%% %s\033[K", p->label, b, percent, state);
    p->drawn = true;
  } else {
    fprintf(stderr, "%s: %s %d%%\n", p->label, state, percent);
  }
  fflush(stderr);
}
