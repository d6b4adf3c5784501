/*
 * seed: see seed.h.
 *
 * Determinism without ordering traps: every entity draws from its own PRNG
 * stream (xoshiro256** seeded through splitmix64 from the seed, a stream
 * tag and the entity's index), so a value never depends on how many
 * numbers something else drew.  The only state carried across files is
 * per account (running balance, next check number), and files are always
 * generated in the same order.
 *
 * Layout of the data in time: a fixed six-year window starting on
 * SEED_BASE_DAY.  Account a opens within its first year and its k files
 * cut the rest of the window into k consecutive periods; a file's
 * transactions are spread evenly (with jitter) over its period in date
 * order, which is also the order the file's text lists them.
 *
 * Write order: categories, file maps, then files + transactions streamed
 * together, then accounts (their balances and first/last dates are known
 * only at the end), then analytics.
 */
#include "seed.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fzip_entity.h"
#include "fzip_tz.h"
#include "fzip_util.h"

/* ---- limits and fixed points ------------------------------------------- */

#define SEED_BASE_DAY 17897       /* 2019-01-01, days since the epoch */
#define SEED_SPAN_DAYS 2192       /* to 2024-12-31 inclusive */
#define SEED_DAY_MS 86400000LL
#define SEED_ACCOUNTS_MIN 6       /* one of each account type */
#define SEED_ACCOUNTS_MAX 48
#define SEED_TXNS_PER_ACCOUNT 20000 /* one more account per this many transactions */
#define SEED_TXNS_PER_FILE 200
#define SEED_FILES_MAX 20000
#define SEED_TXNS_PER_EXTRA_CATEGORY 5000
#define SEED_EXTRA_CATEGORIES_MAX 200
#define SEED_RULES_PER_CATEGORY_MAX 3
#define SEED_RULE_ID_LEN 13 /* "rule_" + 8 hex */
#define SEED_GENERIC_FILE_MAPS 3
#define SEED_BLOB_BUFFER (64 * 1024) /* file text is written to the blob in these pieces */
#define SEED_LINE_MAX 4096           /* one formatted line of file text */
#define SEED_TEXT_MAX 512            /* a name, description or memo */
#define SEED_MONEY_MAX 32            /* "-92233720368547758.07" */
#define SEED_PROGRESS_STEPS 20       /* progress lines per run */

/* Stream tags: one per kind of thing that draws numbers or ids. */
enum {
  TAG_ACCOUNT = 1,
  TAG_ACCOUNT_ID,
  TAG_CATEGORY,
  TAG_CATEGORY_ID,
  TAG_RULE,
  TAG_FILE_MAP_ID,
  TAG_FILE,
  TAG_FILE_ID,
  TAG_TXN,
  TAG_TXN_ID,
  TAG_ANALYTICS,
  TAG_MUTATE,
};

/* ---- PRNG ---------------------------------------------------------------- */

typedef struct {
  uint64_t s[4];
} rng_t;

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void rng_init(rng_t *r, uint64_t seed, uint64_t tag, uint64_t index) {
  uint64_t x = seed;
  x = splitmix64(&x) ^ (tag * 0xd1b54a32d192ed03ULL);
  x = splitmix64(&x) ^ index;
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng_t *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

/* Uniform in [0, n); n > 0.  The modulo bias is irrelevant for test data. */
static uint64_t rng_below(rng_t *r, uint64_t n) { return rng_next(r) % n; }

/* Uniform in [lo, hi]. */
static int64_t rng_range(rng_t *r, int64_t lo, int64_t hi) {
  return lo + (int64_t)rng_below(r, (uint64_t)(hi - lo) + 1);
}

/* True with probability pct/100. */
static bool rng_pct(rng_t *r, unsigned pct) { return rng_below(r, 100) < pct; }

/* A v4-shaped UUID drawn from stream (tag, index). */
static void seed_uuid(char out[FZIP_UUID_LEN + 1], uint64_t seed, uint64_t tag, uint64_t index) {
  rng_t r;
  rng_init(&r, seed, tag, index);
  uint64_t hi = rng_next(&r), lo = rng_next(&r);
  hi = (hi & ~0xf000ULL) | 0x4000ULL;                        /* version 4 */
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL; /* RFC 4122 variant */
  snprintf(out, FZIP_UUID_LEN + 1, "%08" PRIx32 "-%04" PRIx32 "-%04" PRIx32 "-%04" PRIx32
           "-%012" PRIx64, (uint32_t)(hi >> 32), (uint32_t)(hi >> 16) & 0xffff,
           (uint32_t)hi & 0xffff, (uint32_t)(lo >> 48), (uint64_t)(lo & 0xffffffffffffULL));
}

/* ---- formatting ---------------------------------------------------------- */

/* Decimal string of `minor` units with `decimals` (0 or 2) fraction digits. */
static void fmt_money(char out[SEED_MONEY_MAX], int64_t minor, int decimals) {
  uint64_t mag = minor < 0 ? (uint64_t)(-(minor + 1)) + 1 : (uint64_t)minor;
  const char *sign = minor < 0 ? "-" : "";
  if (decimals == 0)
    snprintf(out, SEED_MONEY_MAX, "%s%" PRIu64, sign, mag);
  else
    snprintf(out, SEED_MONEY_MAX, "%s%" PRIu64 ".%02" PRIu64, sign, mag / 100, mag % 100);
}

typedef struct {
  int year, month, day;
} civil_t;

/* The civil date of days since 1970-01-01 (one calendar: fzip_tz). */
static civil_t civil_from_days(int64_t z) {
  civil_t c;
  int64_t y;
  fzip_tz_civil_from_days(z, &y, &c.month, &c.day);
  c.year = (int)y;
  return c;
}

/* ---- static data ----------------------------------------------------------- */

typedef enum { ACC_CHECKING, ACC_SAVINGS, ACC_CREDIT, ACC_INVEST, ACC_LOAN, ACC_OTHER, ACC_N } acc_type_t;

static const char *const acc_type_names[ACC_N] = {"checking", "savings", "credit_card",
                                                  "investment", "loan", "other"};
static const char *const acc_type_labels[ACC_N] = {"Checking", "Savings", "Credit Card",
                                                   "Brokerage", "Mortgage", "Cash Wallet"};

typedef struct {
  const char *name;
  const char *slug;     /* ASCII, for file names */
  const char *currency;
  int permille;         /* account-currency minor units per 1000 US cents */
  int decimals;
} institution_t;

/* Ordered so that the first six accounts already mix currencies (JPY third). */
static const institution_t institutions[] = {
    {"Chase", "chase", "USD", 1000, 2},
    {"Barclays", "barclays", "GBP", 790, 2},
    {"三菱UFJ銀行", "mufg", "JPY", 1500, 0},
    {"Crédit Agricole", "credit_agricole", "EUR", 920, 2},
    {"Vanguard", "vanguard", "USD", 1000, 2},
    {"RBC Royal Bank", "rbc", "CAD", 1360, 2},
    {"Commonwealth Bank", "commbank", "AUD", 1520, 2},
    {"UBS", "ubs", "CHF", 880, 2},
    {"中国银行", "boc", "CNY", 7200, 2},
    {"Monzo", "monzo", "GBP", 790, 2},
    {"Deutsche Bank", "deutsche_bank", "EUR", 920, 2},
    {"Fidelity", "fidelity", "USD", 1000, 2},
};
#define N_INSTITUTIONS (sizeof institutions / sizeof institutions[0])

typedef enum { CAT_INCOME, CAT_EXPENSE, CAT_TRANSFER } cat_type_t;
static const char *const cat_type_names[] = {"INCOME", "EXPENSE", "TRANSFER"};

typedef struct {
  const char *name;
  int parent; /* index in this table, -1 for a root */
  cat_type_t type;
  const char *icon;
  const char *color;
} cat_template_t;

/* The fixed part of the category tree; Salary > Bonus > Annual bonus and
 * Food > Restaurants > Fast food > Pizza make it four levels deep. */
static const cat_template_t cat_templates[] = {
    /* 0 */ {"Income", -1, CAT_INCOME, "💰", "#2E7D32"},
    /* 1 */ {"Salary", 0, CAT_INCOME, "💼", "#388E3C"},
    /* 2 */ {"Base pay", 1, CAT_INCOME, "🧾", "#43A047"},
    /* 3 */ {"Bonus", 1, CAT_INCOME, "🎉", "#4CAF50"},
    /* 4 */ {"Annual bonus", 3, CAT_INCOME, "🏆", "#66BB6A"},
    /* 5 */ {"Investment income", 0, CAT_INCOME, "📈", "#1B5E20"},
    /* 6 */ {"Dividends", 5, CAT_INCOME, "💵", "#81C784"},
    /* 7 */ {"Interest", 5, CAT_INCOME, "🏦", "#A5D6A7"},
    /* 8 */ {"Housing", -1, CAT_EXPENSE, "🏠", "#6D4C41"},
    /* 9 */ {"Rent & mortgage", 8, CAT_EXPENSE, "🔑", "#795548"},
    /* 10 */ {"Utilities", 8, CAT_EXPENSE, "💡", "#8D6E63"},
    /* 11 */ {"Electricity", 10, CAT_EXPENSE, "⚡", "#A1887F"},
    /* 12 */ {"Water", 10, CAT_EXPENSE, "🚰", "#BCAAA4"},
    /* 13 */ {"Internet & phone", 10, CAT_EXPENSE, "🌐", "#5D4037"},
    /* 14 */ {"Mobile", 13, CAT_EXPENSE, "📱", "#4E342E"},
    /* 15 */ {"Food & drink", -1, CAT_EXPENSE, "🍽️", "#E65100"},
    /* 16 */ {"Groceries", 15, CAT_EXPENSE, "🛒", "#EF6C00"},
    /* 17 */ {"Restaurants", 15, CAT_EXPENSE, "🍜", "#F57C00"},
    /* 18 */ {"Cafés", 17, CAT_EXPENSE, "☕", "#FB8C00"},
    /* 19 */ {"Fast food", 17, CAT_EXPENSE, "🍔", "#FFA726"},
    /* 20 */ {"Pizza", 19, CAT_EXPENSE, "🍕", "#FFB74D"},
    /* 21 */ {"Transport", -1, CAT_EXPENSE, "🚗", "#1565C0"},
    /* 22 */ {"Fuel", 21, CAT_EXPENSE, "⛽", "#1976D2"},
    /* 23 */ {"Public transit", 21, CAT_EXPENSE, "🚇", "#1E88E5"},
    /* 24 */ {"Rail", 23, CAT_EXPENSE, "🚆", "#42A5F5"},
    /* 25 */ {"Ride hailing", 21, CAT_EXPENSE, "🚕", "#64B5F6"},
    /* 26 */ {"Shopping", -1, CAT_EXPENSE, "🛍️", "#AD1457"},
    /* 27 */ {"Online", 26, CAT_EXPENSE, "📦", "#C2185B"},
    /* 28 */ {"Marketplaces", 27, CAT_EXPENSE, "🏪", "#D81B60"},
    /* 29 */ {"Clothing", 26, CAT_EXPENSE, "👕", "#EC407A"},
    /* 30 */ {"Health", -1, CAT_EXPENSE, "🩺", "#00838F"},
    /* 31 */ {"Pharmacy", 30, CAT_EXPENSE, "💊", "#0097A7"},
    /* 32 */ {"Doctor", 30, CAT_EXPENSE, "👩‍⚕️", "#00ACC1"},
    /* 33 */ {"Entertainment", -1, CAT_EXPENSE, "🎬", "#6A1B9A"},
    /* 34 */ {"Streaming", 33, CAT_EXPENSE, "📺", "#7B1FA2"},
    /* 35 */ {"Video", 34, CAT_EXPENSE, "🎞️", "#8E24AA"},
    /* 36 */ {"Music", 34, CAT_EXPENSE, "🎵", "#AB47BC"},
    /* 37 */ {"Travel", -1, CAT_EXPENSE, "✈️", "#00695C"},
    /* 38 */ {"Flights", 37, CAT_EXPENSE, "🛫", "#00796B"},
    /* 39 */ {"Hotels", 37, CAT_EXPENSE, "🏨", "#00897B"},
    /* 40 */ {"Financial", -1, CAT_EXPENSE, "🏦", "#37474F"},
    /* 41 */ {"Bank fees", 40, CAT_EXPENSE, "🧮", "#455A64"},
    /* 42 */ {"Loan payments", 40, CAT_EXPENSE, "📉", "#546E7A"},
    /* 43 */ {"Interest charges", 42, CAT_EXPENSE, "💸", "#607D8B"},
    /* 44 */ {"Transfers", -1, CAT_TRANSFER, "🔁", "#9E9E9E"},
    /* 45 */ {"Between own accounts", 44, CAT_TRANSFER, "↔️", "#757575"},
    /* 46 */ {"Savings top-up", 45, CAT_TRANSFER, "🐖", "#616161"},
    /* 47 */ {"Credit card payment", 44, CAT_TRANSFER, "💳", "#424242"},
};
#define N_CAT_TEMPLATES ((int)(sizeof cat_templates / sizeof cat_templates[0]))

static const char *const extra_cat_suffixes[] = {"Weekdays", "Weekend", "Work", "Family",
                                                  "Gifts", "Subscriptions", "Kids", "Shared",
                                                  "Holidays", "Misc"};
#define N_EXTRA_SUFFIXES (sizeof extra_cat_suffixes / sizeof extra_cat_suffixes[0])

/* Account-type masks of merchants. */
#define M_C (1u << ACC_CHECKING)
#define M_S (1u << ACC_SAVINGS)
#define M_K (1u << ACC_CREDIT)
#define M_I (1u << ACC_INVEST)
#define M_L (1u << ACC_LOAN)
#define M_O (1u << ACC_OTHER)
#define M_SPEND (M_C | M_K | M_O)

/* Merchant flags. */
#define F_STORE 1u /* description sometimes carries a store number */
#define F_CHECK 2u /* paid by check from checking accounts */

typedef struct {
  const char *name;
  int category; /* cat_templates index */
  int64_t lo, hi; /* amount range in US cents (sign included) */
  unsigned accounts;
  unsigned flags;
  const char *type; /* transactionType */
} merchant_t;

static const merchant_t merchants[] = {
    {"ACME Corp Payroll", 2, 250000, 650000, M_C, 0, "DIRECTDEP"},
    {"Prime annuelle ACME Corp", 4, 100000, 500000, M_C, 0, "DIRECTDEP"},
    {"Dividend — Vanguard Total Stock", 6, 500, 40000, M_I, 0, "DIV"},
    {"Interest earned", 7, 1, 2500, M_S | M_C, 0, "INT"},
    {"Maple Street Apartments", 9, -180000, -120000, M_C, F_CHECK, "CHECK"},
    {"Hydro-Québec", 11, -15000, -4000, M_C | M_K, 0, "DEBIT"},
    {"東京電力 TEPCO", 11, -12000, -3000, M_C | M_K, 0, "DEBIT"},
    {"City Water Utility", 12, -9000, -2500, M_C, F_CHECK, "CHECK"},
    {"Comcast Xfinity Internet", 13, -11000, -6000, M_C | M_K, 0, "DEBIT"},
    {"Vodafone Mobile", 14, -6000, -1500, M_SPEND, 0, "DEBIT"},
    {"Whole Foods Market", 16, -25000, -1500, M_SPEND, F_STORE, "POS"},
    {"Tesco Express", 16, -6000, -300, M_SPEND, F_STORE, "POS"},
    {"Carrefour Market", 16, -18000, -900, M_SPEND, F_STORE, "POS"},
    {"Żabka", 16, -2500, -150, M_SPEND, F_STORE, "POS"},
    {"Edeka Müller", 16, -9000, -600, M_SPEND, F_STORE, "POS"},
    {"イオン 幕張店", 16, -12000, -500, M_SPEND, F_STORE, "POS"},
    {"盒马鲜生", 16, -9000, -400, M_SPEND, F_STORE, "POS"},
    {"Sushi Zanmai 寿司", 17, -9000, -1800, M_SPEND, 0, "POS"},
    {"Le Petit Bistro", 17, -15000, -2500, M_SPEND, 0, "POS"},
    {"Smörgåsbord Stockholm", 17, -12000, -2000, M_SPEND, 0, "POS"},
    {"海底捞火锅", 17, -14000, -3000, M_SPEND, F_STORE, "POS"},
    {"Café de Flore", 18, -1800, -350, M_SPEND, 0, "POS"},
    {"Starbucks", 18, -1200, -295, M_SPEND, F_STORE, "POS"},
    {"スターバックス 渋谷", 18, -1100, -300, M_SPEND, 0, "POS"},
    {"Pâtisserie Ladurée", 18, -3500, -600, M_SPEND, 0, "POS"},
    {"McDonald's", 19, -1500, -299, M_SPEND, F_STORE, "POS"},
    {"Five Guys", 19, -2500, -900, M_SPEND, F_STORE, "POS"},
    {"🍕 Pizza Planet", 20, -4500, -1200, M_SPEND, 0, "POS"},
    {"Domino's Pizza", 20, -3800, -999, M_SPEND, F_STORE, "POS"},
    {"Shell", 22, -9500, -2000, M_SPEND, F_STORE, "POS"},
    {"BP Connect", 22, -9000, -1800, M_SPEND, F_STORE, "POS"},
    {"TfL Travel Charge", 23, -1200, -170, M_SPEND, 0, "POS"},
    {"MTA NYC Transit", 23, -3300, -275, M_SPEND, 0, "POS"},
    {"SNCF Voyageurs", 24, -18000, -1500, M_SPEND, 0, "POS"},
    {"JR東日本", 24, -14000, -200, M_SPEND, 0, "POS"},
    {"Uber 🚕 Trip", 25, -6500, -700, M_SPEND, 0, "POS"},
    {"Lyft", 25, -5500, -650, M_SPEND, 0, "POS"},
    {"Amazon.com", 28, -25000, -499, M_SPEND, 0, "POS"},
    {"淘宝网 Taobao", 28, -30000, -500, M_SPEND, 0, "POS"},
    {"Etsy — Handmade", 27, -9000, -800, M_SPEND, 0, "POS"},
    {"Zara", 29, -20000, -1999, M_SPEND, F_STORE, "POS"},
    {"Uniqlo ユニクロ", 29, -15000, -990, M_SPEND, F_STORE, "POS"},
    {"CVS Pharmacy", 31, -6000, -399, M_SPEND, F_STORE, "POS"},
    {"Apotheke am Markt", 31, -4500, -350, M_SPEND, 0, "POS"},
    {"Dr. Müller Praxis", 32, -25000, -3000, M_C | M_K, 0, "DEBIT"},
    {"Netflix", 35, -2299, -999, M_C | M_K, 0, "DEBIT"},
    {"Disney+", 35, -1399, -799, M_C | M_K, 0, "DEBIT"},
    {"Spotify 🎵", 36, -1699, -999, M_C | M_K, 0, "DEBIT"},
    {"Air France", 38, -120000, -9000, M_K, 0, "POS"},
    {"Delta Air Lines", 38, -95000, -12000, M_K, 0, "POS"},
    {"Hôtel Le Marais", 39, -60000, -9000, M_K, 0, "POS"},
    {"Marriott", 39, -55000, -12000, M_K, 0, "POS"},
    {"Monthly account fee", 41, -1500, -500, M_C | M_S, 0, "FEE"},
    {"Advisory fee", 41, -9000, -1000, M_I, 0, "FEE"},
    {"Mortgage payment — thank you", 42, 80000, 240000, M_L, 0, "PAYMENT"},
    {"Interest charge", 43, -90000, -1500, M_L | M_K, 0, "INT"},
    {"Transfer to savings", 46, -150000, -5000, M_C, 0, "XFER"},
    {"Transfer from checking", 46, 5000, 150000, M_S, 0, "XFER"},
    {"Withdrawal to checking", 45, -80000, -5000, M_S, 0, "XFER"},
    {"Credit card payment — thank you", 47, 20000, 250000, M_K, 0, "PAYMENT"},
    {"Payment to credit card", 47, -250000, -20000, M_C, 0, "XFER"},
    {"Brokerage deposit", 45, 10000, 500000, M_I, 0, "XFER"},
    {"Buy VTI ETF", 45, -300000, -5000, M_I, 0, "DEBIT"},
    {"Sell AAPL shares", 45, 5000, 250000, M_I, 0, "CREDIT"},
    {"ATM withdrawal 🏧", 45, -40000, -2000, M_C | M_O, 0, "ATM"},
    {"Cash top-up", 45, 2000, 30000, M_O, 0, "CREDIT"},
};
#define N_MERCHANTS ((int)(sizeof merchants / sizeof merchants[0]))

static const char *const memos[] = {
    "Card purchase", "Paiement par carte", "カード払い", "Kartenzahlung", "Contactless",
    "Online payment", "Standing order", "Recurring", "Ref. invoice", "微信支付",
};
#define N_MEMOS (sizeof memos / sizeof memos[0])

/* Rule (fieldToMatch, condition) pairs cycled through so every condition
 * appears on every field it applies to. */
typedef struct {
  const char *field;
  const char *condition;
} rule_kind_t;

static const rule_kind_t rule_kinds[] = {
    {"description", "contains"},    {"payee", "starts_with"},    {"memo", "ends_with"},
    {"description", "regex"},       {"amount", "amount_greater"}, {"payee", "equals"},
    {"memo", "contains"},           {"description", "starts_with"}, {"amount", "amount_less"},
    {"payee", "ends_with"},         {"memo", "regex"},           {"description", "equals"},
    {"amount", "amount_between"},   {"payee", "contains"},       {"memo", "starts_with"},
    {"description", "ends_with"},   {"payee", "regex"},          {"memo", "equals"},
    {"amount", "equals"},
};
#define N_RULE_KINDS (sizeof rule_kinds / sizeof rule_kinds[0])

static const char *const analytic_types[] = {
    "cash_flow",          "category_trends",    "budget_performance", "financial_health",
    "credit_utilization", "payment_patterns",   "account_efficiency", "merchant_analysis",
    "goal_progress",      "recommendations",
};
#define N_ANALYTIC_TYPES (sizeof analytic_types / sizeof analytic_types[0])

/* ---- generation state ------------------------------------------------------ */

typedef struct {
  char id[FZIP_UUID_LEN + 1];
  int template_index; /* cat_templates row, or -1 for an extra category */
  int parent;         /* index in the category array, -1 for a root */
  int first_merchant; /* merchant used for rule values, -1 if none */
  int n_rules;
  char rule_ids[SEED_RULES_PER_CATEGORY_MAX][SEED_RULE_ID_LEN + 1];
} category_t;

typedef struct {
  char id[FZIP_UUID_LEN + 1];
  char map_id[FZIP_UUID_LEN + 1];
  acc_type_t type;
  const institution_t *inst;
  char name[SEED_TEXT_MAX];
  int format; /* 0 csv, 1 ofx, 2 qif */
  uint64_t n_files;
  int64_t open_day;    /* first day of its first file's period */
  int64_t balance;     /* running, minor units */
  int64_t first_date;  /* ms, 0 until a transaction exists */
  int64_t last_date;
  int64_t updated_at;
  uint64_t next_check;
  uint64_t last_digits; /* the "••1234" of its name and card memos */
} account_t;

static const char *const format_names[] = {"csv", "ofx", "qif"};

typedef struct {
  bson_t docs[STORE_BATCH_MAX];
  size_t n;
  fzip_kind_t kind;
} batch_t;

typedef struct {
  store_t *store;
  const char *user_id;
  const seed_options_t *opt;
  seed_stats_t *stats;
  account_t *accounts;
  size_t n_accounts;
  category_t *categories;
  size_t n_categories;
  int n_extra; /* categories beyond the templates */
  int extra_parents[N_CAT_TEMPLATES]; /* template indexes that carry extras */
  int n_extra_parents;
  uint64_t n_files;
  batch_t *txns;
  batch_t *files;
  uint64_t txn_index; /* global index of the next transaction */
  uint64_t next_progress;
  int64_t started_ms;
} gen_t;

/* ---- batches ------------------------------------------------------------ */

static bson_t *batch_add(batch_t *b) {
  bson_t *doc = &b->docs[b->n++];
  bson_init(doc);
  return doc;
}

static bool batch_flush(store_t *store, const char *user_id, batch_t *b, fzip_error_t *error) {
  const bson_t *ptrs[STORE_BATCH_MAX];
  bool ok;
  if (b->n == 0)
    return true;
  for (size_t i = 0; i < b->n; i++)
    ptrs[i] = &b->docs[i];
  ok = store_entity_put_batch(store, user_id, b->kind, ptrs, b->n, STORE_WRITE_REPLACE, NULL,
                              error);
  for (size_t i = 0; i < b->n; i++)
    bson_destroy(&b->docs[i]);
  b->n = 0;
  if (!ok)
    return fzip_error_prefix(error, "writing %s", fzip_kind_info(b->kind)->name);
  return true;
}

/* Room for one more document, flushing first if the batch is full. */
static bool batch_reserve(gen_t *g, batch_t *b, fzip_error_t *error) {
  return b->n < STORE_BATCH_MAX || batch_flush(g->store, g->user_id, b, error);
}

static void batch_discard(batch_t *b) {
  if (!b)
    return;
  for (size_t i = 0; i < b->n; i++)
    bson_destroy(&b->docs[i]);
  b->n = 0;
}

/* ---- sizes ----------------------------------------------------------------- */

static size_t count_accounts(uint64_t n_txns) {
  uint64_t n = SEED_ACCOUNTS_MIN + n_txns / SEED_TXNS_PER_ACCOUNT;
  return (size_t)(n > SEED_ACCOUNTS_MAX ? SEED_ACCOUNTS_MAX : n);
}

/* Enough files that every account gets one when there are transactions
 * for it, then one per SEED_TXNS_PER_FILE, capped. */
static uint64_t count_files(uint64_t n_txns, size_t n_accounts) {
  uint64_t n = n_txns / SEED_TXNS_PER_FILE;
  uint64_t floor_n = n_txns < n_accounts ? n_txns : n_accounts;
  if (n < floor_n)
    n = floor_n;
  return n > SEED_FILES_MAX ? SEED_FILES_MAX : n;
}

static int count_extra_categories(uint64_t n_txns) {
  uint64_t n = n_txns / SEED_TXNS_PER_EXTRA_CATEGORY;
  return (int)(n > SEED_EXTRA_CATEGORIES_MAX ? SEED_EXTRA_CATEGORIES_MAX : n);
}

/* ---- categories -------------------------------------------------------------- */

static void make_rule_id(category_t *c, rng_t *r) {
  bool taken;
  do {
    snprintf(c->rule_ids[c->n_rules], SEED_RULE_ID_LEN + 1, "rule_%08" PRIx32,
             (uint32_t)rng_next(r));
    taken = false;
    for (int i = 0; i < c->n_rules; i++)
      taken = taken || strcmp(c->rule_ids[i], c->rule_ids[c->n_rules]) == 0;
  } while (taken);
}

/* Copies `s` with regex metacharacters escaped. */
static void regex_escape(char *out, size_t cap, const char *s) {
  size_t n = 0;
  for (; *s && n + 3 < cap; s++) {
    if (strchr(".^$*+?()[]{}|\\", *s))
      out[n++] = '\\';
    out[n++] = *s;
  }
  out[n] = '\0';
}

/* First and last space-separated words of `s` (bounded copies). */
static void first_word(char *out, size_t cap, const char *s) {
  size_t n = strcspn(s, " ");
  if (n >= cap)
    n = cap - 1;
  memcpy(out, s, n);
  out[n] = '\0';
}

static void last_word(char *out, size_t cap, const char *s) {
  const char *sp = strrchr(s, ' ');
  snprintf(out, cap, "%s", sp ? sp + 1 : s);
}

static void append_rule(bson_t *arr, int idx, const category_t *c, int k, uint64_t global_rule,
                        const char *basis, rng_t *r) {
  const rule_kind_t *rk = &rule_kinds[global_rule % N_RULE_KINDS];
  char key[16], value[SEED_TEXT_MAX * 2], esc[SEED_TEXT_MAX];
  const char *amount_min = NULL, *amount_max = NULL;
  bson_t rule;
  snprintf(key, sizeof key, "%d", idx);
  if (strcmp(rk->condition, "contains") == 0 || strcmp(rk->condition, "equals") == 0) {
    snprintf(value, sizeof value, "%s", basis);
  } else if (strcmp(rk->condition, "starts_with") == 0) {
    first_word(value, sizeof value, basis);
  } else if (strcmp(rk->condition, "ends_with") == 0) {
    last_word(value, sizeof value, basis);
  } else if (strcmp(rk->condition, "regex") == 0) {
    regex_escape(esc, sizeof esc, basis);
    snprintf(value, sizeof value, "^%s( #[0-9]+)?$", esc);
  } else if (strcmp(rk->condition, "amount_greater") == 0) {
    snprintf(value, sizeof value, "%d.00", (int)rng_range(r, 50, 500));
  } else if (strcmp(rk->condition, "amount_less") == 0) {
    snprintf(value, sizeof value, "%d.00", (int)rng_range(r, 2, 20));
  } else {
    amount_min = "10.00";
    amount_max = "75.50";
    snprintf(value, sizeof value, "%s", "");
  }
  if (strcmp(rk->field, "amount") == 0 && strcmp(rk->condition, "equals") == 0)
    snprintf(value, sizeof value, "%d.99", (int)rng_range(r, 1, 30));
  bson_append_document_begin(arr, key, -1, &rule);
  BSON_APPEND_UTF8(&rule, "ruleId", c->rule_ids[k]);
  BSON_APPEND_UTF8(&rule, "fieldToMatch", rk->field);
  BSON_APPEND_UTF8(&rule, "condition", rk->condition);
  BSON_APPEND_UTF8(&rule, "value", value);
  BSON_APPEND_BOOL(&rule, "caseSensitive", strcmp(rk->condition, "regex") == 0 && rng_pct(r, 50));
  BSON_APPEND_INT32(&rule, "priority", (int32_t)rng_range(r, 0, 100));
  BSON_APPEND_BOOL(&rule, "enabled", rng_pct(r, 90));
  BSON_APPEND_INT32(&rule, "confidence", (int32_t)rng_range(r, 50, 100));
  if (amount_min) {
    BSON_APPEND_UTF8(&rule, "amountMin", amount_min);
    BSON_APPEND_UTF8(&rule, "amountMax", amount_max);
  }
  BSON_APPEND_BOOL(&rule, "allowMultipleMatches", rng_pct(r, 80));
  BSON_APPEND_BOOL(&rule, "autoSuggest", rng_pct(r, 85));
  bson_append_document_end(arr, &rule);
}

static const char *category_name(char *buf, size_t cap, const gen_t *g, size_t i) {
  const category_t *c = &g->categories[i];
  int e = (int)i - N_CAT_TEMPLATES;
  if (c->template_index >= 0)
    return cat_templates[c->template_index].name;
  /* an extra: "<parent> · <suffix>[ n]" */
  int round_no = e / (g->n_extra_parents * (int)N_EXTRA_SUFFIXES);
  const char *suffix = extra_cat_suffixes[(e / g->n_extra_parents) % (int)N_EXTRA_SUFFIXES];
  const char *pname = cat_templates[g->categories[c->parent].template_index].name;
  if (round_no > 0)
    snprintf(buf, cap, "%s · %s %d", pname, suffix, round_no + 1);
  else
    snprintf(buf, cap, "%s · %s", pname, suffix);
  return buf;
}

static const cat_template_t *category_template(const gen_t *g, size_t i) {
  while (g->categories[i].template_index < 0)
    i = (size_t)g->categories[i].parent;
  return &cat_templates[g->categories[i].template_index];
}

static bool build_categories(gen_t *g, fzip_error_t *error) {
  g->n_extra = count_extra_categories(g->opt->transactions);
  g->n_categories = (size_t)N_CAT_TEMPLATES + (size_t)g->n_extra;
  g->categories = calloc(g->n_categories, sizeof *g->categories);
  if (!g->categories)
    return fzip_error_oom(error, NULL);
  for (int t = 0; t < N_CAT_TEMPLATES; t++) {
    category_t *c = &g->categories[t];
    c->template_index = t;
    c->parent = cat_templates[t].parent;
    c->first_merchant = -1;
    for (int m = 0; m < N_MERCHANTS && c->first_merchant < 0; m++)
      if (merchants[m].category == t)
        c->first_merchant = m;
    if (c->first_merchant >= 0)
      g->extra_parents[g->n_extra_parents++] = t;
  }
  for (int e = 0; e < g->n_extra; e++) {
    category_t *c = &g->categories[N_CAT_TEMPLATES + e];
    c->template_index = -1;
    c->parent = g->extra_parents[e % g->n_extra_parents];
    c->first_merchant = g->categories[c->parent].first_merchant;
  }
  for (size_t i = 0; i < g->n_categories; i++) {
    category_t *c = &g->categories[i];
    rng_t r;
    rng_init(&r, g->opt->seed, TAG_RULE, i);
    seed_uuid(c->id, g->opt->seed, TAG_CATEGORY_ID, i);
    int n = 1 + (int)rng_below(&r, SEED_RULES_PER_CATEGORY_MAX);
    for (c->n_rules = 0; c->n_rules < n;) {
      make_rule_id(c, &r);
      c->n_rules++;
    }
  }
  return true;
}

static bool write_categories(gen_t *g, fzip_error_t *error) {
  batch_t *b = g->files; /* borrowed: empty until files are written */
  uint64_t global_rule = 0;
  const int64_t created = (SEED_BASE_DAY - 30) * SEED_DAY_MS;
  b->kind = FZIP_KIND_CATEGORY;
  for (size_t i = 0; i < g->n_categories; i++) {
    const category_t *c = &g->categories[i];
    const cat_template_t *tp = category_template(g, i);
    char name[SEED_TEXT_MAX];
    rng_t r;
    bson_t rules;
    if (!batch_reserve(g, b, error))
      return false;
    rng_init(&r, g->opt->seed, TAG_CATEGORY, i);
    bson_t *doc = batch_add(b);
    BSON_APPEND_UTF8(doc, "categoryId", c->id);
    const char *cname = category_name(name, sizeof name, g, i);
    BSON_APPEND_UTF8(doc, "name", cname);
    BSON_APPEND_UTF8(doc, "type", cat_type_names[tp->type]);
    if (c->parent >= 0)
      BSON_APPEND_UTF8(doc, "parentCategoryId", g->categories[c->parent].id);
    BSON_APPEND_UTF8(doc, "icon", c->template_index >= 0 ? tp->icon : "🏷️");
    BSON_APPEND_UTF8(doc, "color", tp->color);
    BSON_APPEND_BOOL(doc, "inheritParentRules", c->parent >= 0 && rng_pct(&r, 80));
    static const char *const modes[] = {"additive", "override", "disabled"};
    BSON_APPEND_UTF8(doc, "ruleInheritanceMode", modes[i % 3]);
    const char *basis = c->first_merchant >= 0 ? merchants[c->first_merchant].name : cname;
    BSON_APPEND_ARRAY_BEGIN(doc, "rules", &rules);
    for (int k = 0; k < c->n_rules; k++)
      append_rule(&rules, k, c, k, global_rule++, basis, &r);
    bson_append_array_end(doc, &rules);
    BSON_APPEND_INT64(doc, "createdAt", created + (int64_t)i * 60000);
    BSON_APPEND_INT64(doc, "updatedAt", created + (int64_t)rng_range(&r, 0, 400) * SEED_DAY_MS);
    g->stats->rules += (uint64_t)c->n_rules;
  }
  if (!batch_flush(g->store, g->user_id, b, error))
    return false;
  g->stats->categories = g->n_categories;
  return true;
}

/* ---- accounts and file maps ------------------------------------------------------ */

static bool build_accounts(gen_t *g, fzip_error_t *error) {
  g->n_accounts = count_accounts(g->opt->transactions);
  g->n_files = count_files(g->opt->transactions, g->n_accounts);
  g->accounts = calloc(g->n_accounts, sizeof *g->accounts);
  if (!g->accounts)
    return fzip_error_oom(error, NULL);
  for (size_t a = 0; a < g->n_accounts; a++) {
    account_t *acc = &g->accounts[a];
    rng_t r;
    rng_init(&r, g->opt->seed, TAG_ACCOUNT, a);
    seed_uuid(acc->id, g->opt->seed, TAG_ACCOUNT_ID, a);
    seed_uuid(acc->map_id, g->opt->seed, TAG_FILE_MAP_ID, a);
    acc->type = (acc_type_t)(a % ACC_N);
    acc->inst = &institutions[a % N_INSTITUTIONS];
    acc->format = (int)(a % 3);
    acc->last_digits = 1000 + rng_below(&r, 9000);
    snprintf(acc->name, sizeof acc->name, "%s %s ••%04" PRIu64, acc->inst->name,
             acc_type_labels[acc->type], acc->last_digits);
    acc->n_files = g->n_files / g->n_accounts + (a < g->n_files % g->n_accounts);
    acc->open_day = SEED_BASE_DAY + (int64_t)rng_below(&r, 365);
    int64_t opening_cents = acc->type == ACC_LOAN     ? -rng_range(&r, 5000000, 40000000)
                            : acc->type == ACC_CREDIT ? -rng_range(&r, 0, 200000)
                                                      : rng_range(&r, 10000, 2000000);
    acc->balance = opening_cents * acc->inst->permille / 1000;
    acc->next_check = 1001 + rng_below(&r, 500);
    acc->updated_at = acc->open_day * SEED_DAY_MS;
  }
  return true;
}

typedef struct {
  const char *source, *target, *transformation;
} mapping_t;

static const mapping_t format_mappings[3][7] = {
    {{"Date", "date", "date:%Y-%m-%d"},
     {"Description", "description", "trim"},
     {"Amount", "amount", "decimal"},
     {"Balance", "balance", "decimal"},
     {"Memo", "memo", "trim"},
     {"Check Number", "checkNumber", NULL},
     {"Reference", "fitId", NULL}},
    {{"DTPOSTED", "date", "date:%Y%m%d"},
     {"NAME", "description", "trim"},
     {"TRNAMT", "amount", "decimal"},
     {"MEMO", "memo", NULL},
     {"CHECKNUM", "checkNumber", NULL},
     {"FITID", "fitId", NULL},
     {"TRNTYPE", "transactionType", "upper"}},
    {{"D", "date", "date:%m/%d/%Y"},
     {"P", "description", "trim"},
     {"T", "amount", "decimal"},
     {"M", "memo", NULL},
     {"N", "checkNumber", NULL},
     {NULL, NULL, NULL},
     {NULL, NULL, NULL}},
};

static void append_file_map(bson_t *doc, const char *id, const char *name, int format,
                            const char *account_id, bool reverse, int64_t created) {
  bson_t arr, m;
  char key[16];
  BSON_APPEND_UTF8(doc, "fileMapId", id);
  BSON_APPEND_UTF8(doc, "name", name);
  BSON_APPEND_ARRAY_BEGIN(doc, "mappings", &arr);
  for (int i = 0; i < 7 && format_mappings[format][i].source; i++) {
    const mapping_t *mp = &format_mappings[format][i];
    snprintf(key, sizeof key, "%d", i);
    bson_append_document_begin(&arr, key, -1, &m);
    BSON_APPEND_UTF8(&m, "sourceField", mp->source);
    BSON_APPEND_UTF8(&m, "targetField", mp->target);
    if (mp->transformation)
      BSON_APPEND_UTF8(&m, "transformation", mp->transformation);
    bson_append_document_end(&arr, &m);
  }
  bson_append_array_end(doc, &arr);
  if (account_id)
    BSON_APPEND_UTF8(doc, "accountId", account_id);
  char desc[SEED_TEXT_MAX];
  snprintf(desc, sizeof desc, "Column mapping for %s statements (%s)", format_names[format],
           account_id ? "account export" : "any bank");
  BSON_APPEND_UTF8(doc, "description", desc);
  BSON_APPEND_BOOL(doc, "reverseAmounts", reverse);
  BSON_APPEND_INT64(doc, "createdAt", created);
  BSON_APPEND_INT64(doc, "updatedAt", created + SEED_DAY_MS);
}

static bool write_file_maps(gen_t *g, fzip_error_t *error) {
  batch_t *b = g->files;
  static const char *const generic[SEED_GENERIC_FILE_MAPS] = {
      "Generic CSV (amounts reversed)", "OFX / QFX standard", "Quicken QIF standard"};
  b->kind = FZIP_KIND_FILE_MAP;
  for (size_t a = 0; a < g->n_accounts; a++) {
    const account_t *acc = &g->accounts[a];
    char name[SEED_TEXT_MAX];
    snprintf(name, sizeof name, "%s — %s import", acc->name, format_names[acc->format]);
    append_file_map(batch_add(b), acc->map_id, name, acc->format, acc->id, false,
                    acc->open_day * SEED_DAY_MS);
  }
  for (int k = 0; k < SEED_GENERIC_FILE_MAPS; k++) {
    char id[FZIP_UUID_LEN + 1];
    seed_uuid(id, g->opt->seed, TAG_FILE_MAP_ID, 1000000 + (uint64_t)k);
    append_file_map(batch_add(b), id, generic[k], k, NULL, k == 0, SEED_BASE_DAY * SEED_DAY_MS);
  }
  g->stats->file_maps = g->n_accounts + SEED_GENERIC_FILE_MAPS;
  return batch_flush(g->store, g->user_id, b, error);
}

static bool write_accounts(gen_t *g, fzip_error_t *error) {
  batch_t *b = g->files;
  b->kind = FZIP_KIND_ACCOUNT;
  for (size_t a = 0; a < g->n_accounts; a++) {
    const account_t *acc = &g->accounts[a];
    char money[SEED_MONEY_MAX], notes[SEED_TEXT_MAX];
    bson_t *doc = batch_add(b);
    fmt_money(money, acc->balance, acc->inst->decimals);
    snprintf(notes, sizeof notes, "Opened at %s; statements as %s. Notiz: Zinsen prüfen ✓",
             acc->inst->name, format_names[acc->format]);
    BSON_APPEND_UTF8(doc, "accountId", acc->id);
    BSON_APPEND_UTF8(doc, "accountName", acc->name);
    BSON_APPEND_UTF8(doc, "accountType", acc_type_names[acc->type]);
    BSON_APPEND_UTF8(doc, "institution", acc->inst->name);
    BSON_APPEND_UTF8(doc, "balance", money);
    BSON_APPEND_UTF8(doc, "currency", acc->inst->currency);
    BSON_APPEND_UTF8(doc, "notes", notes);
    BSON_APPEND_BOOL(doc, "isActive", !(acc->type == ACC_OTHER && a >= ACC_N));
    BSON_APPEND_UTF8(doc, "defaultFileMapId", acc->map_id);
    if (acc->first_date) {
      BSON_APPEND_INT64(doc, "firstTransactionDate", acc->first_date);
      BSON_APPEND_INT64(doc, "lastTransactionDate", acc->last_date);
      BSON_APPEND_INT64(doc, "importsStartDate", acc->first_date);
      BSON_APPEND_INT64(doc, "importsEndDate", acc->last_date);
    }
    BSON_APPEND_INT64(doc, "createdAt", (acc->open_day - 7) * SEED_DAY_MS);
    BSON_APPEND_INT64(doc, "updatedAt", acc->updated_at);
  }
  g->stats->accounts = g->n_accounts;
  return batch_flush(g->store, g->user_id, b, error);
}

/* ---- file text ------------------------------------------------------------------- */

typedef struct {
  store_blob_writer_t *writer;
  fzip_sha256_t *hash;
  char buf[SEED_BLOB_BUFFER];
  size_t len;
  uint64_t total;
} blob_out_t;

static bool out_flush(blob_out_t *o, fzip_error_t *error) {
  if (o->len == 0)
    return true;
  if (!store_blob_writer_write(o->writer, o->buf, o->len, error))
    return false;
  fzip_sha256_update(o->hash, o->buf, o->len);
  o->total += o->len;
  o->len = 0;
  return true;
}

static bool out_printf(blob_out_t *o, fzip_error_t *error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends one formatted piece (at most SEED_LINE_MAX bytes). */
static bool out_printf(blob_out_t *o, fzip_error_t *error, const char *fmt, ...) {
  char line[SEED_LINE_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof line)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL,
                          "file line longer than %d bytes", SEED_LINE_MAX);
  if (o->len + (size_t)n > sizeof o->buf && !out_flush(o, error))
    return false;
  memcpy(o->buf + o->len, line, (size_t)n);
  o->len += (size_t)n;
  return true;
}

/* `s` escaped for the target format: CSV doubles quotes, OFX (SGML)
 * escapes &, < and >. */
static void escape_for(char *out, size_t cap, const char *s, int format) {
  size_t n = 0;
  for (; *s && n + 6 < cap; s++) {
    const char *rep = NULL;
    if (format == 0 && *s == '"')
      rep = "\"\"";
    else if (format == 1 && *s == '&')
      rep = "&amp;";
    else if (format == 1 && *s == '<')
      rep = "&lt;";
    else if (format == 1 && *s == '>')
      rep = "&gt;";
    if (rep) {
      memcpy(out + n, rep, strlen(rep));
      n += strlen(rep);
    } else {
      out[n++] = *s;
    }
  }
  out[n] = '\0';
}

/* A file's fixed facts, known before its transactions are drawn. */
typedef struct {
  uint64_t index;
  account_t *acc;
  char id[FZIP_UUID_LEN + 1];
  char blob_id[STORE_BLOB_ID_MAX + 1];
  char name[SEED_TEXT_MAX];
  int64_t day0, day1; /* period [day0, day1) */
  uint64_t count;
  int64_t processed_at;
  int64_t opening;
} file_plan_t;

static bool write_header(blob_out_t *o, const file_plan_t *fp, fzip_error_t *error) {
  const account_t *acc = fp->acc;
  civil_t s = civil_from_days(fp->day0), e = civil_from_days(fp->day1 - 1);
  if (acc->format == 0)
    return out_printf(o, error, "Date,Description,Amount,Balance,Memo,Check Number,Reference\r\n");
  if (acc->format == 2)
    return out_printf(o, error, "!Type:%s\n",
                      acc->type == ACC_CREDIT ? "CCard" : acc->type == ACC_INVEST ? "Invst"
                                                      : acc->type == ACC_OTHER    ? "Cash"
                                                                                  : "Bank");
  return out_printf(o, error,
                    "OFXHEADER:100\nDATA:OFXSGML\nVERSION:102\nSECURITY:NONE\nENCODING:UTF-8\n"
                    "CHARSET:NONE\nCOMPRESSION:NONE\nOLDFILEUID:NONE\nNEWFILEUID:NONE\n\n"
                    "<OFX>\n<SIGNONMSGSRSV1><SONRS><STATUS><CODE>0<SEVERITY>INFO</STATUS>"
                    "<DTSERVER>%04d%02d%02d<LANGUAGE>ENG</SONRS></SIGNONMSGSRSV1>\n"
                    "<BANKMSGSRSV1><STMTTRNRS><TRNUID>%s<STATUS><CODE>0<SEVERITY>INFO</STATUS>\n"
                    "<STMTRS><CURDEF>%s<BANKACCTFROM><BANKID>%s<ACCTID>%s<ACCTTYPE>%s"
                    "</BANKACCTFROM>\n<BANKTRANLIST><DTSTART>%04d%02d%02d<DTEND>%04d%02d%02d\n",
                    e.year, e.month, e.day, fp->id, acc->inst->currency, acc->inst->slug,
                    acc->id, acc->type == ACC_SAVINGS ? "SAVINGS" : acc->type == ACC_CREDIT ? "CREDITLINE" : "CHECKING",
                    s.year, s.month, s.day, e.year, e.month, e.day);
}

typedef struct {
  int64_t date;
  const char *amount, *balance, *description, *memo, *check, *fit_id, *type;
} txn_text_t;

static bool write_txn_text(blob_out_t *o, const file_plan_t *fp, const txn_text_t *t,
                           fzip_error_t *error) {
  civil_t d = civil_from_days(t->date / SEED_DAY_MS);
  char desc[SEED_TEXT_MAX * 2], memo[SEED_TEXT_MAX * 2];
  int format = fp->acc->format;
  escape_for(desc, sizeof desc, t->description, format);
  escape_for(memo, sizeof memo, t->memo, format);
  if (format == 0)
    return out_printf(o, error, "%04d-%02d-%02d,\"%s\",%s,%s,\"%s\",%s,%s\r\n", d.year, d.month,
                      d.day, desc, t->amount, t->balance, memo, t->check ? t->check : "",
                      t->fit_id);
  if (format == 2)
    return out_printf(o, error, "D%02d/%02d/%04d\nT%s\nP%s\nM%s\n%s%s%s^\n", d.month, d.day,
                      d.year, t->amount, desc, memo, t->check ? "N" : "",
                      t->check ? t->check : "", t->check ? "\n" : "");
  return out_printf(o, error,
                    "<STMTTRN><TRNTYPE>%s<DTPOSTED>%04d%02d%02d<TRNAMT>%s<FITID>%s%s%s"
                    "<NAME>%s<MEMO>%s</STMTTRN>\n",
                    t->type, d.year, d.month, d.day, t->amount, t->fit_id,
                    t->check ? "<CHECKNUM>" : "", t->check ? t->check : "", desc, memo);
}

static bool write_footer(blob_out_t *o, const file_plan_t *fp, int64_t closing,
                         fzip_error_t *error) {
  char money[SEED_MONEY_MAX];
  civil_t e = civil_from_days(fp->day1 - 1);
  if (fp->acc->format != 1)
    return true;
  fmt_money(money, closing, fp->acc->inst->decimals);
  return out_printf(o, error,
                    "</BANKTRANLIST>\n<LEDGERBAL><BALAMT>%s<DTASOF>%04d%02d%02d</LEDGERBAL>\n"
                    "</STMTRS></STMTTRNRS></BANKMSGSRSV1>\n</OFX>\n",
                    money, e.year, e.month, e.day);
}

/* ---- transactions ------------------------------------------------------------------ */

int64_t seed_transaction_hash(const char *account_id, int64_t date_ms, const char *amount,
                              const char *description) {
  char input[SEED_TEXT_MAX * 3], hex[FZIP_SHA256_HEX_LEN + 1];
  int n = snprintf(input, sizeof input, "%s|%" PRId64 "|%s|%s", account_id, date_ms, amount,
                   description);
  size_t len = n < 0 ? 0 : (size_t)n >= sizeof input ? sizeof input - 1 : (size_t)n;
  fzip_sha256_hex(hex, input, len);
  hex[16] = '\0';
  return (int64_t)strtoull(hex, NULL, 16);
}

/* A merchant allowed on this account type (every type has several). */
static int pick_merchant(rng_t *r, acc_type_t type) {
  for (;;) {
    int m = (int)rng_below(r, N_MERCHANTS);
    if (merchants[m].accounts & (1u << type))
      return m;
  }
}

/* The category of a merchant: its template, or sometimes an extra child. */
static size_t pick_category(const gen_t *g, rng_t *r, int merchant) {
  int t = merchants[merchant].category;
  int k;
  for (k = 0; k < g->n_extra_parents && g->extra_parents[k] != t; k++)
    ;
  if (k == g->n_extra_parents || !rng_pct(r, 40))
    return (size_t)t;
  int n_children = g->n_extra / g->n_extra_parents + (k < g->n_extra % g->n_extra_parents);
  if (n_children == 0)
    return (size_t)t;
  return (size_t)N_CAT_TEMPLATES + (size_t)k +
         (size_t)g->n_extra_parents * rng_below(r, (uint64_t)n_children);
}

static void append_assignment(bson_t *arr, const char *key, const gen_t *g, size_t cat,
                              bool primary, int64_t created, rng_t *r, int64_t *updated) {
  const category_t *c = &g->categories[cat];
  bool confirmed = primary && rng_pct(r, 60);
  bool manual = confirmed && rng_pct(r, 30);
  bson_t a;
  bson_append_document_begin(arr, key, -1, &a);
  BSON_APPEND_UTF8(&a, "categoryId", c->id);
  BSON_APPEND_UTF8(&a, "status", confirmed ? "confirmed" : "suggested");
  BSON_APPEND_INT32(&a, "confidence",
                    manual ? 100 : (int32_t)(primary ? rng_range(r, 60, 99) : rng_range(r, 15, 59)));
  BSON_APPEND_BOOL(&a, "isManual", manual);
  BSON_APPEND_INT64(&a, "assignedAt", created);
  if (confirmed) {
    int64_t at = created + rng_range(r, 60, 30 * 24 * 60) * 60000;
    BSON_APPEND_INT64(&a, "confirmedAt", at);
    if (at > *updated)
      *updated = at;
  }
  if (!manual)
    BSON_APPEND_UTF8(&a, "ruleId", c->rule_ids[rng_below(r, (uint64_t)c->n_rules)]);
  bson_append_document_end(arr, &a);
}

static void report_progress(gen_t *g) {
  if (!g->opt->progress || g->txn_index < g->next_progress)
    return;
  uint64_t step = g->opt->transactions / SEED_PROGRESS_STEPS;
  g->next_progress = g->txn_index + (step ? step : 1);
  fprintf(g->opt->progress, "seed: %" PRIu64 "/%" PRIu64 " transactions (%d%%), %.1f s\n",
          g->txn_index, g->opt->transactions,
          (int)(g->txn_index * 100 / (g->opt->transactions ? g->opt->transactions : 1)),
          (double)(fzip_monotonic_ms() - g->started_ms) / 1000.0);
  fflush(g->opt->progress);
}

/* Draws transaction i of file `fp`, appends its document to the batch and
 * its line to the file text; moves the account's running state. */
static bool gen_transaction(gen_t *g, const file_plan_t *fp, uint64_t i, int64_t *date_io,
                            blob_out_t *o, fzip_error_t *error) {
  account_t *acc = fp->acc;
  uint64_t t = g->txn_index;
  char id[FZIP_UUID_LEN + 1], desc[SEED_TEXT_MAX], memo[SEED_TEXT_MAX], amount[SEED_MONEY_MAX],
      balance[SEED_MONEY_MAX], check[24], fit_id[40], status_date[64];
  rng_t r;
  bson_t cats;
  rng_init(&r, g->opt->seed, TAG_TXN, t);
  seed_uuid(id, g->opt->seed, TAG_TXN_ID, t);

  /* spread evenly over the period, jittered, never going backwards */
  int64_t span = fp->day1 - fp->day0;
  int64_t day = fp->day0 + ((int64_t)i * span + (int64_t)rng_below(&r, (uint64_t)span)) /
                               (int64_t)fp->count;
  int64_t date = day * SEED_DAY_MS;
  if (date < *date_io)
    date = *date_io;
  *date_io = date;

  int m = pick_merchant(&r, acc->type);
  const merchant_t *mc = &merchants[m];
  if ((mc->flags & F_STORE) && rng_pct(&r, 50))
    snprintf(desc, sizeof desc, "%s #%04d", mc->name, (int)rng_range(&r, 1, 9999));
  else
    snprintf(desc, sizeof desc, "%s", mc->name);
  snprintf(memo, sizeof memo, "%s ••%04" PRIu64, memos[rng_below(&r, N_MEMOS)],
           acc->last_digits);
  int64_t minor = rng_range(&r, mc->lo, mc->hi) * acc->inst->permille / 1000;
  if (minor == 0)
    minor = mc->lo < 0 ? -1 : 1;
  acc->balance += minor;
  fmt_money(amount, minor, acc->inst->decimals);
  fmt_money(balance, acc->balance, acc->inst->decimals);
  bool has_check = (mc->flags & F_CHECK) && acc->type == ACC_CHECKING;
  if (has_check)
    snprintf(check, sizeof check, "%" PRIu64, acc->next_check++);
  snprintf(fit_id, sizeof fit_id, "%s%08" PRIu64, acc->inst->slug, t);
  fit_id[sizeof fit_id - 1] = '\0';
  const char *status = day >= SEED_BASE_DAY + SEED_SPAN_DAYS - 3 ? "pending"
                       : rng_pct(&r, 30)                          ? "reconciled"
                                                                  : "cleared";
  snprintf(status_date, sizeof status_date, "%s#%" PRId64, status, date);

  if (!batch_reserve(g, g->txns, error))
    return false;
  bson_t *doc = batch_add(g->txns);
  int64_t created = fp->processed_at, updated = created;
  BSON_APPEND_UTF8(doc, "transactionId", id);
  BSON_APPEND_UTF8(doc, "accountId", acc->id);
  BSON_APPEND_UTF8(doc, "fileId", fp->id);
  BSON_APPEND_INT64(doc, "date", date);
  BSON_APPEND_UTF8(doc, "description", desc);
  BSON_APPEND_UTF8(doc, "amount", amount);
  BSON_APPEND_UTF8(doc, "currency", acc->inst->currency);
  BSON_APPEND_UTF8(doc, "balance", balance);
  BSON_APPEND_INT64(doc, "importOrder", (int64_t)i + 1);
  BSON_APPEND_UTF8(doc, "transactionType", has_check ? "CHECK" : mc->type);
  BSON_APPEND_UTF8(doc, "memo", memo);
  if (has_check)
    BSON_APPEND_UTF8(doc, "checkNumber", check);
  BSON_APPEND_UTF8(doc, "fitId", fit_id);
  BSON_APPEND_UTF8(doc, "status", status);
  BSON_APPEND_UTF8(doc, "statusDate", status_date);
  BSON_APPEND_INT64(doc, "transactionHash", seed_transaction_hash(acc->id, date, amount, desc));
  size_t primary = pick_category(g, &r, m);
  BSON_APPEND_ARRAY_BEGIN(doc, "categories", &cats);
  append_assignment(&cats, "0", g, primary, true, created, &r, &updated);
  if (rng_pct(&r, 20)) {
    size_t other = (primary + 1 + rng_below(&r, g->n_categories - 1)) % g->n_categories;
    append_assignment(&cats, "1", g, other, false, created, &r, &updated);
  }
  bson_append_array_end(doc, &cats);
  BSON_APPEND_UTF8(doc, "primaryCategoryId", g->categories[primary].id);
  BSON_APPEND_INT64(doc, "createdAt", created);
  BSON_APPEND_INT64(doc, "updatedAt", updated);
  if (updated > acc->updated_at)
    acc->updated_at = updated;

  txn_text_t text = {date, amount, balance, desc, memo, has_check ? check : NULL, fit_id,
                     has_check ? "CHECK" : minor < 0 ? "DEBIT" : "CREDIT"};
  g->txn_index++;
  report_progress(g);
  return write_txn_text(o, fp, &text, error);
}

/* ---- files -------------------------------------------------------------------------- */

static void plan_file(gen_t *g, file_plan_t *fp, uint64_t f) {
  account_t *acc = &g->accounts[f % g->n_accounts];
  uint64_t j = f / g->n_accounts;
  int64_t days = SEED_BASE_DAY + SEED_SPAN_DAYS - acc->open_day;
  civil_t s;
  char label[32];
  rng_t r;
  rng_init(&r, g->opt->seed, TAG_FILE, f);
  fp->index = f;
  fp->acc = acc;
  seed_uuid(fp->id, g->opt->seed, TAG_FILE_ID, f);
  snprintf(fp->blob_id, sizeof fp->blob_id, "%s/%s", g->user_id, fp->id);
  fp->day0 = acc->open_day + (int64_t)j * days / (int64_t)acc->n_files;
  fp->day1 = acc->open_day + ((int64_t)j + 1) * days / (int64_t)acc->n_files;
  if (fp->day1 <= fp->day0)
    fp->day1 = fp->day0 + 1;
  fp->count = g->opt->transactions / g->n_files + (f < g->opt->transactions % g->n_files);
  fp->processed_at = fp->day1 * SEED_DAY_MS + rng_range(&r, 1, 72) * 3600000LL;
  fp->opening = acc->balance;
  s = civil_from_days(fp->day0);
  /* monthly-or-longer periods are named by month, shorter ones by day */
  if (days / (int64_t)acc->n_files >= 28)
    snprintf(label, sizeof label, "%04d-%02d", s.year, s.month);
  else
    snprintf(label, sizeof label, "%04d-%02d-%02d", s.year, s.month, s.day);
  const char *ext = format_names[acc->format];
  switch ((f / g->n_accounts + f) % 4) {
  case 0:
    snprintf(fp->name, sizeof fp->name, "%s_%s_%s.%s", acc->inst->slug,
             acc_type_names[acc->type], label, ext);
    break;
  case 1:
    snprintf(fp->name, sizeof fp->name, "%s %s statement %s.%s", acc->inst->name,
             acc_type_labels[acc->type], label, ext);
    break;
  case 2:
    snprintf(fp->name, sizeof fp->name, "Relevé de compte %s (%04" PRIu64 ").%s", label,
             acc->last_digits, ext);
    break;
  default:
    snprintf(fp->name, sizeof fp->name, "口座明細_%s.%s", label, ext);
  }
}

static void append_file_doc(bson_t *doc, const gen_t *g, const file_plan_t *fp,
                            const store_blob_info_t *info, int64_t first, int64_t last) {
  const account_t *acc = fp->acc;
  char opening[SEED_MONEY_MAX], closing[SEED_MONEY_MAX];
  bson_t range;
  int64_t upload = fp->processed_at - 600000;
  fmt_money(opening, fp->opening, acc->inst->decimals);
  fmt_money(closing, acc->balance, acc->inst->decimals);
  BSON_APPEND_UTF8(doc, "fileId", fp->id);
  BSON_APPEND_UTF8(doc, "fileName", fp->name);
  BSON_APPEND_INT64(doc, "uploadDate", upload);
  BSON_APPEND_INT64(doc, "fileSize", (int64_t)info->size);
  BSON_APPEND_UTF8(doc, "s3Key", fp->blob_id);
  BSON_APPEND_UTF8(doc, "processingStatus", "processed");
  BSON_APPEND_INT64(doc, "processedDate", fp->processed_at);
  BSON_APPEND_UTF8(doc, "fileFormat", format_names[acc->format]);
  BSON_APPEND_UTF8(doc, "accountId", acc->id);
  BSON_APPEND_UTF8(doc, "fileMapId", acc->map_id);
  BSON_APPEND_INT64(doc, "recordCount", (int64_t)fp->count);
  BSON_APPEND_DOCUMENT_BEGIN(doc, "dateRange", &range);
  BSON_APPEND_INT64(&range, "startDate", first);
  BSON_APPEND_INT64(&range, "endDate", last);
  bson_append_document_end(doc, &range);
  BSON_APPEND_UTF8(doc, "openingBalance", opening);
  BSON_APPEND_UTF8(doc, "closingBalance", closing);
  BSON_APPEND_UTF8(doc, "currency", acc->inst->currency);
  BSON_APPEND_INT64(doc, "duplicateCount", 0);
  BSON_APPEND_INT64(doc, "transactionCount", (int64_t)fp->count);
  BSON_APPEND_INT64(doc, "createdAt", upload);
  BSON_APPEND_INT64(doc, "updatedAt", fp->processed_at);
  BSON_APPEND_UTF8(doc, "sha256", info->sha256);
  (void)g;
}

/* One file: its text streamed into a fresh blob while its transactions are
 * drawn, then its document. */
static bool gen_file(gen_t *g, uint64_t f, blob_out_t *o, fzip_error_t *error) {
  file_plan_t fp;
  store_blob_info_t info;
  char hex[FZIP_SHA256_HEX_LEN + 1];
  int64_t date = 0, first = 0;
  bool ok = false;
  plan_file(g, &fp, f);
  o->len = 0;
  o->total = 0;
  fzip_sha256_reset(o->hash);
  /* a rerun replaces the bytes like it replaces the documents */
  if (!store_blob_delete(g->store, STORE_BUCKET_FILES, fp.blob_id, error) ||
      !store_blob_writer_new(&o->writer, g->store, STORE_BUCKET_FILES, fp.blob_id, error))
    goto done;
  if (!write_header(o, &fp, error))
    goto done;
  for (uint64_t i = 0; i < fp.count; i++) {
    if (!gen_transaction(g, &fp, i, &date, o, error))
      goto done;
    if (i == 0)
      first = date;
  }
  if (!write_footer(o, &fp, fp.acc->balance, error) || !out_flush(o, error) ||
      !store_blob_writer_commit(o->writer, &info, error))
    goto done;
  fzip_sha256_final_hex(o->hash, hex);
  if (info.size != o->total || strcmp(info.sha256, hex) != 0) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                   "blob %s: store reports %" PRIu64 " bytes sha256 %s, wrote %" PRIu64
                   " bytes sha256 %s", fp.blob_id, info.size, info.sha256, o->total, hex);
    goto done;
  }
  if (fp.count > 0) {
    if (!fp.acc->first_date || first < fp.acc->first_date)
      fp.acc->first_date = first;
    if (date > fp.acc->last_date)
      fp.acc->last_date = date;
  }
  if (!batch_reserve(g, g->files, error))
    goto done;
  append_file_doc(batch_add(g->files), g, &fp, &info, first, date);
  g->stats->files++;
  g->stats->file_bytes += info.size;
  ok = true;
done:
  store_blob_writer_destroy(o->writer);
  o->writer = NULL;
  if (!ok)
    fzip_error_prefix(error, "file %s (%s)", fp.id, fp.name);
  return ok;
}

static bool write_files_and_transactions(gen_t *g, fzip_error_t *error) {
  blob_out_t *o = calloc(1, sizeof *o);
  bool ok = false;
  if (!o || !(o->hash = fzip_sha256_new())) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  g->files->kind = FZIP_KIND_TRANSACTION_FILE;
  g->txns->kind = FZIP_KIND_TRANSACTION;
  for (uint64_t f = 0; f < g->n_files; f++)
    if (!gen_file(g, f, o, error))
      goto done;
  if (!batch_flush(g->store, g->user_id, g->txns, error) || !batch_flush(g->store, g->user_id, g->files, error))
    goto done;
  g->stats->transactions = g->txn_index;
  ok = true;
done:
  if (o)
    fzip_sha256_destroy(o->hash);
  free(o);
  return ok;
}

/* ---- analytics ------------------------------------------------------------------------ */

static void append_analytics(batch_t *b, const gen_t *g, size_t type, const char *period,
                             int64_t from_day, int64_t to_day, const account_t *acc, rng_t *r) {
  char id[FZIP_ID_MAX + 1], money[SEED_MONEY_MAX];
  bson_t data;
  bson_t *doc = batch_add(b);
  snprintf(id, sizeof id, "%s#%s%s%s", analytic_types[type], period, acc ? "#" : "",
           acc ? acc->id : "");
  BSON_APPEND_UTF8(doc, "analyticsId", id);
  BSON_APPEND_UTF8(doc, "analyticType", analytic_types[type]);
  BSON_APPEND_UTF8(doc, "timePeriod", period);
  if (acc)
    BSON_APPEND_UTF8(doc, "accountId", acc->id);
  BSON_APPEND_DOCUMENT_BEGIN(doc, "data", &data);
  BSON_APPEND_INT64(&data, "periodStart", from_day * SEED_DAY_MS);
  BSON_APPEND_INT64(&data, "periodEnd", to_day * SEED_DAY_MS - 1);
  fmt_money(money, rng_range(r, 100000, 900000), 2);
  BSON_APPEND_UTF8(&data, "income", money);
  fmt_money(money, -rng_range(r, 50000, 800000), 2);
  BSON_APPEND_UTF8(&data, "expenses", money);
  BSON_APPEND_INT32(&data, "score", (int32_t)rng_range(r, 0, 100));
  BSON_APPEND_UTF8(&data, "currency", acc ? acc->inst->currency : "USD");
  bson_append_document_end(doc, &data);
  BSON_APPEND_INT64(doc, "computedDate", (SEED_BASE_DAY + SEED_SPAN_DAYS + 1) * SEED_DAY_MS);
  BSON_APPEND_INT64(doc, "dataThroughDate", to_day * SEED_DAY_MS - 1);
  (void)g;
}

static bool write_analytics(gen_t *g, fzip_error_t *error) {
  static const struct {
    const char *label;
    int64_t from, to; /* days since the epoch, [from, to) */
  } periods[] = {{"2024-10", 20002, 20033}, {"2024-11", 20033, 20063},
                 {"2024-12", 20063, 20094}, {"2024-Q4", 20002, 20094},
                 {"2024", 19723, 20094}};
  batch_t *b = g->files;
  rng_t r;
  rng_init(&r, g->opt->seed, TAG_ANALYTICS, 0);
  b->kind = FZIP_KIND_ANALYTICS;
  for (size_t t = 0; t < N_ANALYTIC_TYPES; t++) {
    for (size_t p = 0; p < sizeof periods / sizeof periods[0]; p++) {
      if (!batch_reserve(g, b, error))
        return false;
      append_analytics(b, g, t, periods[p].label, periods[p].from, periods[p].to, NULL, &r);
      g->stats->analytics++;
    }
  }
  /* per-account views of the two account-level analytics */
  for (size_t a = 0; a < g->n_accounts; a++) {
    for (size_t t = 4; t <= 6; t += 2) {
      if (!batch_reserve(g, b, error))
        return false;
      append_analytics(b, g, t, "2024-12", 20063, 20094, &g->accounts[a], &r);
      g->stats->analytics++;
    }
  }
  return batch_flush(g->store, g->user_id, b, error);
}

/* ---- clean ------------------------------------------------------------------------------ */

/* Deletes the user's transaction files (bytes first, then documents) a
 * page at a time, so memory stays bounded. */
static bool clean_files(gen_t *g, fzip_error_t *error) {
  char **ids = calloc(STORE_BATCH_MAX, sizeof *ids);
  store_cursor_t *cur = NULL;
  bool ok = false;
  size_t n = 0;
  if (!ids)
    return fzip_error_oom(error, NULL);
  for (;;) {
    store_filter_t filter = {.limit = STORE_BATCH_MAX};
    const bson_t *doc;
    bson_iter_t it;
    if (!store_cursor_new(&cur, g->store, g->user_id, FZIP_KIND_TRANSACTION_FILE, &filter, error))
      goto done;
    for (n = 0; store_cursor_next(cur, &doc, error); n++) {
      ids[n] = NULL;
      if (bson_iter_init_find(&it, doc, "s3Key") && BSON_ITER_HOLDS_UTF8(&it) &&
          !store_blob_delete(g->store, STORE_BUCKET_FILES, bson_iter_utf8(&it, NULL), error))
        goto done;
      if (bson_iter_init_find(&it, doc, "fileId") && BSON_ITER_HOLDS_UTF8(&it))
        ids[n] = bson_strdup(bson_iter_utf8(&it, NULL));
    }
    if (fzip_error_is_set(error))
      goto done;
    store_cursor_destroy(cur);
    cur = NULL;
    if (n == 0)
      break;
    if (!store_entity_delete_many(NULL, g->store, g->user_id, FZIP_KIND_TRANSACTION_FILE,
                                  (const char *const *)ids, n, error))
      goto done;
    for (size_t i = 0; i < n; i++)
      bson_free(ids[i]);
    n = 0;
  }
  ok = true;
done:
  store_cursor_destroy(cur);
  for (size_t i = 0; i < n; i++)
    bson_free(ids[i]);
  free(ids);
  return ok;
}

static bool clean_user(gen_t *g, fzip_error_t *error) {
  if (!clean_files(g, error))
    return fzip_error_prefix(error, "cleaning transaction files");
  for (int k = FZIP_KIND_COUNT - 1; k >= 0; k--) {
    if (k != FZIP_KIND_TRANSACTION_FILE &&
        !store_entity_delete_all(NULL, g->store, g->user_id, (fzip_kind_t)k, error))
      return fzip_error_prefix(error, "cleaning %s", fzip_kind_info((fzip_kind_t)k)->name);
  }
  return true;
}

/* ---- entry points ----------------------------------------------------------------------- */

bool seed_generate(seed_stats_t *stats, store_t *store, const char *user_id,
                   const seed_options_t *options, fzip_error_t *error) {
  seed_stats_t local;
  gen_t g = {0};
  bool ok = false;
  if (!stats)
    stats = &local;
  memset(stats, 0, sizeof *stats);
  if (!store || !options || !user_id || !fzip_id_is_valid(user_id) ||
      strlen(user_id) > FZIP_USER_ID_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "seed needs a store and a valid user id");
  if (options->transactions > SEED_TRANSACTIONS_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "at most %llu transactions", (unsigned long long)SEED_TRANSACTIONS_MAX);
  g.store = store;
  g.user_id = user_id;
  g.opt = options;
  g.stats = stats;
  g.started_ms = fzip_monotonic_ms();
  g.txns = calloc(1, sizeof *g.txns);
  g.files = calloc(1, sizeof *g.files);
  if (!g.txns || !g.files) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  if ((options->clean && !clean_user(&g, error)) || !build_accounts(&g, error) ||
      !build_categories(&g, error) || !write_categories(&g, error) ||
      !write_file_maps(&g, error) || !write_files_and_transactions(&g, error) ||
      !write_accounts(&g, error) || (options->analytics && !write_analytics(&g, error)))
    goto done;
  ok = true;
done:
  stats->elapsed_ms = fzip_monotonic_ms() - g.started_ms;
  batch_discard(g.txns);
  batch_discard(g.files);
  free(g.txns);
  free(g.files);
  free(g.accounts);
  free(g.categories);
  return ok;
}

/* ---- mutate: a share of the transactions changed ------------------------------------------ */

/* The memo a mutated transaction gets: drawn, so that a second mutation
 * of the same transaction changes it again.  `out` is initialised. */
static void mutate_doc(bson_t *out, const bson_t *doc, uint64_t draw) {
  char memo[64];
  snprintf(memo, sizeof memo, "edited %016" PRIx64, draw);
  bson_copy_to_excluding_noinit(doc, out, "memo", NULL);
  BSON_APPEND_UTF8(out, "memo", memo);
}

/* One page of transactions (keyset after *after), the chosen ones
 * rewritten through `b` (empty, of kind TRANSACTION, holding a page);
 * *n_page = how many the page held (0: the end). */
static bool mutate_page(seed_stats_t *stats, store_t *store, const char *user_id, rng_t *r,
                        uint64_t threshold, char after[FZIP_ID_MAX + 1], batch_t *b,
                        size_t *n_page, fzip_error_t *error) {
  store_filter_t f = {.after_id = after[0] ? after : NULL, .limit = STORE_BATCH_MAX};
  const char *id_field = fzip_kind_info(FZIP_KIND_TRANSACTION)->id_field;
  store_cursor_t *cur = NULL;
  const bson_t *doc;
  size_t n;

  *n_page = 0;
  if (!store_cursor_new(&cur, store, user_id, FZIP_KIND_TRANSACTION, &f, error))
    return false;
  while (store_cursor_next(cur, &doc, error)) {
    bson_iter_t it;
    uint64_t pick = rng_next(r), draw = rng_next(r);
    (*n_page)++;
    if (bson_iter_init_find(&it, doc, id_field) && BSON_ITER_HOLDS_UTF8(&it))
      snprintf(after, FZIP_ID_MAX + 1, "%s", bson_iter_utf8(&it, NULL));
    if ((pick >> 11) >= threshold)
      continue;
    mutate_doc(batch_add(b), doc, draw);
  }
  store_cursor_destroy(cur);
  /* Written once the cursor is closed: the page is at most a batch. */
  if (fzip_error_is_set(error)) {
    batch_discard(b);
    return false;
  }
  n = b->n;
  if (!batch_flush(store, user_id, b, error))
    return false;
  stats->transactions += n;
  return true;
}

bool seed_mutate(seed_stats_t *stats, store_t *store, const char *user_id, uint64_t seed,
                 double percent, fzip_error_t *error) {
  /* A transaction is picked when 53 random bits fall below this. */
  uint64_t threshold = (uint64_t)(percent / 100.0 * 9007199254740992.0);
  char after[FZIP_ID_MAX + 1] = "", before[FZIP_ID_MAX + 1];
  batch_t *b = NULL;
  bool ok = false;
  rng_t r;
  size_t n_page;

  memset(stats, 0, sizeof *stats);
  if (!(percent > 0 && percent <= 100))
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "--mutate takes a percentage in (0, 100]");
  int64_t started = fzip_monotonic_ms();
  b = calloc(1, sizeof *b);
  if (!b)
    return fzip_error_oom(error, "mutate batch");
  b->kind = FZIP_KIND_TRANSACTION;
  rng_init(&r, seed, TAG_MUTATE, 0);
  do {
    memcpy(before, after, sizeof before);
    if (!mutate_page(stats, store, user_id, &r, threshold, after, b, &n_page, error)) {
      fzip_error_prefix(error, "mutating transactions");
      goto done;
    }
    stats->transactions_read += n_page;
    /* A full page whose documents carry no id would be read again forever. */
    if (n_page == STORE_BATCH_MAX && strcmp(before, after) == 0) {
      fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INTERNAL,
                     "mutating transactions: a page of %d has no %s to go on from",
                     STORE_BATCH_MAX, fzip_kind_info(FZIP_KIND_TRANSACTION)->id_field);
      goto done;
    }
  } while (n_page == STORE_BATCH_MAX);
  stats->elapsed_ms = fzip_monotonic_ms() - started;
  ok = true;
done:
  batch_discard(b);
  free(b);
  return ok;
}

/* ---- CLI ---------------------------------------------------------------------------------- */

static void usage(FILE *out) {
  fprintf(out,
          "usage: fzipd seed --user ID --transactions N [--store URI] [--seed S]\n"
          "                  [--analytics] [--clean] [--quiet]\n"
          "       fzipd seed --user ID --mutate PERCENT [--store URI] [--seed S]\n"
          "\n"
          "Fills a user's data with a deterministic synthetic HouseF3 dataset: accounts of\n"
          "every type, a category tree with rules, file maps, transaction files (real CSV,\n"
          "OFX and QIF bytes in the store) and exactly N transactions.  The same seed and N\n"
          "always give identical documents, ids and file bytes.\n"
          "\n"
          "  --store URI         sqlite:PATH or mongodb://... (default %s)\n"
          "  --user ID           the user whose data is written\n"
          "  --transactions N    number of transactions (0 to %llu)\n"
          "  --seed S            64-bit seed (default 1)\n"
          "  --analytics         also write analytics records\n"
          "  --clean             delete the user's entities and file bytes first\n"
          "  --mutate PERCENT    instead: rewrite PERCENT (0-100, decimals allowed) of the\n"
          "                      user's transactions with a new memo, chosen by --seed\n"
          "                      (incremental export tests and the bench)\n"
          "  --quiet             no progress lines on stderr\n"
          "  --help              this text\n",
          STORE_DEFAULT_SQLITE_URI, (unsigned long long)SEED_TRANSACTIONS_MAX);
}

static bool parse_u64(uint64_t *out, const char *s) {
  char *end = NULL;
  if (!s || !*s || *s == '-')
    return false;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || *end)
    return false;
  *out = v;
  return true;
}

/* "--name value" or "--name=value"; advances *i past what it consumed. */
static const char *flag_value(int argc, char **argv, int *i, const char *name) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) != 0)
    return NULL;
  if (argv[*i][n] == '=')
    return argv[*i] + n + 1;
  if (argv[*i][n] == '\0' && *i + 1 < argc)
    return argv[++*i];
  return NULL;
}

static int run_mutate(const store_options_t *sopt, const char *user, uint64_t seed,
                      double percent) {
  store_t *store = NULL;
  seed_stats_t stats;
  fzip_error_t err = {0};
  int status = 1;

  if (!store_open(&store, sopt, &err) ||
      !seed_mutate(&stats, store, user, seed, percent, &err)) {
    fprintf(stderr, "fzipd seed: %s\n", err.message);
    goto done;
  }
  printf("mutated user %s (seed %" PRIu64 ") in %s: %" PRIu64 " of %" PRIu64
         " transactions in %.2f s\n",
         user, seed, store_backend_name(store), stats.transactions, stats.transactions_read,
         (double)stats.elapsed_ms / 1000.0);
  status = 0;
done:
  store_destroy(store);
  return status;
}

int seed_main(int argc, char **argv) {
  seed_options_t opt = {.seed = 1, .progress = stderr};
  seed_stats_t stats;
  store_options_t sopt = {.uri = STORE_DEFAULT_SQLITE_URI};
  const char *user = NULL, *v;
  bool have_n = false, quiet = false;
  double mutate = 0;
  store_t *store = NULL;
  fzip_error_t err = {0};
  int status = 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--analytics") == 0) {
      opt.analytics = true;
    } else if (strcmp(argv[i], "--clean") == 0) {
      opt.clean = true;
    } else if (strcmp(argv[i], "--quiet") == 0) {
      quiet = true;
    } else if ((v = flag_value(argc, argv, &i, "--store"))) {
      sopt.uri = v;
    } else if ((v = flag_value(argc, argv, &i, "--user"))) {
      user = v;
    } else if ((v = flag_value(argc, argv, &i, "--transactions"))) {
      if (!parse_u64(&opt.transactions, v) || opt.transactions > SEED_TRANSACTIONS_MAX)
        goto bad_usage;
      have_n = true;
    } else if ((v = flag_value(argc, argv, &i, "--seed"))) {
      if (!parse_u64(&opt.seed, v))
        goto bad_usage;
    } else if ((v = flag_value(argc, argv, &i, "--mutate"))) {
      char *end = NULL;
      mutate = strtod(v, &end);
      if (!*v || *end || !(mutate > 0 && mutate <= 100))
        goto bad_usage;
    } else {
      fprintf(stderr, "fzipd seed: unknown or incomplete argument '%s'\n", argv[i]);
      goto bad_usage;
    }
  }
  if (!user || have_n == (mutate > 0))
    goto bad_usage;
  if (quiet)
    opt.progress = NULL;
  if (mutate > 0) {
    status = run_mutate(&sopt, user, opt.seed, mutate);
    goto done;
  }
  if (!store_open(&store, &sopt, &err) || !seed_generate(&stats, store, user, &opt, &err)) {
    fprintf(stderr, "fzipd seed: %s\n", err.message);
    goto done;
  }
  printf("seeded user %s (seed %" PRIu64 ") in %s: %" PRIu64 " accounts, %" PRIu64
         " categories (%" PRIu64 " rules), %" PRIu64 " file maps, %" PRIu64
         " transaction files (%" PRIu64 " bytes), %" PRIu64 " transactions, %" PRIu64
         " analytics in %.2f s\n",
         user, opt.seed, store_backend_name(store), stats.accounts, stats.categories,
         stats.rules, stats.file_maps, stats.files, stats.file_bytes, stats.transactions,
         stats.analytics, (double)stats.elapsed_ms / 1000.0);
  status = 0;
  goto done;
bad_usage:
  usage(stderr);
  status = 2;
done:
  store_destroy(store);
  return status;
}
