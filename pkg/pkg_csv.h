/*
 * pkg_csv: the spreadsheet copy of a package (docs/FORMAT.md section 13).
 *
 * With CreateExportRequest.include_csv the writer adds csv/accounts.csv,
 * csv/categories.csv and csv/transactions.csv next to the data files, so
 * that one package serves both a restore and a spreadsheet.  This module
 * turns one entity (a BSON document, as the writer streams it) into one
 * RFC 4180 row: UTF-8 with a byte order mark (Excel reads UTF-8 only with
 * one), a header row, CRLF line ends, fields holding a comma, quote, CR or
 * LF quoted with quotes doubled, a fixed column order.  Amounts are the
 * exact decimal strings of the data, never floats; times are ISO 8601 UTC.
 * Text cells that a spreadsheet would run as a formula (first character
 * = + - @ TAB CR) get a leading apostrophe (OWASP "CSV injection");
 * number columns are not guarded, so -12.50 stays a number, but a value
 * in one that is not a plain number is written as guarded text.
 *
 * Rows are written straight to a sink: memory is one id -> name table for
 * accounts and categories (transactions show their names), at most
 * PKG_CSV_NAMES_MAX entries each, filled as those kinds are written, which
 * the writer does before transactions.
 */
#ifndef PKG_CSV_H
#define PKG_CSV_H

#include <stdbool.h>
#include <stddef.h>

#include <bson/bson.h>

#include "fzip_entity.h"
#include "fzip_error.h"
#include "pkg_json.h"

#define PKG_CSV_NAMES_MAX 1000000 /* accounts or categories whose names transactions show */
#define PKG_CSV_BOM "\xEF\xBB\xBF"
#define PKG_CSV_EOL "\r\n"

typedef struct pkg_csv pkg_csv_t;

/* NULL only when out of memory. */
pkg_csv_t *pkg_csv_new(void);
void pkg_csv_destroy(pkg_csv_t *csv); /* accepts NULL */

/* "csv/transactions.csv" for a kind with a table, else NULL. */
const char *pkg_csv_entry(fzip_kind_t kind);

/* Writes the byte order mark and the header row of kind's table. */
bool pkg_csv_begin(pkg_csv_t *csv, fzip_kind_t kind, pkgjson_sink_fn sink, void *sink_ctx,
                   fzip_error_t *error);

/* Writes doc's row (doc is an entity of `kind`, borrowed) and, for accounts
 * and categories, remembers its name for the transactions' rows. */
bool pkg_csv_row(pkg_csv_t *csv, fzip_kind_t kind, const bson_t *doc, pkgjson_sink_fn sink,
                 void *sink_ctx, fzip_error_t *error);

/* One cell, a separating comma first unless `first`: quoted when needed;
 * `text` cells are guarded against formulas, others (numbers) are not
 * unless they are not a plain decimal.  Invalid UTF-8 bytes become U+FFFD.
 * Public for the unit tests. */
bool pkg_csv_cell(pkgjson_sink_fn sink, void *sink_ctx, bool first, bool text, const char *s,
                  size_t len, fzip_error_t *error);

#endif
