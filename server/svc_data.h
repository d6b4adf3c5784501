/*
 * svc_data: the fzip.v1.DataService handlers: a summary of the caller's
 * data, paged lists of each entity kind, and DeleteAllData.
 *
 * Every call is scoped to the authenticated user (rpc_ctx_user_id) and
 * reads the store given to svc_data_new.  The service is a handle whose
 * method rows point back at it (rpc_method_t.data), so fzipd registers
 * them with:
 *
 *   svc_data_t *data = NULL;
 *   if (!svc_data_new(&data, store, &err)) ...
 *   size_t n = 0;
 *   const rpc_method_t *const *rows = svc_data_methods(data, &n);
 *   // append rows[0..n) to the server's table; destroy `data` after
 *   // rpc_server_destroy.
 *
 * Paging (AIP-158 style): page_size 0 means SVC_DATA_PAGE_DEFAULT, above
 * SVC_DATA_PAGE_MAX or negative is INVALID_ARGUMENT (never a silent clamp).
 * A page may hold fewer items than asked when the next one would push the
 * response past SVC_DATA_PAGE_BYTES_MAX, so pages always fit in one gRPC
 * message; next_page_token is "" on the last page.  Pages are a keyset on
 * the entity id (ids ascending), so items added or deleted between pages
 * never make a page repeat or skip the others.  Tokens are opaque
 * (base64url) and bound to the list, the user and the filters they were
 * issued for: any other token is INVALID_ARGUMENT.
 *
 * DeleteAllData requires confirm == SVC_DATA_DELETE_CONFIRM (else
 * INVALID_ARGUMENT saying what to send), deletes each transaction file's
 * blob (STORE_BUCKET_FILES, blob id = the file's s3Key) before the
 * documents, so an interrupted run leaves documents that a rerun cleans
 * up and never an orphan blob, and answers with the counts deleted
 * (file_bytes = bytes of the blobs deleted).  Only blobs under the
 * caller's own prefix ("<user id>/") are ever deleted, whatever s3Key says.
 */
#ifndef FZIP_SVC_DATA_H
#define FZIP_SVC_DATA_H

#include <stdbool.h>
#include <stddef.h>

#include "fzip_error.h"
#include "rpc.h"
#include "store.h"

#define SVC_DATA_PAGE_DEFAULT 100
#define SVC_DATA_PAGE_MAX 1000
/* Packed bytes of the items in one list response; well under the default
 * 4 MiB gRPC message limit. */
#define SVC_DATA_PAGE_BYTES_MAX (3 * 1024 * 1024)
/* Longest page token accepted (bytes of base64url text). */
#define SVC_DATA_TOKEN_MAX 512
#define SVC_DATA_DELETE_CONFIRM "DELETE ALL DATA"
/* Number of DataService methods (rows svc_data_methods returns). */
#define SVC_DATA_N_METHODS 7

typedef struct svc_data svc_data_t;

/* `store` is borrowed and must outlive the service. */
bool svc_data_new(svc_data_t **out, store_t *store, fzip_error_t *error);
/* Destroy only after the server using its rows is destroyed; accepts NULL. */
void svc_data_destroy(svc_data_t *svc);

/* The DataService method rows (SVC_DATA_N_METHODS, *n set to that), owned
 * by `svc` and valid until svc_data_destroy. */
const rpc_method_t *const *svc_data_methods(const svc_data_t *svc, size_t *n);

#endif
