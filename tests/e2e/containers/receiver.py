"""A webhook receiver: prints each POST body on one line of its output (the container's log)."""

from __future__ import annotations

import http.server


class Hook(http.server.BaseHTTPRequestHandler):
    """Answers 200 to every POST after printing its body."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"] or 0))
        print(body.decode(), flush=True)
        self.send_response(200)
        self.end_headers()


if __name__ == "__main__":
    http.server.HTTPServer(("0.0.0.0", 8000), Hook).serve_forever()
