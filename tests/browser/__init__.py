"""Real-Chromium tests of the pages the HTTP service shows people."""
