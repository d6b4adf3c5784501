/*
 * cli_help: see cli_help.h.  Each topic is a row: name, an optional
 * alias, a one-line summary and the text.  The environment topic ends
 * with the variables of the global options, printed from their table
 * (cli_global_opts) so that the list cannot drift from what is parsed.
 */
#include "cli_help.h"

#include <string.h>

#include "cli_args.h"
#include "cli_ctx.h"

typedef struct {
  const char *name;
  const char *alias;   /* another name for the topic, or NULL */
  const char *summary; /* one line for `fzip help` */
  const char *text;
  void (*more)(FILE *f); /* printed after the text, or NULL */
} topic_t;

static void print_environment(FILE *f) {
  for (const cli_opt_t *o = cli_global_opts; o->name; o++)
    if (o->env)
      fprintf(f, "  %-22s %s: %s\n", o->env, o->name, o->help);
}

static const topic_t topics[] = {
    {"auth", NULL, "tokens: where fzip takes them from, what the server checks",
     "Every call carries `authorization: Bearer <JWT>`.  fzip takes the token from\n"
     "--token JWT (or FZIP_TOKEN), else from --token-file FILE (or FZIP_TOKEN_FILE;\n"
     "one line, and it keeps the token out of `ps`).  The server checks the signature\n"
     "(HS256, RS256 or ES256, as it is configured), `exp` (required), `nbf`, `iat`\n"
     "and, when configured, `iss` and `aud`; the token's `sub` is your user id and you\n"
     "only ever see your own data.  A missing or rejected token exits 5 with\n"
     "UNAUTHENTICATED and the reason (expired, bad signature, wrong audience...).\n"
     "\n"
     "For a local fzipd, mint a development token from the secret it runs with:\n"
     "  export FZIP_TOKEN=$(fzipd token --secret-file dev.secret --user dev-user)\n",
     NULL},
    {"tls", NULL, "TLS and mutual TLS",
     "Without --tls-ca fzip speaks plaintext gRPC.  --tls-ca FILE (a PEM CA bundle)\n"
     "turns TLS on: the server's certificate must chain to it and name the host in\n"
     "--addr, or the name given with --tls-server-name.  For mutual TLS add\n"
     "--tls-cert FILE and --tls-key FILE (PEM; both need --tls-ca).  A plaintext\n"
     "client against a TLS server, an unknown CA or a wrong name exit 4 (UNAVAILABLE).\n"
     "\n"
     "  fzip --addr fzip.example:443 --tls-ca ca.pem data summary\n",
     NULL},
    {"output", "json", "text and --json output, progress, error lines",
     "Results go to stdout: `name: value` lines by default, or with --json (or\n"
     "FZIP_JSON=1) one JSON object per result (per job, listed item, download), with\n"
     "proto field names, enums by name and 64-bit integers as decimal strings, as the\n"
     "proto3 JSON mapping writes them (`jq 'tonumber'` where arithmetic is needed).\n"
     "Progress goes to stderr: a redrawn line on a terminal, plain lines at most\n"
     "every 2 s otherwise, nothing with --quiet.  Errors are one line on stderr:\n"
     "`fzip: <gRPC status>: <the server's message>`, with a hint where one helps.\n"
     "\n"
     "  id=$(fzip export create --wait --json | tail -1 | jq -r .export_id)\n",
     NULL},
    {"exit-codes", NULL, "what each exit status means",
     "Exit status: 0 ok; 1 the server refused or the job failed; 2 usage error;\n"
     "3 verification failed (checksum, package check); 4 server unreachable or timed out;\n"
     "5 not authenticated or not allowed; 130 interrupted (Ctrl-C) while following a\n"
     "job: the job is not cancelled, it continues on the server (`fzip export|import\n"
     "watch ID` re-attaches).\n",
     NULL},
    {"packages", NULL, "FZIP packages: download, upload, offline checks",
     "An FZIP package is a ZIP with a manifest (format 1.0) and a sha256 per entry.\n"
     "`fzip export download ID -o FILE` writes FILE.part and renames it to FILE only\n"
     "when size and sha256 match what the server announced (exit 3 if not); run it\n"
     "again to resume.  `fzip import upload FILE` sends size and sha256 first; a\n"
     "broken upload goes on with --resume ID.  `fzip package inspect|verify FILE`\n"
     "need no server: they run the server's own reader and validator (archive,\n"
     "schema, references, checksums) and exit 3 when the package fails.\n"
     "An encrypted package (export create --recipient/--passphrase) is opened with\n"
     "--identity FILE (`fzip key generate`) or --passphrase (FZIP_PASSPHRASE, else\n"
     "asked) by package inspect|verify and import upload, on this machine only.\n"
     "An incremental package (export create --incremental) is restored with its base:\n"
     "`fzip package apply BASE INC1 [INC2 ...] -o FILE` writes the complete package\n"
     "of the chain (exit 3, nothing written, when the chain does not hold together).\n",
     NULL},
    {"environment", NULL, "environment variables (flags win over them)",
     "Global options can come from the environment; a flag on the line wins.\n",
     print_environment},
};
#define N_TOPICS (sizeof topics / sizeof topics[0])

static const topic_t *find_topic(const char *name) {
  for (size_t i = 0; i < N_TOPICS; i++)
    if (strcmp(topics[i].name, name) == 0 ||
        (topics[i].alias && strcmp(topics[i].alias, name) == 0))
      return &topics[i];
  return NULL;
}

bool cli_help_print_topic(FILE *f, const char *name) {
  const topic_t *t = find_topic(name);
  if (!t)
    return false;
  fputs(t->text, f);
  if (t->more)
    t->more(f);
  return true;
}

void cli_help_print_topics(FILE *f) {
  fprintf(f, "Help topics (`fzip help TOPIC`):\n");
  for (size_t i = 0; i < N_TOPICS; i++) {
    char left[32];
    snprintf(left, sizeof left, "%s%s%s", topics[i].name, topics[i].alias ? ", " : "",
             topics[i].alias ? topics[i].alias : "");
    fprintf(f, "  %-16s %s\n", left, topics[i].summary);
  }
}

const char *cli_help_topic_word(size_t i) {
  for (size_t t = 0; t < N_TOPICS; t++) {
    if (i == 0)
      return topics[t].name;
    i--;
    if (topics[t].alias) {
      if (i == 0)
        return topics[t].alias;
      i--;
    }
  }
  return NULL;
}
