/*
 * render_template - renders a chat template for one conversation, for the
 * exactness test against Python's jinja2 (tests/ref/test_templates.sh).
 *
 *   render_template TEMPLATE.jinja CONVERSATION.json
 *   render_template --builtin NAME      (prints a built-in template's source)
 *
 * CONVERSATION.json: {"messages": [...], "tools": [...] (optional),
 * "add_generation_prompt": bool, "bos_token": str, "eos_token": str,
 * "extra": {...} (optional template variables)}.  The rendered text goes
 * to stdout byte for byte.  Exit 0 on success; 1 when the template raised
 * or failed (the message on stderr, prefixed "error: "); 2 on bad usage or
 * unreadable files.
 */
#include "chat/chat.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--builtin")) {
        /* The harness renders the built-ins with jinja2 too, from these sources. */
        const char *src = em_chat_builtin(argv[2]);
        if (!src) {
            fprintf(stderr, "no built-in template '%s'\n", argv[2]);
            return 2;
        }
        fputs(src, stdout);
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: %s TEMPLATE.jinja CONVERSATION.json | --builtin NAME\n", argv[0]);
        return 2;
    }
    char *source;
    if (em_read_file(argv[1], SIZE_MAX / 2, &source, NULL) != EM_OK) {
        fprintf(stderr, "%s\n", em_last_error());
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
