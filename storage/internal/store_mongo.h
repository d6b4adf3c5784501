/*
 * store_mongo: the MongoDB backend (collections + GridFS-layout buckets).
 *
 * Not called directly: store_open picks it for "mongodb://" and
 * "mongodb+srv://" URIs and calls store_mongo_open (declared with the other
 * backend constructors in store_backend.h).  The layout, indexes, write
 * concern and FerretDB notes are in docs/STORAGE.md, "MongoDB backend".
 */
#ifndef FZIP_STORE_MONGO_H
#define FZIP_STORE_MONGO_H

#include "store_backend.h"

/* Database used when store_options_t.database is NULL. */
#define STORE_MONGO_DEFAULT_DATABASE "fzip"

#endif
