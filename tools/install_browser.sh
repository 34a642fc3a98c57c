#!/usr/bin/env bash
# The real browser of the book's browser test (tests/book/test_browser.py): Debian's Chromium and ChromeDriver.
# Installs them when missing and when this machine can (Debian, root); otherwise says why and leaves the test to skip.
set -u
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
    echo "install_browser: not root on a Debian system: the browser test will be skipped (install chromium and chromium-driver to run it)"
    exit 0
fi
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/tmp/normface-apt.log 2>&1; then
    apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver \
        >/tmp/normface-apt.log 2>&1 || echo "install_browser: apt-get failed (see /tmp/normface-apt.log): the browser test will be skipped"
fi
exit 0
