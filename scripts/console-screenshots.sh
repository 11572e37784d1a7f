#!/usr/bin/env bash
# Regenerates docs/img/console-board-{zh,en}.png: a real gateway with alarms of every priority
# and several states, the console in headless chromium at 1920x1080 (tests/test_console_ui.py);
# and docs/img/incident-review-zh.png: the review page of an entrapment played on the fake clock
# (tests/test_incident_review.py); and docs/img/console-{reports,followups}-zh.png: the reports
# and follow-ups pages with a few reports in every state (tests/test_console_service_loop.py).
# Needs what the test suite needs (scripts/setup.sh --test) plus chromium, Playwright and a CJK
# font (apt-get install chromium fonts-wqy-microhei; .venv/bin/pip install playwright).
set -euo pipefail
cd "$(dirname "$0")/.."
PROPGW_DOC_SCREENSHOTS=1 .venv/bin/pytest -q -p no:cacheprovider tests/test_console_ui.py \
  -k test_board_layout_and_screenshots_in_both_languages
PROPGW_DOC_SCREENSHOTS=1 .venv/bin/pytest -q -p no:cacheprovider tests/test_incident_review.py \
  -k test_the_review_page_renders_in_chromium_and_prints_on_a4
PROPGW_DOC_SCREENSHOTS=1 .venv/bin/pytest -q -p no:cacheprovider tests/test_console_service_loop.py \
  -k test_screenshots_of_the_reports_and_follow_ups_pages
ls -l docs/img/console-board-zh.png docs/img/console-board-en.png docs/img/incident-review-zh.png \
  docs/img/console-reports-zh.png docs/img/console-followups-zh.png
