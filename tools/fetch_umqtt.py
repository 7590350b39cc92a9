"""Fetch micropython-umqtt.simple 1.3.4 through pip's configured index, check its sha256, unpack.

The sdist has no setup.py, so `pip install`/`pip download` refuse it; we read the index page
ourselves (PEP 503 simple API) and keep only the module file in a git-ignored build folder.
"""

import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request

NAME = "micropython-umqtt.simple"
VERSION = "1.3.4"
SHA256 = "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f"
FILENAME = "%s-%s.tar.gz" % (NAME, VERSION)


def index_urls():
    urls = []
    for key in ("global.index-url", "install.index-url"):
        try:
            out = subprocess.run(
                [sys.executable, "-m", "pip", "config", "get", key],
                capture_output=True, text=True, timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            urls.append(out)
    env = os.environ.get("PIP_INDEX_URL")
    if env:
        urls.insert(0, env)
    urls.append("https://pypi.org/simple")
    return urls


def find_link(index):
    page_url = index.rstrip("/") + "/micropython-umqtt-simple/"
    with urllib.request.urlopen(page_url, timeout=60) as r:
        html = r.read().decode("utf-8", "replace")
    for href in re.findall(r'href="([^"]+)"', html):
        if FILENAME in urllib.parse.unquote(href):
            return urllib.parse.urljoin(page_url, href)
    raise RuntimeError("%s not listed at %s" % (FILENAME, page_url))


def main(dest):
    target = os.path.join(dest, "umqtt", "simple.py")
    if os.path.exists(target):
        return 0
    errors = []
    for index in index_urls():
        try:
            url = find_link(index)
            with urllib.request.urlopen(url, timeout=60) as r:
                data = r.read()
        except Exception as e:  # try the next index
            errors.append("%s: %s" % (index, e))
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != SHA256:
            sys.exit("sha256 mismatch for %s: %s" % (url, digest))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.getmember("%s-%s/umqtt/simple.py" % (NAME, VERSION))
            src = tar.extractfile(member).read()
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(os.path.join(dest, "umqtt", "__init__.py"), "w") as f:
            f.write("")
        with open(target + ".tmp", "wb") as f:
            f.write(src)
        os.rename(target + ".tmp", target)
        print("umqtt.simple %s -> %s (sha256 ok)" % (VERSION, target))
        return 0
    sys.exit("could not fetch %s:\n  %s" % (FILENAME, "\n  ".join(errors)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/lib"))
