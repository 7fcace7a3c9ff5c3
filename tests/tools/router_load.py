#!/usr/bin/env python3
"""Fires requests at a router for its tests: N requests, C at a time, each
thread on its own keep-alive connection (or a new one per request with
--fresh), and prints {"status": {code: count}, "backend": {name: count}}.

    router_load.py --port P --n 200 --c 200 --model auto [--key K]
                   [--prompt TEXT] [--max-tokens 8] [--stream] [--fresh]
"""
import argparse
import http.client
import json
import threading
from collections import Counter


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--c", type=int, default=1)
    ap.add_argument("--model", required=True)
    ap.add_argument("--key", default="")
    ap.add_argument("--prompt", default="hello")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--fresh", action="store_true")
    a = ap.parse_args()
    body = json.dumps({"model": a.model, "messages": [{"role": "user", "content": a.prompt}],
                       "max_tokens": a.max_tokens, "stream": a.stream})
    headers = {"Content-Type": "application/json"}
    if a.key:
        headers["Authorization"] = "Bearer " + a.key
    status, backend = Counter(), Counter()
    lock = threading.Lock()
    left = [a.n]
    barrier = threading.Barrier(min(a.c, a.n))

    def worker():
        conn = None
        barrier.wait()
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            try:
                if conn is None or a.fresh:
                    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)
                conn.request("POST", "/v1/chat/completions", body, headers)
                r = conn.getresponse()
                r.read()
                code, b = r.status, r.getheader("x-ember-backend") or "-"
                if a.fresh or r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                code, b = "error", "-"
                conn = None
            with lock:
                status[str(code)] += 1
                backend[b] += 1

    threads = [threading.Thread(target=worker) for _ in range(min(a.c, a.n))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"status": dict(status), "backend": dict(backend)}))


if __name__ == "__main__":
    main()
