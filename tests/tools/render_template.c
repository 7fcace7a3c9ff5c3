/*
 * render_template - renders a chat template for one conversation, for the
 * exactness test against Python's jinja2 (tests/ref/test_templates.sh).
 *
 *   render_template TEMPLATE.jinja CONVERSATION.json
 *
 * CONVERSATION.json: {"messages": [...], "tools": [...] (optional),
 * "add_generation_prompt": bool, "bos_token": str, "eos_token": str,
 * "extra": {...} (optional template variables)}.  The rendered text goes
 * to stdout byte for byte.  Exit 0 on success; 1 when the template raised
 * or failed (the message on stderr, prefixed "error: "); 2 on bad usage or
 * unreadable files.
 */
#include "chat/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[len] = 0;
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s TEMPLATE.jinja CONVERSATION.json\n", argv[0]);
        return 2;
    }
    char *source = read_file(argv[1]);
    if (!source) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    json_error_t jerr;
    json_t *conv = json_load_file(argv[2], 0, &jerr);
    if (!conv || !json_is_object(conv)) {
        fprintf(stderr, "cannot read %s: %s\n", argv[2], jerr.text);
        free(source);
        json_decref(conv);
        return 2;
    }
    em_chat_template *t = NULL;
    em_status st = em_chat_template_init(&t, source);
    free(source);
    int rc = 0;
    if (st != EM_OK) {
        fprintf(stderr, "error: %s\n", em_last_error());
        rc = 1;
    } else {
        char *out = NULL;
        st = em_chat_render_ex(t, json_object_get(conv, "messages"), json_object_get(conv, "tools"),
                               json_is_true(json_object_get(conv, "add_generation_prompt")),
                               json_string_value(json_object_get(conv, "bos_token")),
                               json_string_value(json_object_get(conv, "eos_token")),
                               json_object_get(conv, "extra"), NULL, &out);
        if (st != EM_OK) {
            fprintf(stderr, "error: %s\n", em_last_error());
            rc = 1;
        } else {
            fwrite(out, 1, strlen(out), stdout);
            free(out);
        }
    }
    em_chat_template_free(t);
    json_decref(conv);
    return rc;
}
