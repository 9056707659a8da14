#!/usr/bin/env bash
# Debian packages WeasyPrint needs to write PDFs (pango, harfbuzz, fontconfig, a font), installed only where
# missing. Needs root (or sudo) and apt-get; elsewhere it says what to install and goes on.
set -u
need=()
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
have_lib 'libpango-1.0.so.0' || need+=(libpango-1.0-0)
have_lib 'libpangoft2-1.0.so.0' || need+=(libpangoft2-1.0-0)
have_lib 'libharfbuzz.so.0' || need+=(libharfbuzz0b)
have_lib 'libfontconfig.so.1' || need+=(libfontconfig1)
fc-list 2>/dev/null | grep -qi 'DejaVuSans' || need+=(fonts-dejavu-core)
((${#need[@]})) || exit 0
echo "sysdeps: installing ${need[*]} for WeasyPrint (PDF reports)"
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
if command -v apt-get >/dev/null && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
else
  echo "sysdeps: cannot install; please install: ${need[*]} (PDF reports will fail until then)" >&2
fi
