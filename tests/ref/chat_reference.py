#!/usr/bin/env python3
"""chat_reference.py - renders chat templates with Python's jinja2 the way
Hugging Face transformers does (apply_chat_template): an
ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and the
loopcontrols extension, plus raise_exception, strftime_now and a tojson
that calls json.dumps(ensure_ascii=False).

    chat_reference.py TEMPLATE_DIR CONVERSATIONS.json OUT_DIR [SNIPPETS.json]

For every conversation it writes OUT_DIR/conv/NAME.json (the input of
tests/tools/render_template), and for every template T and conversation C
OUT_DIR/expected/T__C.out (the rendering, UTF-8) or T__C.err (the error).
SNIPPETS.json is a list of small templates that exercise one feature
each; snippet N is written to OUT_DIR/snippets/sN.jinja and rendered for
the conversation "system_multi" only (into expected/sN__system_multi.*).
"""
import json
import os
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

BOS, EOS = "<s>", "</s>"


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    tdir, conv_path, out = sys.argv[1:4]
    with open(conv_path, encoding="utf-8") as f:
        spec = json.load(f)
    os.makedirs(os.path.join(out, "conv"), exist_ok=True)
    os.makedirs(os.path.join(out, "expected"), exist_ok=True)
    convs = {}
    for name, c in spec["conversations"].items():
        c = dict(c)
        if isinstance(c.get("tools"), str):
            c["tools"] = spec[c["tools"]]
        c.setdefault("bos_token", BOS)
        c.setdefault("eos_token", EOS)
        convs[name] = c
        with open(os.path.join(out, "conv", name + ".json"), "w", encoding="utf-8") as f:
            json.dump(c, f, ensure_ascii=False)
    env = environment()
    jobs = []
    for tname in sorted(os.listdir(tdir)):
        if tname.endswith(".jinja"):
            with open(os.path.join(tdir, tname), encoding="utf-8") as f:
                jobs.append((tname[: -len(".jinja")], f.read(), convs))
    if len(sys.argv) > 4:
        os.makedirs(os.path.join(out, "snippets"), exist_ok=True)
        with open(sys.argv[4], encoding="utf-8") as f:
            snippets = json.load(f)
        for i, source in enumerate(snippets):
            with open(os.path.join(out, "snippets", f"s{i}.jinja"), "w", encoding="utf-8", newline="") as f:
                f.write(source)
            jobs.append((f"s{i}", source, {"system_multi": convs["system_multi"]}))
    for base, source, job_convs in jobs:
        try:
            template = env.from_string(source)
        except Exception as e:  # a template jinja2 cannot compile
            template, compile_error = None, e
        for cname, c in job_convs.items():
            path = os.path.join(out, "expected", f"{base}__{cname}")
            try:
                if template is None:
                    raise compile_error
                kwargs = dict(c.get("extra", {}))
                kwargs.update(messages=c["messages"], add_generation_prompt=c["add_generation_prompt"],
                              bos_token=c["bos_token"], eos_token=c["eos_token"])
                if c.get("tools") is not None:
                    kwargs["tools"] = c["tools"]
                text = template.render(**kwargs)
                with open(path + ".out", "wb") as f:
                    f.write(text.encode("utf-8"))
            except Exception as e:
                with open(path + ".err", "w", encoding="utf-8") as f:
                    f.write(f"{type(e).__name__}: {e}\n")


if __name__ == "__main__":
    main()
