/*
 * cli_key: encrypted packages on the client (docs/CLIENT.md "Encrypted
 * packages"): `fzip key generate`, the recipients an export is sealed for
 * (--recipient, --passphrase), and the identity that opens a sealed
 * package (--identity, --passphrase) for `package inspect|verify` and
 * `import upload`.
 *
 * The passphrase comes from FZIP_PASSPHRASE or, failing that, a prompt on
 * the terminal (asked twice when sealing); it never leaves the client: an
 * export request carries the public key Argon2id derives from it, with
 * the salt and limits (pkg/pkg_seal.h).  A sealed package is opened into
 * a private temporary directory (mode 0700) and the plaintext appears
 * there only once the whole envelope verified (pkgs_open_file).
 */
#ifndef CLI_KEY_H
#define CLI_KEY_H

#include <stdbool.h>

#include "cli_args.h"
#include "cli_ctx.h"
#include "fzip/v1/jobs.pb-c.h"
#include "pkg_seal.h"

#define CLI_KEY_PATH_MAX 4096
#define CLI_KEY_FILE_MAX 4096 /* bytes of a key file */
#define CLI_KEY_PASSPHRASE_ENV "FZIP_PASSPHRASE"

/* Option rows for the commands that open a sealed package. */
#define CLI_KEY_IDENTITY_OPTS                                                                   \
  {"--identity", 0, CLI_OPT_VALUE, "FILE", "FZIP_IDENTITY",                                     \
   "secret key (fzip key generate) that opens an encrypted package"},                           \
  {"--passphrase", 0, CLI_OPT_FLAG, NULL, NULL,                                                 \
   "open an encrypted package with a passphrase (FZIP_PASSPHRASE, else asked)"}

/* Option rows of `export create`. */
#define CLI_KEY_RECIPIENT_OPTS                                                                  \
  {"--recipient", 0, CLI_OPT_VALUE, "FILE,...", NULL,                                           \
   "encrypt the package for these public keys (fzip key generate)"},                            \
  {"--passphrase", 0, CLI_OPT_FLAG, NULL, NULL,                                                 \
   "encrypt the package with a passphrase (FZIP_PASSPHRASE, else asked twice)"}

/* The encryption of a CreateExportRequest and the storage it points into. */
typedef struct {
  Fzip__V1__EncryptionOptions options;
  Fzip__V1__EncryptionRecipient rows[PKGS_STANZAS_MAX];
  Fzip__V1__EncryptionRecipient *row_ptrs[PKGS_STANZAS_MAX];
  pkgs_recipient_t keys[PKGS_STANZAS_MAX];
} cli_key_encryption_t;

/* From --recipient and --passphrase: *out = NULL when neither is given,
 * else &st->options.  Usage errors are CONFIG. */
bool cli_key_encryption(Fzip__V1__EncryptionOptions **out, cli_key_encryption_t *st,
                        const cli_args_t *args, fzip_error_t *error);

/* A package file as a command reads it: the file itself, or, when it is
 * an FZIPENC1 envelope, its plaintext in a private temporary directory. */
typedef struct {
  char dir[CLI_KEY_PATH_MAX]; /* "" when nothing was decrypted */
  char path[CLI_KEY_PATH_MAX];
} cli_key_plain_t;

/* Points *use at what to read for `path` (borrowed from `path` or `tmp`).
 * Returns an exit status: CLI_EXIT_OK, CLI_EXIT_USAGE for a sealed
 * package without --identity/--passphrase, CLI_EXIT_VERIFY when the
 * envelope does not open or verify, CLI_EXIT_FAILED for a local problem;
 * the message is printed.  Call cli_key_plain_cleanup in any case. */
int cli_key_open_package(const char **use, cli_key_plain_t *tmp, const cli_args_t *args,
                         const char *path);
void cli_key_plain_cleanup(cli_key_plain_t *tmp); /* removes the plaintext */

/* NULL-group-terminated: `fzip key generate`. */
extern const cli_command_t cli_key_commands[];

#endif
