"""Incident reviews (事后复盘) and the monthly service summary, built from what the gateway
already records: the work-order history, the alarm journal and the evidence values.

* :func:`build_review` — one incident's timeline and response-window verdicts;
* :func:`monthly_summary` — a month's orders by category and building, window compliance and
  response times;
* :func:`review_html`, :func:`summary_html` — self-contained pages that print on A4.
"""

from gateway.review._build import build_review, gather_review
from gateway.review._html import review_html, summary_html
from gateway.review._labels import duration
from gateway.review._model import (
    IncidentReview,
    MonthlySummary,
    TimelineEntry,
    WindowVerdict,
)
from gateway.review._summary import gather_summary, month_range, monthly_summary

__all__ = ["IncidentReview", "MonthlySummary", "TimelineEntry", "WindowVerdict",
           "build_review", "duration", "gather_review", "gather_summary", "month_range",
           "monthly_summary", "review_html", "summary_html"]
