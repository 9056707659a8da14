#!/usr/bin/env bash
# Debian packages the project needs, installed only where missing. Needs root (or sudo) and apt-get;
# elsewhere it says what to install and goes on.
#   scripts/sysdeps.sh         what reports need: WeasyPrint's libraries (pango, harfbuzz, fontconfig), DejaVu
#                              fonts, and a CJK font (fonts-noto-cjk) for Japanese PDF reports
#   scripts/sysdeps.sh --dev   also what the tests need: Chromium (the browser test of the HTML report) and
#                              poppler-utils (pdftoppm, to look at PDF pages)
set -u
dev=0; [ "${1:-}" = "--dev" ] && dev=1
need=()
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
have_lib 'libpango-1.0.so.0' || need+=(libpango-1.0-0)
have_lib 'libpangoft2-1.0.so.0' || need+=(libpangoft2-1.0-0)
have_lib 'libharfbuzz.so.0' || need+=(libharfbuzz0b)
have_lib 'libfontconfig.so.1' || need+=(libfontconfig1)
fc-list 2>/dev/null | grep -qi 'DejaVuSans' || need+=(fonts-dejavu-core)
fc-list :lang=ja family 2>/dev/null | grep -q 'Noto Sans CJK JP' || need+=(fonts-noto-cjk)
if ((dev)); then
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null \
    || need+=(chromium)
  command -v pdftoppm >/dev/null || need+=(poppler-utils)
fi
((${#need[@]})) || exit 0
echo "sysdeps: installing ${need[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
if command -v apt-get >/dev/null && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
  # a failed install is reported, not fatal: what needs a missing package says so (tests skip with the reason)
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need[@]}" || echo "sysdeps: apt-get could not install ${need[*]}; continuing without them" >&2
else
  echo "sysdeps: cannot install; please install: ${need[*]} (PDF reports, Japanese PDFs or the browser test" \
       "need them)" >&2
fi
