#!/usr/bin/env bash
# Makes sure headless Chromium (Debian's package) is installed, with a Japanese font, for the
# report page's browser test (tests/it/page.rs). Does nothing when both are there; otherwise
# installs what is missing with apt-get, through sudo when not root.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
# Without a CJK font the screenshot shows boxes for Japanese names (the DOM check passes anyway).
[ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || missing+=(fonts-noto-cjk)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "error: missing ${missing[*]} and no apt-get to install them; install Chromium by hand" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "error: missing ${missing[*]}; run as root, or install sudo, to install them" >&2
        exit 1
    fi
    sudo=(sudo)
fi
echo "installing ${missing[*]} (Debian's packages) for the report page's browser test" >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
test -x /usr/bin/chromium
