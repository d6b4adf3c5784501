#!/usr/bin/env python3
"""import.analytics_e2e: the analytics an import regenerates, end to end.

A real fzipd (SQLite, or MongoDB through FerretDB with FZIP_TEST_STORE=
mongodb), real grpcio clients.  A seeded user's package is imported into a
fresh user; the user's analytics are then read back through a complete
export with include_analytics and compared, record by record, with values
computed here from the same export's transactions in decimal.Decimal, by
the rules docs/IMPORT.md "Regenerated analytics" gives (cash_flow,
category_trends, payment_patterns, merchant_analysis).  A second package
is rewritten so that a merchant list is cut (150 merchants, 100 listed),
some transactions have no currency and some no primary category (the cut
of category lists is in tests/import/test_analytics.c).
"""
import datetime
import hashlib
import json
import os
import re
import sys
from decimal import ROUND_DOWN, Decimal

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, unique_user  # noqa: E402
from fzip_e2e import (Client, check, import_package, jpb, read_package,  # noqa: E402
                      rewrite_package)

SCALE = float(os.environ.get("FZIP_TEST_SCALE", "1"))
TRANSACTIONS = max(200, int(3000 * SCALE))
TYPES = ["cash_flow", "category_trends", "payment_patterns", "merchant_analysis"]
TOP_CATEGORIES = 100   # ANALYTICS_TOP_CATEGORIES
TOP_MERCHANTS = 100    # ANALYTICS_TOP_MERCHANTS
MERCHANT_MAX = 63      # ANALYTICS_MERCHANT_MAX - 1 bytes
ID_MAX = 128           # FZIP_ID_MAX
UNIT = Decimal("0.000001")
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
SEP = "\x1f"


# ---- the rules, in Decimal ------------------------------------------------

def units(amount):
    """analytics_parse_decimal: digits past the sixth are dropped."""
    return Decimal(amount).quantize(UNIT, rounding=ROUND_DOWN)


def fmt(d):
    """analytics_format_decimal: 2 to 6 fraction digits."""
    s = format(d.quantize(UNIT), "f")
    whole, frac = s.split(".")
    while len(frac) > 2 and frac.endswith("0"):
        frac = frac[:-1]
    if whole == "-0" and set(frac) == {"0"}:
        whole = "0"
    return whole + "." + frac


def merchant(description):
    """analytics_merchant_of, on the UTF-8 bytes."""
    toks = [t for t in re.split(rb"[\x00-\x20\x7f]+", description.encode())
            if any(c >= 0x80 or chr(c).isalpha() for c in t)]
    b = b" ".join(t.lower() for t in toks)[:MERCHANT_MAX]
    start = len(b)
    while start and (b[start - 1] & 0xC0) == 0x80:
        start -= 1
    if start and b[start - 1] >= 0xC0:
        lead = b[start - 1]
        want = 4 if lead >= 0xF0 else 3 if lead >= 0xE0 else 2
        if len(b) - (start - 1) < want:
            b = b[:start - 1]
    return b.rstrip(b" ").decode()


class Bucket:
    def __init__(self):
        self.inflow = self.outflow = Decimal(0)
        self.count = 0
        self.first = self.last = None

    def add(self, u, date):
        if u >= 0:
            self.inflow += u
        else:
            self.outflow -= u
        self.count += 1
        self.first = date if self.first is None else min(self.first, date)
        self.last = date if self.last is None else max(self.last, date)


def sums(inflow, outflow, count):
    return {"inflow": fmt(inflow), "outflow": fmt(outflow), "net": fmt(inflow - outflow),
            "transactionCount": count}


def tally(records, key, member, u, date):
    records.setdefault(key, {}).setdefault(member, Bucket()).add(u, date)


def ranked(members, list_name, member_name, count_name, top, dates, previous=None):
    order = sorted(members.items(), key=lambda kv: (-kv[1].outflow, -kv[1].inflow,
                                                    -kv[1].count, kv[0].encode()))
    out = {list_name: [], count_name: len(order)}
    for name, b in order[:top]:
        e = {member_name: name}
        e.update(sums(b.inflow, b.outflow, b.count))
        if dates:
            e.update(firstDate=b.first, lastDate=b.last)
        if previous is not None:
            e["previousOutflow"] = fmt(previous(name))
        out[list_name].append(e)
    rest = [b for _, b in order[top:]]
    if rest:
        out["other"] = {count_name: len(rest)}
        out["other"].update(sums(sum((b.inflow for b in rest), Decimal(0)),
                                 sum((b.outflow for b in rest), Decimal(0)),
                                 sum(b.count for b in rest)))
    return out


def record(type_, period, qualifier, by_account, data, members):
    rid = "%s#%s%s" % (type_, period, "#" + qualifier if qualifier else "")
    if len(rid.encode()) > ID_MAX:  # a long accountId: named by its digest
        rid = "%s#%s#~%s" % (type_, period, hashlib.sha256(qualifier.encode()).hexdigest())
    rec = {"analyticsId": rid, "analyticType": type_, "timePeriod": period,
           "dataThroughDate": max(b.last for b in members.values())}
    if by_account:
        rec["accountId"] = qualifier
    elif qualifier:
        data = dict({"currency": qualifier}, **data)
    rec["data"] = data
    return rec


def previous_month(period):
    year, month = (int(x) for x in period.rsplit("-", 1))
    year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return "%04d-%02d" % (year, month)


def expected(transactions):
    cash, cats, pats, merch = {}, {}, {}, {}
    for t in transactions:
        u, date = units(t["amount"]), t["date"]
        day = datetime.datetime.fromtimestamp(date // 1000, datetime.timezone.utc)
        year = "%04d" % day.year
        month = "%s-%02d" % (year, day.month)
        cur = t.get("currency", "")
        tally(cash, (month, t["accountId"]), "", u, date)
        tally(cats, (month, cur), t.get("primaryCategoryId", ""), u, date)
        tally(pats, (year, cur), "w%d" % (day.weekday() + 1), u, date)
        tally(pats, (year, cur), "d%02d" % day.day, u, date)
        m = merchant(t.get("description", ""))
        if m:
            tally(merch, ("overall", cur), m, u, date)
    out = {}
    for (period, acc), ms in cash.items():
        b = ms[""]
        out_rec = record("cash_flow", period, acc, True, sums(b.inflow, b.outflow, b.count), ms)
        out[out_rec["analyticsId"]] = out_rec
    for (period, cur), ms in cats.items():
        data = {}
        named = {k: v for k, v in ms.items() if k}
        before = cats.get((previous_month(period), cur), {})

        def previous(cat):
            return before[cat].outflow if cat in before else Decimal(0)
        if "" in ms:
            data["uncategorized"] = sums(ms[""].inflow, ms[""].outflow, ms[""].count)
            data["uncategorized"]["previousOutflow"] = fmt(previous(""))
        data.update(ranked(named, "categories", "categoryId", "categoryCount",
                           TOP_CATEGORIES, False, previous))
        r = record("category_trends", period, cur, False, data, ms)
        out[r["analyticsId"]] = r
    for (period, cur), ms in pats.items():
        z = Bucket()
        data = {"byWeekday": [], "byDayOfMonth": []}
        for i, name in enumerate(WEEKDAYS):
            b = ms.get("w%d" % (i + 1), z)
            data["byWeekday"].append(dict({"weekday": name}, **sums(b.inflow, b.outflow, b.count)))
        for d in range(1, 32):
            b = ms.get("d%02d" % d, z)
            data["byDayOfMonth"].append(dict({"day": d}, **sums(b.inflow, b.outflow, b.count)))
        r = record("payment_patterns", period, cur, False, data, ms)
        out[r["analyticsId"]] = r
    for (period, cur), ms in merch.items():
        data = ranked(ms, "merchants", "merchant", "merchantCount", TOP_MERCHANTS, True)
        r = record("merchant_analysis", period, cur, False, data, ms)
        out[r["analyticsId"]] = r
    return out


# ---- through fzipd ----------------------------------------------------------

def export_all(c):
    """(transactions, analytics) of the user, from one complete export."""
    _, _, data = c.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE,
                                       include_analytics=True)
    z, _ = read_package(data)
    txns = json.loads(z.read("data/transactions.json"))["transactions"]
    names = set(z.namelist())
    analytics = (json.loads(z.read("data/analytics.json"))["analytics"]
                 if "data/analytics.json" in names else [])
    return txns, analytics


def compare(got_records, want):
    got = {}
    for r in got_records:
        r = dict(r)
        check(isinstance(r.pop("computedDate", None), int), "no computedDate: %r" % r)
        r.pop("userId", None)
        got[r["analyticsId"]] = r
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    check(not missing and not extra, "records missing %s, unexpected %s" % (missing[:5], extra[:5]))
    for rid, w in want.items():
        check(got[rid] == w, "%s differs:\n got %s\nwant %s" % (
            rid, json.dumps(got[rid], sort_keys=True)[:2000], json.dumps(w, sort_keys=True)[:2000]))
    return {r["analyticType"] for r in want.values()}


def import_and_check(srv, package):
    target = Client(srv, unique_user("an-dst"))
    job = import_package(target, package)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "import ended %s: %s" % (
        jpb.ImportStatus.Name(job.status), job.error.message))
    check(list(job.result.analytics_types) == TYPES,
          "analytics_types %r" % list(job.result.analytics_types))
    check(job.result.analytics_regenerated, "analytics_regenerated is false")
    txns, analytics = export_all(target)
    want = expected(txns)
    check(set(TYPES) == compare(analytics, want), "not every type has records")
    return want


def test_seeded_package_regenerates_every_type(srv):
    source = Client(srv, unique_user("an-src"))
    srv.seed(source.user, TRANSACTIONS, seed=7)
    _, _, package = source.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE)
    want = import_and_check(srv, package)
    print("  %d records over %d transactions" % (len(want), TRANSACTIONS), flush=True)


def test_cut_lists_missing_currency_and_category(srv):
    """More merchants and categories than a record lists, transactions with
    no currency or no primary category."""
    source = Client(srv, unique_user("an-src2"))
    srv.seed(source.user, TRANSACTIONS, seed=11)
    _, _, package = source.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE)

    def edit(parsed):
        cats = [c["categoryId"] for c in parsed["data/categories.json"]["categories"]]
        for i, t in enumerate(parsed["data/transactions.json"]["transactions"]):
            t.pop("transactionHash", None)  # covers the description
            # 150 merchants ("store x17"; the "#0042" store number is dropped)
            t["description"] = "Store X%d #%04d" % (i % 150, i)
            if i % 7 == 3:
                t.pop("currency", None)
            else:  # one currency, so that its record has all 150
                t["currency"] = "USD"
            if i % 5 == 1:
                t.pop("primaryCategoryId", None)
            else:
                t["primaryCategoryId"] = cats[i % len(cats)]
    package = rewrite_package(package, edit)
    want = import_and_check(srv, package)
    cut = [r for r in want.values()
           if "other" in r["data"] and r["analyticType"] == "merchant_analysis"]
    check(cut, "no merchant_analysis record was cut at %d" % TOP_MERCHANTS)
    check(any(r["analyticsId"].count("#") == 1 for r in want.values()
              if r["analyticType"] != "cash_flow"), "no record of transactions without a currency")
    check(any("uncategorized" in r["data"] for r in want.values()
              if r["analyticType"] == "category_trends"), "no uncategorized sums")


def main():
    checks = Checks()
    with Fzipd() as srv:
        checks.run(test_seeded_package_regenerates_every_type, srv)
        checks.run(test_cut_lists_missing_currency_and_category, srv)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
