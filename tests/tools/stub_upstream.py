#!/usr/bin/env python3
"""A stub OpenAI-compatible upstream on loopback, for the router's tests.

    stub_upstream.py --name NAME [--port 0] [--lp -0.1]

prints "listening on PORT" and answers POST /v1/chat/completions and
/v1/completions (streamed or not), GET /v1/models, and two test routes:
GET /stats (requests seen, by mode; TCP connections accepted) and POST /control {"healthy": bool,
"mode": MODE} (a mode for every request from then on; "" clears it).

A request picks its behaviour with a directive anywhere in its prompt:
  #stub:ok         an answer "stub NAME says hello ..." (the default)
  #stub:500        HTTP 500          #stub:429   HTTP 429 with Retry-After
  #stub:timeout    sleeps 30 s before answering
  #stub:malformed  200 with a body that is not JSON
  #stub:slow       streams, 0.3 s between events
  #stub:drop       streams two events, then closes the connection
  #stub:crlf       streams with CRLF line endings (as SSE allows)
  #stub:context    a 400 saying the prompt is too long, worded as
                   --context-wording says (openai, vllm, anthropic, llamacpp)
  #lp:X            every token's log-probability is X (default --lp)
"""
import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDINGS = {
    "openai": (400, {"error": {"message": "This model's maximum context length is 8192 tokens. However, your "
                               "messages resulted in 9000 tokens.", "type": "invalid_request_error",
                               "param": "messages", "code": "context_length_exceeded"}}),
    "vllm": (400, {"object": "error", "message": "This model's max_model_len is 4096, but the request has 5000 "
                   "tokens", "type": "BadRequestError", "code": 400}),
    "anthropic": (400, {"type": "error", "error": {"type": "invalid_request_error",
                                                    "message": "prompt is too long: 210000 tokens > 200000 maximum"}}),
    "llamacpp": (400, {"error": {"code": 400, "message": "the request exceeds the available context size, try "
                                 "increasing it", "type": "exceed_context_size_error"}}),
}

state = {"healthy": True, "mode": "", "count": {}, "connections": 0, "lock": threading.Lock()}


def prompt_text(body):
    parts = []
    for m in body.get("messages") or []:
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts.extend(p.get("text", "") for p in c if isinstance(p, dict))
    p = body.get("prompt")
    if isinstance(p, str):
        parts.append(p)
    elif isinstance(p, list):
        parts.extend(x for x in p if isinstance(x, str))
    return "\n".join(parts)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        with state["lock"]:
            state["connections"] += 1  # TCP connections accepted, for the keep-alive test

    def send_json(self, status, obj, extra=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/v1/models":
            if not state["healthy"]:
                return self.send_json(503, {"error": {"message": "unhealthy", "type": "server_error"}})
            return self.send_json(200, {"object": "list", "data": [{"id": ARGS.name, "object": "model"}]})
        if self.path == "/stats":
            with state["lock"]:
                return self.send_json(200, {"count": dict(state["count"]), "connections": state["connections"]})
        self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        if self.path == "/control":
            ctl = json.loads(raw or b"{}")
            with state["lock"]:
                if "healthy" in ctl:
                    state["healthy"] = bool(ctl["healthy"])
                if "mode" in ctl:
                    state["mode"] = ctl["mode"]
                if ctl.get("reset"):
                    state["count"] = {}
            return self.send_json(200, {"ok": True})
        if self.path not in ("/v1/chat/completions", "/v1/completions"):
            return self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
        if ARGS.key and self.headers.get("Authorization") != "Bearer " + ARGS.key:
            return self.send_json(401, {"error": {"message": "bad key", "type": "invalid_request_error",
                                                  "code": "invalid_api_key"}})
        try:
            body = json.loads(raw)
        except ValueError:
            return self.send_json(400, {"error": {"message": "bad json", "type": "invalid_request_error"}})
        text = prompt_text(body)
        m = re.search(r"#stub:(\w+)", text)
        mode = state["mode"] or (m.group(1) if m else "ok")
        if not state["healthy"]:
            mode = "500"
        lpm = re.search(r"#lp:(-?[0-9.]+)", text)
        lp = float(lpm.group(1)) if lpm else ARGS.lp
        with state["lock"]:
            state["count"][mode] = state["count"].get(mode, 0) + 1
        chat = self.path.endswith("chat/completions")
        if mode == "500":
            return self.send_json(500, {"error": {"message": "internal failure", "type": "server_error"}})
        if mode == "429":
            return self.send_json(429, {"error": {"message": "rate limited", "type": "rate_limit_error"}},
                                  {"Retry-After": "1"})
        if mode == "context":
            status, obj = WORDINGS[ARGS.context_wording]
            return self.send_json(status, obj)
        if mode == "timeout":
            time.sleep(30)
        if mode == "malformed":
            data = b'{"choices": [ {"message": '
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 16
        words = ("stub %s says hello and then some more words to fill the answer" % ARGS.name).split()
        tokens = [(w if i == 0 else " " + w) for i, w in enumerate((words * 10)[:min(int(max_tokens), 8)])]
        usage = {"prompt_tokens": max(1, len(text) // 4), "completion_tokens": len(tokens),
                 "total_tokens": max(1, len(text) // 4) + len(tokens)}
        want_lp = body.get("logprobs") is not None and body.get("logprobs") is not False  # 0 asks too
        created = int(time.time())
        if body.get("stream") or mode in ("slow", "drop", "crlf"):
            return self.stream(body, chat, tokens, usage, created, mode, lp if want_lp else None)
        content = "".join(tokens)
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "length"}
            if want_lp:
                choice["logprobs"] = {"content": [{"token": t, "logprob": lp, "bytes": list(t.encode()),
                                                   "top_logprobs": []} for t in tokens]}
            obj = {"id": "chatcmpl-stub", "object": "chat.completion", "created": created,
                   "model": body.get("model"), "choices": [choice], "usage": usage}
        else:
            choice = {"index": 0, "text": content, "finish_reason": "length"}
            if want_lp:
                choice["logprobs"] = {"tokens": tokens, "token_logprobs": [lp] * len(tokens)}
            obj = {"id": "cmpl-stub", "object": "text_completion", "created": created, "model": body.get("model"),
                   "choices": [choice], "usage": usage}
        self.send_json(200, obj)

    def stream(self, body, chat, tokens, usage, created, mode, lp):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        eol = b"\r\n" if mode == "crlf" else b"\n"

        def event(obj):
            self.wfile.write(b"data: " + json.dumps(obj).encode() + eol + eol)
            self.wfile.flush()

        base = {"id": "chatcmpl-stub" if chat else "cmpl-stub",
                "object": "chat.completion.chunk" if chat else "text_completion", "created": created,
                "model": body.get("model")}
        try:
            for i, t in enumerate(tokens):
                if mode == "drop" and i == 2:
                    self.connection.shutdown(2)
                    return
                if mode == "slow":
                    time.sleep(0.3)
                if chat:
                    delta = {"content": t}
                    if i == 0:
                        delta["role"] = "assistant"
                    choice = {"index": 0, "delta": delta, "finish_reason": None}
                else:
                    choice = {"index": 0, "text": t, "finish_reason": None}
                event(dict(base, choices=[choice]))
            last = {"index": 0, "delta": {}, "finish_reason": "length"} if chat else \
                {"index": 0, "text": "", "finish_reason": "length"}
            event(dict(base, choices=[last]))
            if (body.get("stream_options") or {}).get("include_usage"):
                event(dict(base, choices=[], usage=usage))
            self.wfile.write(b"data: [DONE]" + eol + eol)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="stub")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--lp", type=float, default=-0.1)
    ap.add_argument("--key", default="")
    ap.add_argument("--context-wording", default="openai", choices=sorted(WORDINGS))
    ARGS = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    srv.daemon_threads = True
    srv.request_queue_size = 512
    print("listening on %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
