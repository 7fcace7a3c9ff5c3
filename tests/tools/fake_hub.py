#!/usr/bin/env python3
"""fake_hub.py - a stand-in for the Hugging Face hub on loopback, for
tests/cli/test_pull.sh.  Only the parts `ember pull` uses:

  GET /api/models/ORG/REPO                  {"id", "siblings": [{"rfilename"}]}
  GET /api/models/ORG/REPO/tree/main?recursive=true
                                            [{"type", "oid", "size", "path",
                                              "lfs": {"oid": SHA256, "size",
                                                      "pointerSize"}}]
  GET /ORG/REPO/resolve/main/PATH           302 to /cdn/ORG/REPO/PATH, as the
                                            hub sends downloads to its CDN
  GET /cdn/ORG/REPO/PATH                    the file, with Range support and
                                            X-Linked-Etag / X-Linked-Size

Usage:
  fake_hub.py --repo ORG/REPO=DIR [--repo ...] --port-file F [--log F]
              [--cut-after N] [--bad-sha] [--token T]

  --repo        serve every file under DIR (recursively) as that repository
  --port-file   the chosen port (the server binds 127.0.0.1:0) is written here
  --log         one line per request: METHOD PATH RANGE AUTHORIZATION
  --cut-after N the first download of each file stops after N bytes: the
                connection closes mid-body (the headers promised more)
  --bad-sha     the API reports a wrong sha256 for every file
  --token T     every request needs "Authorization: Bearer T" (else 401)
  --page-size N the tree listing comes N entries a page, each page but the
                last with a Link: <...&cursor=K>; rel="next" header
"""
import argparse
import hashlib
import http.server
import json
import os
import sys
import threading
import urllib.parse


def scan(repos):
    """{repo: {path: (abs, size, sha256)}}"""
    out = {}
    for spec in repos:
        name, d = spec.split("=", 1)
        files = {}
        for root, _, names in os.walk(d):
            for n in sorted(names):
                full = os.path.join(root, n)
                rel = os.path.relpath(full, d)
                h = hashlib.sha256()
                with open(full, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                files[rel] = (full, os.path.getsize(full), h.hexdigest())
        out[name] = files
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", action="append", default=[])
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log")
    ap.add_argument("--cut-after", type=int, default=-1)
    ap.add_argument("--bad-sha", action="store_true")
    ap.add_argument("--token")
    ap.add_argument("--page-size", type=int, default=0)
    args = ap.parse_args()
    repos = scan(args.repo)
    cut_done = set()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def log_request_line(self):
            if args.log:
                with lock, open(args.log, "a") as f:
                    f.write("%s %s range=%s auth=%s\n" % (self.command, self.path,
                            self.headers.get("Range", "-"),
                            "yes" if self.headers.get("Authorization") else "no"))

        def send_json(self, obj, code=200, link=None):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            if link:
                self.send_header("Link", '<%s>; rel="next"' % link)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def fail(self, code, msg):
            self.send_json({"error": msg}, code)

        def find_repo(self, path):
            for name in repos:
                if path == name or path.startswith(name + "/"):
                    return name, path[len(name) + 1:]
            return None, None

        def do_GET(self):
            self.log_request_line()
            if args.token and self.headers.get("Authorization") != "Bearer " + args.token:
                return self.fail(401, "Invalid credentials")
            url = urllib.parse.urlparse(self.path)
            path = urllib.parse.unquote(url.path)
            if path.startswith("/api/models/"):
                repo, rest = self.find_repo(path[len("/api/models/"):])
                if repo is None:
                    return self.fail(404, "Repository not found")
                files = repos[repo]
                if rest in ("", None):
                    return self.send_json({"id": repo, "siblings": [{"rfilename": p} for p in sorted(files)]})
                if rest == "tree/main":
                    tree = []
                    for p, (_, size, sha) in sorted(files.items()):
                        if args.bad_sha:
                            sha = hashlib.sha256(sha.encode()).hexdigest()
                        tree.append({"type": "file", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": size,
                                     "path": p, "lfs": {"oid": sha, "size": size, "pointerSize": 134}})
                    if args.page_size > 0:
                        q = urllib.parse.parse_qs(url.query)
                        start = int(q.get("cursor", ["0"])[0])
                        end = start + args.page_size
                        link = None
                        if end < len(tree):
                            link = "http://%s:%d%s?recursive=true&cursor=%d" % (
                                self.server.server_address[0], self.server.server_address[1], url.path, end)
                        return self.send_json(tree[start:end], link=link)
                    return self.send_json(tree)
                return self.fail(404, "Not found")
            if path.startswith("/cdn/"):
                repo, rest = self.find_repo(path[len("/cdn/"):])
                if repo is None or rest not in repos[repo]:
                    return self.fail(404, "Entry not found")
                return self.send_file(repo, rest)
            repo, rest = self.find_repo(path[1:])
            if repo is not None and rest.startswith("resolve/main/"):
                p = rest[len("resolve/main/"):]
                if p not in repos[repo]:
                    return self.fail(404, "Entry not found")
                self.send_response(302)
                self.send_header("Location", "/cdn/%s/%s" % (repo, urllib.parse.quote(p)))
                self.send_header("X-Linked-Etag", '"%s"' % repos[repo][p][2])
                self.send_header("X-Linked-Size", str(repos[repo][p][1]))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            return self.fail(404, "Not found")

        def send_file(self, repo, p):
            full, size, sha = repos[repo][p]
            start = 0
            rng = self.headers.get("Range")
            if rng:
                if not rng.startswith("bytes=") or not rng.endswith("-"):
                    return self.fail(400, "only open ranges")
                start = int(rng[len("bytes="):-1])
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", "bytes */%d" % size)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            self.send_response(206 if rng else 200)
            self.send_header("Content-Length", str(size - start))
            self.send_header("ETag", '"%s"' % sha)
            self.send_header("Accept-Ranges", "bytes")
            if rng:
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, size - 1, size))
            self.end_headers()
            limit = size - start
            with lock:
                key = (repo, p)
                if args.cut_after >= 0 and key not in cut_done:
                    cut_done.add(key)
                    limit = min(limit, args.cut_after)
            with open(full, "rb") as f:
                f.seek(start)
                self.wfile.write(f.read(limit))
            if limit < size - start:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, args.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
