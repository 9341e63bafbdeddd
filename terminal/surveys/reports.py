"""Reports over the daily roll-ups: count, CSAT, mean score, loyalty index, reasons, comments,
trend — per administrator, desk, branch and period. Every figure can be recomputed from the raw
answers (``figures_from_answers``); a test keeps the two equal."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time as dtime, timedelta

from terminal.limits import ascii_int
from payments.csvsafe import Number
from terminal.surveys.antigaming import clean_text, mask_personal
from terminal.surveys.scoring import is_detractor, is_promoter, is_top, score5
from terminal.surveys.store import SurveyStore

GROUPS = ("branch", "desk", "admin")
# Answers-table condition for "not part of a burst still waiting for review" (reviewed ones follow
# their decision through ``counted``).
PENDING_BURST_EXCLUDED = " AND NOT (flag IS 'burst' AND review IS NULL)"


FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)   # the dates a report filter accepts


@dataclass
class Filters:
    date_from: date
    date_to: date
    branch_id: str = ""
    desk: str = ""
    admin_id: int | None = None
    include_flagged: bool = True

    @classmethod
    def from_args(cls, args, today: date) -> "Filters":
        def parse_day(text, default):
            try:
                day = date.fromisoformat(text) if text else default
            except ValueError:
                return default
            # Reports add days and take epoch times around these dates: years 1 and 9999 overflow.
            return day if FIRST_DAY <= day <= LAST_DAY else default

        date_to = parse_day(args.get("to"), today)
        date_from = parse_day(args.get("from"), date_to - timedelta(days=29))
        if date_from > date_to:
            date_from, date_to = date_to, date_from
        admin = args.get("admin", "")
        return cls(date_from, date_to, args.get("branch", ""), args.get("desk", ""),
                   ascii_int(admin, 0, 2**62, default=None, name="admin"), args.get("flagged", "1") != "0")

    def where(self, prefix: str = "") -> tuple[str, list]:
        clauses, params = [f"{prefix}day BETWEEN ? AND ?"], [self.date_from.isoformat(), self.date_to.isoformat()]
        if self.branch_id:
            clauses.append(f"{prefix}branch_id = ?")
            params.append(self.branch_id)
        if self.desk:
            clauses.append(f"{prefix}desk = ?")
            params.append(self.desk)
        if self.admin_id is not None:
            clauses.append(f"{prefix}admin_id = ?")
            params.append(self.admin_id)
        return " AND ".join(clauses), params

    def query_args(self) -> dict:
        args = {"from": self.date_from.isoformat(), "to": self.date_to.isoformat()}
        if self.branch_id:
            args["branch"] = self.branch_id
        if self.desk:
            args["desk"] = self.desk
        if self.admin_id is not None:
            args["admin"] = str(self.admin_id)
        if not self.include_flagged:
            args["flagged"] = "0"
        return args


@dataclass
class Figures:
    n: int = 0
    top2: int = 0
    sum_score5: float = 0.0
    nps_n: int = 0
    nps_pro: int = 0
    nps_det: int = 0
    comments: int = 0
    distribution: list[int] = field(default_factory=lambda: [0] * 5)

    @property
    def csat(self) -> float | None:
        """Share of the two best faces, in per cent."""
        return 100 * self.top2 / self.n if self.n else None

    @property
    def mean(self) -> float | None:
        """Mean mark on a 1–5 scale."""
        return self.sum_score5 / self.n if self.n else None

    @property
    def loyalty(self) -> float | None:
        """Promoters (9–10) minus detractors (0–6), in per cent of those who answered: −100…100."""
        return 100 * (self.nps_pro - self.nps_det) / self.nps_n if self.nps_n else None


SUMS = ("SUM(n), SUM(top2), TOTAL(sum_score5), SUM(nps_n), SUM(nps_pro), SUM(nps_det), SUM(comments), "
        "SUM(c1), SUM(c2), SUM(c3), SUM(c4), SUM(c5)")


def _figures(row) -> Figures:
    if row is None or row[0] is None:
        return Figures()
    return Figures(row[0], row[1], row[2], row[3], row[4], row[5], row[6], list(row[7:12]))


def bucket_of(filters: Filters) -> str:
    days = (filters.date_to - filters.date_from).days + 1
    return "day" if days <= 45 else "week" if days <= 200 else "month"


def _bucket_key(day: str, bucket: str) -> str:
    if bucket == "day":
        return day
    if bucket == "month":
        return day[:7]
    d = date.fromisoformat(day)
    return (d - timedelta(days=d.weekday())).isoformat()   # the Monday of its week


def _add(total: Figures, f: Figures) -> None:
    total.n += f.n
    total.top2 += f.top2
    total.sum_score5 += f.sum_score5
    total.nps_n += f.nps_n
    total.nps_pro += f.nps_pro
    total.nps_det += f.nps_det
    total.comments += f.comments
    total.distribution = [a + b for a, b in zip(total.distribution, f.distribution)]


def report(store: SurveyStore, filters: Filters, group: str = "desk", comments_limit: int = 50) -> dict:
    where, params = filters.where()
    burst = "" if filters.include_flagged else " AND burst = 0"
    # One pass over the daily roll-ups in key order (no sort): the totals and the trend both come
    # from these rows.
    daily = [(r[0], _figures(r[1:])) for r in store.query(
        f"SELECT day, {SUMS} FROM stats WHERE {where}{burst} GROUP BY day ORDER BY day", params)]
    totals = Figures()
    for _, f in daily:
        _add(totals, f)
    # flagged: answers of bursts still waiting for review (the include filter applies to them only).
    repeats, flagged, genuine, excluded, late = store.query(
        f"SELECT TOTAL(repeats), TOTAL(CASE WHEN burst THEN n END), TOTAL(reviewed_genuine), "
        f"TOTAL(reviewed_excluded), TOTAL(late) FROM stats WHERE {where}", params).fetchone()

    group_cols = {"branch": "branch_id", "desk": "branch_id, desk", "admin": "admin_id"}[group]
    breakdown = [{"key": tuple(r[:-12]), "figures": _figures(r[-12:])} for r in store.query(
        f"SELECT {group_cols}, {SUMS} FROM stats WHERE {where}{burst} GROUP BY {group_cols} "
        f"ORDER BY {group_cols}", params)]
    breakdown = [b for b in breakdown if b["figures"].n]

    bucket = bucket_of(filters)
    buckets: dict[str, Figures] = {}
    for day, f in daily:
        _add(buckets.setdefault(_bucket_key(day, bucket), Figures()), f)
    trend = [{"bucket": key, "figures": f} for key, f in sorted(buckets.items()) if f.n]

    reason_rows = store.query(
        f"SELECT survey_id, version, question_id, option_id, SUM(n) FROM reason_stats INDEXED BY reason_by_option "
        f"WHERE {where}{burst} "
        "GROUP BY 1, 2, 3, 4", params).fetchall()
    reasons = _rank_reasons(store, reason_rows)

    start, end = _epoch_range(store, filters)
    comment_where, comment_params = filters.where("")
    comment_rows = store.query(
        f"SELECT answered_at, branch_id, desk, admin_id, main, score, scale, comment, survey_id, version FROM answers "
        f"WHERE comment IS NOT NULL AND answered_at >= ? AND answered_at < ? AND {comment_where} AND counted = 1"
        f"{'' if filters.include_flagged else PENDING_BURST_EXCLUDED} ORDER BY answered_at DESC LIMIT ?",
        [start, end, *comment_params, comments_limit]).fetchall()
    comments = [{"at": r[0], "branch_id": r[1], "desk": r[2], "admin_id": r[3], "main": r[4],
                 "score5": score5(r[5], r[6]), "text": mask_personal(clean_text(r[7])), "survey_id": r[8],
                 "version": r[9]}
                for r in comment_rows]
    return {"totals": totals, "repeats": int(repeats), "flagged": int(flagged), "reviewed_genuine": int(genuine),
            "reviewed_excluded": int(excluded), "late": int(late), "breakdown": breakdown,
            "group": group, "trend": trend, "bucket": bucket, "reasons": reasons, "comments": comments}


def _rank_reasons(store: SurveyStore, rows) -> list[dict]:
    """Follow-up answers merged across versions by (question, option), most frequent first;
    labels from the newest version that has them."""
    merged: dict[tuple[str, str, str], dict] = {}
    for survey_id, version, question_id, option_id, n in rows:
        if not n:
            continue
        key = (survey_id, question_id, option_id)
        entry = merged.setdefault(key, {"survey_id": survey_id, "question_id": question_id,
                                        "option_id": option_id, "n": 0, "version": 0})
        entry["n"] += n
        entry["version"] = max(entry["version"], version)
    total_by_question: dict[tuple[str, str], int] = {}
    for (survey_id, question_id, _), entry in merged.items():
        total_by_question[(survey_id, question_id)] = total_by_question.get((survey_id, question_id), 0) + entry["n"]
    ranked = sorted(merged.values(), key=lambda e: (-e["n"], e["question_id"], e["option_id"]))
    for entry in ranked:
        definition = store.definition(entry["survey_id"], entry["version"])
        entry["question"] = {lang: definition.question_text(entry["question_id"], lang) for lang in ("uk", "en")}
        entry["label"] = {lang: definition.label(entry["question_id"], entry["option_id"], lang)
                          for lang in ("uk", "en")}
        entry["share"] = 100 * entry["n"] / total_by_question[(entry["survey_id"], entry["question_id"])]
    return ranked


def _epoch_range(store: SurveyStore, filters: Filters) -> tuple[float, float]:
    start = datetime.combine(filters.date_from, dtime.min, store.zone).timestamp()
    end = datetime.combine(filters.date_to + timedelta(days=1), dtime.min, store.zone).timestamp()
    return start, end


def figures_from_answers(answers: list[dict], include_flagged: bool = True) -> Figures:
    """The same figures straight from raw answer rows (the reference the roll-ups must match)."""
    f = Figures()
    for a in answers:
        pending_burst = a["flag"] == "burst" and a.get("review") is None
        if not a["counted"] or (not include_flagged and pending_burst):
            continue
        f.n += 1
        f.top2 += is_top(a["score"], a["scale"])
        f.sum_score5 += score5(a["score"], a["scale"])
        f.distribution[a["score"] - 1] += 1
        if a["nps"] is not None:
            f.nps_n += 1
            f.nps_pro += is_promoter(a["nps"])
            f.nps_det += is_detractor(a["nps"])
        f.comments += a["comment"] is not None
    return f


def reasons_from_answers(answers: list[dict]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for a in answers:
        if a["counted"]:
            for question_id, option_id in json.loads(a["path"]) if isinstance(a["path"], str) else a["path"]:
                counts[(question_id, option_id)] = counts.get((question_id, option_id), 0) + 1
    return counts


CSV_COLUMNS = ("uuid", "answered_at", "day", "branch_id", "desk", "tablet_id", "administrator", "survey_id",
               "version", "main", "score", "scale", "score_1_5", "follow_ups", "nps", "comment", "counted",
               "flag", "received_at", "burst_review")


def csv_rows(store: SurveyStore, filters: Filters, admin_names: dict[int, str]):
    """Raw answers of the period (comments masked), for the CSV export; a generator, so a year of
    answers streams without being held in memory."""
    where, params = filters.where()
    if not filters.include_flagged:
        where += PENDING_BURST_EXCLUDED
    cursor = store.query(
        f"SELECT uuid, answered_at, day, branch_id, desk, tablet_id, admin_id, survey_id, version, main, score, "
        f"scale, path, nps, comment, counted, flag, received_at, review FROM answers WHERE {where} "
        "ORDER BY answered_at",
        params)
    zone = store.zone
    for r in cursor:
        (uuid, at, day, branch, desk, tablet, admin, survey, version, main, score, scale, path, nps, comment,
         counted, flag, received, review) = r
        yield (uuid, datetime.fromtimestamp(at, zone).isoformat(timespec="seconds"), day, branch, desk, tablet,
               admin_names.get(admin, ""), survey, version, main, score, scale, Number(f"{score5(score, scale):.2f}"),
               " ".join(f"{q}={o}" for q, o in json.loads(path)), "" if nps is None else nps,
               mask_personal(clean_text(comment)) if comment else "", counted, flag or "",
               datetime.fromtimestamp(received, zone).isoformat(timespec="seconds"), review or "")
