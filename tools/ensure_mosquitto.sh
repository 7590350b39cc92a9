#!/bin/sh
# Make sure a mosquitto broker binary is available for the integration tests.
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing mosquitto with apt-get"
    (apt-get install -y -qq mosquitto >/dev/null 2>&1) || \
        (apt-get update -qq && apt-get install -y -qq mosquitto) || exit 1
    exit 0
fi
echo "mosquitto is missing: install it (Debian/Ubuntu: sudo apt-get install mosquitto)" >&2
exit 1
