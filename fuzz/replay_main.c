/*
 * replay_main: runs a libFuzzer target over a saved corpus without
 * libFuzzer, so that with gcc every fuzz target still executes its corpus
 * as an ordinary test (under ASan + UBSan when FZIP_SANITIZE is on).
 *
 *   fuzz_<name> DIR_OR_FILE...
 *
 * Each regular file is read whole (at most REPLAY_INPUT_MAX bytes: corpus
 * files are small by design) and passed to LLVMFuzzerTestOneInput once.
 * A crash is the failure signal, as under libFuzzer; an unreadable or
 * oversized input, or an empty corpus, also fails the run.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REPLAY_INPUT_MAX (4 * 1024 * 1024)
#define REPLAY_PATH_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  long n;
  int rc = -1;

  if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > REPLAY_INPUT_MAX ||
      fseek(f, 0, SEEK_SET) != 0) {
    fprintf(stderr, "replay: cannot read %s (or larger than %d bytes)\n", path,
            REPLAY_INPUT_MAX);
    goto done;
  }
  /* One byte more than needed so that an empty input still has a buffer. */
  if (!(buf = malloc((size_t)n + 1)) || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fprintf(stderr, "replay: reading %s failed\n", path);
    goto done;
  }
  LLVMFuzzerTestOneInput(buf, (size_t)n);
  rc = 0;
done:
  free(buf);
  if (f)
    fclose(f);
  return rc;
}

/* Replays a file, or every regular file of a directory; counts inputs. */
static int replay_path(const char *path, int *count) {
  struct stat sb;
  struct dirent *de;
  char child[REPLAY_PATH_MAX];
  DIR *d;
  int rc = 0;

  if (stat(path, &sb) != 0) {
    fprintf(stderr, "replay: %s not found\n", path);
    return -1;
  }
  if (!S_ISDIR(sb.st_mode)) {
    (*count)++;
    return replay_file(path);
  }
  if (!(d = opendir(path)))
    return -1;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    if ((size_t)snprintf(child, sizeof child, "%s/%s", path, de->d_name) >= sizeof child ||
        stat(child, &sb) != 0 || !S_ISREG(sb.st_mode))
      continue;
    (*count)++;
    if (replay_file(child) != 0)
      rc = -1;
  }
  closedir(d);
  return rc;
}

int main(int argc, char **argv) {
  int count = 0, rc = 0;
  for (int i = 1; i < argc; i++) {
    if (replay_path(argv[i], &count) != 0)
      rc = 1;
  }
  fprintf(stderr, "replayed %d inputs\n", count);
  return rc || count == 0;
}
