/*
 * pkg_apply: a complete package from a base and its chain of increments
 * (docs/FORMAT.md 15, "Applying a chain"), offline: `fzip package apply`.
 *
 * The inputs are read through pkg_reader (every archive, manifest and
 * checksum rule applies) and the result is written through pkg_writer, so
 * it is, byte for byte, the package a complete export with the last
 * increment's (pinned) timestamp writes at the last increment's moment:
 * same export_type, filters, include_analytics, user and
 * application_version, no CSV, not encrypted.  Counts, checksums,
 * external references and files_missing are the writer's, recomputed.
 *
 * The chain is checked before anything is written: the first package is
 * complete, each next one is an increment whose base_package_sha256 is the
 * sha256 of the previous file as given (its envelope, when it came
 * encrypted), whose chain_length is one more than the previous one's (the
 * base's being 0) and whose base_change_seq is the previous increment's
 * change_seq; all agree on user, export type, filters and analytics.
 * Anything else is refused naming the file.
 *
 * Memory is per entity, never per kind: each kind is a k-way merge by id
 * of the packages' data/<kind>.json streams (each in id order, checked)
 * and their deletions, newest package winning and, within one increment,
 * its entity winning over its own deletion (deletions apply first).  A
 * transaction file's bytes come from the package of its winning record
 * or, when that package neither holds them nor lists them as missing, the
 * newest older one that holds them.
 */
#ifndef PKG_APPLY_H
#define PKG_APPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_error.h"
#include "fzip_util.h"
#include "pkg_writer.h"

/* Packages one apply reads: a base and at most PKGA_CHAIN_MAX - 1
 * increments (the server's chain cap, EXPORT_CHAIN_MAX, is below it). */
#define PKGA_CHAIN_MAX 128

/* One package of the chain.  Borrowed for the call. */
typedef struct {
  const char *path;   /* the plain FZIP package to read (an envelope opened by the caller) */
  const char *name;   /* how messages name it (the file the user gave); NULL: path */
  const char *sha256; /* lower-case hex sha256 of the file as given: the envelope if sealed */
} pkga_input_t;

typedef struct {
  const char *temp_dir; /* the writer's scratch space; NULL: $TMPDIR or /tmp */
} pkga_options_t;

typedef struct {
  pkg_result_t package;     /* what was written (size, sha256, counts) */
  uint64_t entities_deleted; /* entities of the base or an earlier increment dropped */
  uint64_t entities_replaced; /* entities an increment replaced */
} pkga_result_t;

/* Writes the complete package of inputs[0] + inputs[1..n) to `output`:
 * first to a temporary file in the output's directory, renamed over
 * `output` only once it is whole, so a refusal or failure leaves nothing
 * (and an existing `output` as it was).  *result (may be NULL) is filled
 * on success.  Errors: FZIP_DOMAIN_VALIDATION, FAILED_PRECONDITION, for a
 * chain that does not hold together (message names the file);
 * INVALID_ARGUMENT for fewer than 2 or more than PKGA_CHAIN_MAX inputs;
 * a package pkg_reader refuses, or whose entry fails its checksum, gives
 * the reader's error prefixed with the file's name; FZIP_DOMAIN_SYS for
 * local files. */
bool pkga_apply(pkga_result_t *result, const pkga_input_t *inputs, size_t n_inputs,
                const char *output, const pkga_options_t *options, fzip_error_t *error);

#endif
