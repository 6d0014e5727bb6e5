"""Open a page in Debian's headless Chromium: the DOM after scripts ran, console messages,
and a PNG screenshot. Test-only helper (the product never starts a browser)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Flags from the machine notes: headless as root, no network chatter, a fresh profile.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0")
CONSOLE = re.compile(r":CONSOLE(?:\(\d+\)|:\d+)\]\s*\"(?P<msg>.*)\", source: (?P<src>\S+)")
TIMEOUT_S = 120


def chromium() -> str:
    """The Chromium binary; skip locally when absent, fail under CI (CI installs it)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: .ci/run installs the Debian package 'chromium'")
    pytest.skip("chromium is not installed (apt-get install chromium)")


@dataclass
class Rendered:
    dom: str
    console: list[str]
    screenshot: Path


def render(page: Path, tmp: Path, size: tuple[int, int] = (1200, 3000)) -> Rendered:
    """Load ``page`` twice (DOM dump, then screenshot), collecting console messages."""
    exe = chromium()
    url = page.resolve().as_uri()
    messages: list[str] = []

    def run(*extra: str, profile: str) -> str:
        proc = subprocess.run([exe, *FLAGS, f"--user-data-dir={tmp / profile}", *extra, url],
                              capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        messages.extend(m.group("msg") for m in CONSOLE.finditer(proc.stderr))
        return proc.stdout

    dom = run("--dump-dom", profile="dom")
    shot = tmp / "page.png"
    run(f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}", "--hide-scrollbars",
        profile="shot")
    return Rendered(dom, messages, shot)
