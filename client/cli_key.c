/*
 * cli_key: see cli_key.h.  Key files are one line of text
 * (pkgs_key_format): the secret one written 0600 and never overwritten,
 * the public one beside it as FILE.pub.
 */
#include "cli_key.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "fzip_util.h"

#define PUB_SUFFIX ".pub"

static bool usage(fzip_error_t *error, const char *msg, const char *arg) {
  return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT, "%s%s", msg,
                        arg ? arg : "");
}

/* ---- passphrase ----------------------------------------------------------- */

/* One line from the terminal with echo off. */
static bool prompt_line(char out[PKGS_PASSPHRASE_MAX + 1], const char *prompt,
                        fzip_error_t *error) {
  FILE *tty = fopen("/dev/tty", "r+");
  struct termios old, quiet;
  bool restore = false, ok = false;
  if (!tty)
    return usage(error, "a passphrase is needed: set " CLI_KEY_PASSPHRASE_ENV
                        " (no terminal to ask on)", NULL);
  fputs(prompt, tty);
  fflush(tty);
  if (tcgetattr(fileno(tty), &old) == 0) {
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    restore = tcsetattr(fileno(tty), TCSAFLUSH, &quiet) == 0;
  }
  if (fgets(out, PKGS_PASSPHRASE_MAX + 1, tty)) {
    out[strcspn(out, "\r\n")] = '\0';
    ok = true;
  }
  if (restore)
    tcsetattr(fileno(tty), TCSAFLUSH, &old);
  fputs("\n", tty);
  fclose(tty);
  return ok || usage(error, "no passphrase read", NULL);
}

/* FZIP_PASSPHRASE, else the terminal (twice when `confirm`). */
static bool get_passphrase(char out[PKGS_PASSPHRASE_MAX + 1], bool confirm, fzip_error_t *error) {
  char again[PKGS_PASSPHRASE_MAX + 1];
  const char *env = getenv(CLI_KEY_PASSPHRASE_ENV);
  bool ok = false;
  if (env) {
    if (strlen(env) > PKGS_PASSPHRASE_MAX)
      return usage(error, CLI_KEY_PASSPHRASE_ENV " is too long", NULL);
    snprintf(out, PKGS_PASSPHRASE_MAX + 1, "%s", env);
  } else if (!prompt_line(out, "Passphrase: ", error) ||
             (confirm && !prompt_line(again, "Passphrase again: ", error))) {
    goto done;
  } else if (confirm && strcmp(out, again) != 0) {
    usage(error, "the passphrases differ", NULL);
    goto done;
  }
  ok = out[0] != '\0' || usage(error, "empty passphrase", NULL);
done:
  sodium_memzero(again, sizeof again);
  return ok;
}

/* ---- key files ------------------------------------------------------------ */

static bool read_key(uint8_t key[PKGS_KEY_LEN], const char *path, bool secret,
                     fzip_error_t *error) {
  char *text = NULL;
  size_t len = 0;
  bool ok = fzip_read_small_file(&text, &len, path, CLI_KEY_FILE_MAX, error) &&
            pkgs_key_parse(key, text, secret, error);
  if (!ok && error->domain != FZIP_DOMAIN_CONFIG) {
    char why[FZIP_ERROR_MESSAGE_MAX];
    snprintf(why, sizeof why, "%s", error->message);
    fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT, "%s: %s", path, why);
  }
  if (text) {
    sodium_memzero(text, len);
    free(text);
  }
  return ok;
}

/* Creates `path` (never replacing a file) with `text`. */
static bool write_new(const char *path, const char *text, mode_t mode, fzip_error_t *error) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  size_t len = strlen(text);
  if (fd < 0)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: %s", path,
                          strerror(errno));
  bool ok = write(fd, text, len) == (ssize_t)len;
  ok = close(fd) == 0 && ok;
  if (!ok) {
    unlink(path);
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: write failed", path);
  }
  return true;
}

static int run_generate(cli_ctx_t *ctx, const cli_args_t *args) {
  const char *path = cli_args_get(args, "--output");
  uint8_t pk[PKGS_KEY_LEN], sk[PKGS_KEY_LEN];
  char secret[PKGS_KEY_TEXT_MAX], public[PKGS_KEY_TEXT_MAX], pub_path[CLI_KEY_PATH_MAX];
  fzip_error_t error = {0};
  int rc = CLI_EXIT_OK;
  if (!path || strlen(path) + sizeof PUB_SUFFIX > sizeof pub_path) {
    usage(&error, "--output FILE is required", NULL);
    rc = cli_fail(ctx, &error);
    goto done;
  }
  snprintf(pub_path, sizeof pub_path, "%s" PUB_SUFFIX, path);
  if (!pkgs_keypair_generate(pk, sk, &error) || !pkgs_key_format(secret, sk, true) ||
      !pkgs_key_format(public, pk, false) || !write_new(path, secret, 0600, &error) ||
      !write_new(pub_path, public, 0644, &error)) {
    rc = cli_fail(ctx, &error);
    goto done;
  }
  if (ctx->json)
    printf("{\"identity\":\"%s\",\"recipient\":\"%s\",\"public_key\":\"%.*s\"}\n", path, pub_path,
           (int)strcspn(public, "\n"), public);
  else
    printf("%s", public);
  if (!ctx->quiet && !ctx->json)
    fprintf(stderr, "secret key in %s (keep it), public key in %s (give it to exporters)\n", path,
            pub_path);
done:
  sodium_memzero(sk, sizeof sk);
  sodium_memzero(secret, sizeof secret);
  return rc;
}

/* ---- export create: recipients --------------------------------------------- */

static bool add_row(cli_key_encryption_t *st, fzip_error_t *error) {
  size_t i = st->options.n_recipients;
  const pkgs_recipient_t *k = &st->keys[i];
  Fzip__V1__EncryptionRecipient *r = &st->rows[i];
  fzip__v1__encryption_recipient__init(r);
  r->x25519_public_key.data = (uint8_t *)k->public_key;
  r->x25519_public_key.len = PKGS_KEY_LEN;
  if (k->type == PKGS_STANZA_PASSPHRASE) {
    r->passphrase_salt.data = (uint8_t *)k->salt;
    r->passphrase_salt.len = PKGS_SALT_LEN;
    r->argon2_opslimit = k->opslimit;
    r->argon2_memlimit = k->memlimit;
  }
  st->row_ptrs[i] = r;
  st->options.n_recipients++;
  return pkgs_recipient_check(k, error);
}

static bool add_recipient_files(cli_key_encryption_t *st, const char *list, fzip_error_t *error) {
  char copy[CLI_KEY_PATH_MAX], *save = NULL;
  if (strlen(list) >= sizeof copy)
    return usage(error, "--recipient: list too long", NULL);
  snprintf(copy, sizeof copy, "%s", list);
  for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
    size_t i = st->options.n_recipients;
    if (i == PKGS_STANZAS_MAX)
      return usage(error, "--recipient: too many recipients", NULL);
    st->keys[i].type = PKGS_STANZA_X25519;
    if (!read_key(st->keys[i].public_key, f, false, error) || !add_row(st, error))
      return false;
  }
  return true;
}

bool cli_key_encryption(Fzip__V1__EncryptionOptions **out, cli_key_encryption_t *st,
                        const cli_args_t *args, fzip_error_t *error) {
  const char *files = cli_args_get(args, "--recipient");
  char pass[PKGS_PASSPHRASE_MAX + 1];
  bool ok = false;
  *out = NULL;
  memset(st, 0, sizeof *st);
  fzip__v1__encryption_options__init(&st->options);
  st->options.recipients = st->row_ptrs;
  if (!files && !cli_args_flag(args, "--passphrase"))
    return true;
  if (files && !add_recipient_files(st, files, error))
    return false;
  if (cli_args_flag(args, "--passphrase")) {
    size_t i = st->options.n_recipients;
    if (i == PKGS_STANZAS_MAX)
      return usage(error, "--passphrase: too many recipients", NULL);
    if (!get_passphrase(pass, true, error) ||
        !pkgs_passphrase_recipient(&st->keys[i], pass, 0, 0, error) || !add_row(st, error))
      goto done;
  }
  *out = &st->options;
  ok = true;
done:
  sodium_memzero(pass, sizeof pass);
  return ok;
}

/* ---- opening a sealed package ---------------------------------------------- */

static bool file_is_sealed(bool *sealed, const char *path, fzip_error_t *error) {
  unsigned char head[PKGS_MAGIC_LEN];
  FILE *f = fopen(path, "rb");
  if (!f)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_NOT_FOUND, "%s: %s", path,
                          strerror(errno));
  size_t n = fread(head, 1, sizeof head, f);
  fclose(f);
  *sealed = pkgs_is_sealed(head, n);
  return true;
}

static bool make_temp_dir(cli_key_plain_t *tmp, fzip_error_t *error) {
  int n = snprintf(tmp->dir, sizeof tmp->dir, "%s/fzip-open-XXXXXX", fzip_tmp_root(NULL));
  if (n < 0 || (size_t)n >= sizeof tmp->dir || !mkdtemp(tmp->dir)) {
    tmp->dir[0] = '\0';
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL,
                          "cannot make a temporary directory: %s", strerror(errno));
  }
  snprintf(tmp->path, sizeof tmp->path, "%s/package.fzip", tmp->dir);
  return true;
}

static bool open_sealed(cli_key_plain_t *tmp, const cli_args_t *args, const char *path,
                        fzip_error_t *error) {
  const char *identity = cli_args_get(args, "--identity");
  char pass[PKGS_PASSPHRASE_MAX + 1] = "";
  pkgs_identity_t id = {0};
  bool ok = false;
  if (identity && !read_key(id.secret_key, identity, true, error))
    goto done;
  id.has_secret_key = identity != NULL;
  if (cli_args_flag(args, "--passphrase")) {
    if (!get_passphrase(pass, false, error))
      goto done;
    id.passphrase = pass;
  }
  ok = make_temp_dir(tmp, error) && pkgs_open_file(tmp->path, path, &id, error);
done:
  sodium_memzero(&id, sizeof id);
  sodium_memzero(pass, sizeof pass);
  return ok;
}

int cli_key_open_package(const char **use, cli_key_plain_t *tmp, const cli_args_t *args,
                         const char *path) {
  fzip_error_t error = {0};
  bool sealed = false;
  memset(tmp, 0, sizeof *tmp);
  *use = path;
  if (!file_is_sealed(&sealed, path, &error)) {
    fprintf(stderr, "fzip: %s\n", error.message);
    return CLI_EXIT_FAILED;
  }
  if (!sealed)
    return CLI_EXIT_OK;
  if (!cli_args_get(args, "--identity") && !cli_args_flag(args, "--passphrase")) {
    fprintf(stderr, "fzip: %s: the package is encrypted: pass --identity FILE or --passphrase\n",
            path);
    return CLI_EXIT_USAGE;
  }
  if (!open_sealed(tmp, args, path, &error)) {
    fprintf(stderr, "fzip: %s: %s\n", path, error.message);
    if (error.domain == FZIP_DOMAIN_CONFIG)
      return CLI_EXIT_USAGE;
    return error.domain == FZIP_DOMAIN_PACKAGE ? CLI_EXIT_VERIFY : CLI_EXIT_FAILED;
  }
  *use = tmp->path;
  return CLI_EXIT_OK;
}

void cli_key_plain_cleanup(cli_key_plain_t *tmp) {
  if (!tmp->dir[0])
    return;
  unlink(tmp->path);
  rmdir(tmp->dir);
  tmp->dir[0] = '\0';
}

static const cli_opt_t generate_opts[] = {
    {"--output", 'o', CLI_OPT_VALUE, "FILE", NULL,
     "secret key file to create (mode 0600); the public key goes to FILE.pub"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

const cli_command_t cli_key_commands[] = {
    {"key", "generate", "", 0, 0, generate_opts,
     "Make an X25519 key pair for encrypted packages (offline).",
     "Prints the public key.  Give FILE.pub to `fzip export create --recipient`; open\n"
     "the packages with `--identity FILE` (package inspect|verify, import upload).",
     run_generate, NULL},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL},
};
