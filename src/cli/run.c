/*
 * run.c - `ember run`: load a model, process the prompt, and stream the
 * generated text to stdout token by token.  Timings go to stderr so that
 * stdout holds exactly the generated text.
 *
 * em_cli_run is the steps in order: parse_args, load, prepare (the
 * prompt's tokens), process_prompt, generate, report.  A step that fails
 * prints one line and returns false.
 */
#include "cli/cli.h"
#include "core/core.h"
#include "ember.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the command line asks for. */
typedef struct run_opts {
    const char *model_path, *prompt, *prompt_file;
    int32_t n_predict;  /* tokens to generate; -1: until EOS or full ctx  */
    int32_t n_threads;  /* 0: physical cores                              */
    int32_t n_ctx;      /* 0: the model's training length, at most 4096   */
    int32_t n_batch;    /* prompt tokens per forward pass                 */
    bool ignore_eos;
    em_type kv_type;
    em_model_params mp;
    em_sampler_params sp;
} run_opts;

/* What a run holds, from loading to the report. */
typedef struct run_state {
    char *file_text;    /* the -f prompt, or NULL                         */
    em_model *model;
    em_context *ctx;
    em_sampler *smp;
    em_token *toks;     /* [n_prompt] the prompt's tokens                 */
    int32_t n_prompt;
    bool from_bos;      /* no prompt: generation starts from BOS alone    */
    em_batch batch;
    int32_t n_gen;      /* tokens generated                               */
    double t_load, t_pp, t_tg; /* seconds                                 */
} run_state;

static em_opts_result parse_args(int argc, char **argv, run_opts *o) {
    *o = (run_opts){.n_predict = 128, .n_batch = 512, .kv_type = EM_TYPE_F16,
                    .mp = em_model_default_params(), .sp = em_sampler_default_params()};
    const em_opt opts[] = {
        {.name = "model", .short_name = "m", .type = EM_OPT_STRING, EM_OPT_DEST(o->model_path), .arg = "FILE",
         .help = "GGUF model to run", .flags = EM_OPT_REQUIRED},
        {.name = "prompt", .short_name = "p", .type = EM_OPT_STRING, EM_OPT_DEST(o->prompt), .arg = "TEXT",
         .help = "prompt", .def = "start from BOS"},
        {.name = "file", .short_name = "f", .type = EM_OPT_STRING, EM_OPT_DEST(o->prompt_file), .arg = "FILE",
         .help = "read the prompt from a file"},
        {.name = "n-predict", .short_name = "n", .type = EM_OPT_INT, EM_OPT_DEST(o->n_predict), .min = -1,
         .max = 1 << 30, .help = "tokens to generate (-1: until EOS or a full context)"},
        EM_CLI_OPTS_SAMPLING(o->sp),
        {.name = "ignore-eos", .type = EM_OPT_FLAG, EM_OPT_DEST(o->ignore_eos),
         .help = "keep generating past end-of-sequence tokens"},
        EM_CLI_OPT_KV_TYPE(o->kv_type),
        EM_CLI_OPTS_WEIGHTS(o->mp),
        EM_CLI_OPTS_COMPUTE(o->n_threads, o->n_ctx, o->n_batch),
        {0}};
    const em_cmd cmd = {.name = "run", .synopsis = "-m MODEL.gguf [options]", .opts = opts};
    em_opts_result r = em_opts_parse(&cmd, argc, argv, NULL, NULL);
    if (r == EM_OPTS_OK && o->prompt && o->prompt_file) {
        fprintf(stderr, "ember run: give -p or -f, not both\n");
        r = EM_OPTS_USAGE;
    }
    return r;
}

/* Prints "ember run: MESSAGE" for a step that failed; returns false. */
static bool fail(const char *fmt, ...) EM_PRINTF(1, 2);
static bool fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ember run: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return false;
}

/* Loads the model (and the -f prompt) and sets up the context and the
 * sampler. */
static bool load(const run_opts *o, run_state *s) {
    if (o->prompt_file && !(s->file_text = em_cli_read_file(o->prompt_file, NULL))) return false;
    double t0 = em_time_s();
    if (em_model_load(&s->model, em_cli_model_path(o->model_path), &o->mp) != EM_OK) return fail("%s", em_last_error());
    if (em_cli_context_init(&s->ctx, s->model, o->n_ctx, o->n_batch, o->n_threads, o->kv_type) != EM_OK)
        return fail("%s", em_last_error());
    s->t_load = em_time_s() - t0;
    if (em_sampler_init(&s->smp, &o->sp, em_model_n_vocab(s->model)) != EM_OK) return fail("%s", em_last_error());
    return true;
}

/* Tokenizes the prompt (BOS alone without one) and checks that it fits
 * the context; the sampler sees the prompt for its penalties. */
static bool prepare(const run_opts *o, run_state *s) {
    const em_vocab *vocab = em_model_vocab(s->model);
    const char *prompt = s->file_text ? s->file_text : o->prompt;
    s->from_bos = !prompt || !*prompt;
    if (s->from_bos) {
        em_token bos = em_vocab_bos(vocab);
        if (bos < 0) return fail("the model has no BOS token; give a prompt");
        if (!(s->toks = malloc(sizeof *s->toks))) return fail("out of memory");
        s->toks[0] = bos;
        s->n_prompt = 1;
    } else {
        if (em_tokenize_alloc(vocab, prompt, -1, true, false, &s->toks, &s->n_prompt) != EM_OK)
            return fail("cannot tokenize the prompt: %s", em_last_error());
        if (s->n_prompt == 0) return fail("the prompt tokenizes to nothing");
    }
    int32_t n_ctx = em_context_n_ctx(s->ctx);
    if (s->n_prompt >= n_ctx)
        return fail("the prompt is %d tokens, which does not fit the context of %d (use -c)", s->n_prompt, n_ctx);
    for (int32_t i = 0; i < s->n_prompt; i++) em_sampler_accept(s->smp, s->toks[i]);
    return true;
}

/* Prompt processing, n_batch rows at a time; only the last row's logits
 * are needed. */
static bool process_prompt(const run_opts *o, run_state *s) {
    if (em_batch_init(&s->batch, EM_MIN(o->n_batch, em_context_n_ctx(s->ctx))) != EM_OK)
        return fail("%s", em_last_error());
    double t0 = em_time_s();
    for (int32_t i = 0; i < s->n_prompt; i += s->batch.capacity) {
        em_batch_clear(&s->batch);
        for (int32_t j = i; j < s->n_prompt && j < i + s->batch.capacity; j++)
            em_batch_add(&s->batch, s->toks[j], j, 0, j == s->n_prompt - 1);
        if (em_decode(s->ctx, &s->batch) != EM_OK) return fail("%s", em_last_error());
    }
    s->t_pp = em_time_s() - t0;
    return true;
}

/* Prints one token's text; returns false when stdout is gone. */
static bool emit(const em_vocab *vocab, em_token t, bool strip_space) {
    char buf[256];
    int32_t n = em_token_to_piece(vocab, t, buf, sizeof buf, false);
    if (n < 0) return true; /* longer than any real piece: skip it */
    const char *p = buf;
    if (strip_space && n > 0 && p[0] == ' ') {
        p++;
        n--;
    }
    if (n > 0 && fwrite(p, 1, (size_t)n, stdout) != (size_t)n) return false;
    return fflush(stdout) == 0;
}

/* Generation: sample, print, feed back, until -n tokens, an end of
 * sequence, a full context or a closed stdout. */
static bool generate(const run_opts *o, run_state *s) {
    const em_vocab *vocab = em_model_vocab(s->model);
    int32_t n_ctx = em_context_n_ctx(s->ctx), pos = s->n_prompt;
    const float *logits = em_get_logits(s->ctx, s->batch.n_tokens - 1);
    bool strip = s->from_bos && em_vocab_kind(vocab) == EM_VOCAB_SPM;
    double t0 = em_time_s();
    while (o->n_predict < 0 || s->n_gen < o->n_predict) {
        em_token t = em_sampler_sample(s->smp, logits);
        em_sampler_accept(s->smp, t);
        if (!o->ignore_eos && em_vocab_is_eog(vocab, t)) break;
        if (!emit(vocab, t, strip && s->n_gen == 0)) break;
        s->n_gen++;
        if (pos >= n_ctx) {
            fprintf(stderr, "\nember run: context full (%d positions)\n", n_ctx);
            break;
        }
        if (o->n_predict >= 0 && s->n_gen >= o->n_predict) break;
        em_batch_clear(&s->batch);
        em_batch_add(&s->batch, t, pos++, 0, true);
        if (em_decode(s->ctx, &s->batch) != EM_OK) {
            fputc('\n', stderr);
            return fail("%s", em_last_error());
        }
        logits = em_get_logits(s->ctx, 0);
    }
    s->t_tg = em_time_s() - t0;
    fputc('\n', stdout);
    fflush(stdout);
    return true;
}

/* Load time and speeds, on stderr. */
static void report(const run_opts *o, const run_state *s) {
    char desc[128];
    em_model_desc(s->model, desc, sizeof desc);
    fprintf(stderr, "\nember: %s, %d threads, ctx %d\n", desc, o->n_threads ? o->n_threads : em_physical_cores(),
            em_context_n_ctx(s->ctx));
    fprintf(stderr, "ember: load        %8.2f ms\n", s->t_load * 1e3);
    fprintf(stderr, "ember: prompt      %8.2f ms / %d tokens (%.2f tok/s)\n", s->t_pp * 1e3, s->n_prompt,
            s->t_pp > 0 ? s->n_prompt / s->t_pp : 0.0);
    fprintf(stderr, "ember: generation  %8.2f ms / %d tokens (%.2f tok/s)\n", s->t_tg * 1e3, s->n_gen,
            s->t_tg > 0 ? s->n_gen / s->t_tg : 0.0);
}

static void run_free(run_state *s) {
    em_batch_free(&s->batch);
    free(s->toks);
    em_sampler_free(s->smp);
    em_context_free(s->ctx);
    em_model_free(s->model);
    free(s->file_text);
}

int em_cli_run(int argc, char **argv) {
    run_opts o;
    em_opts_result r = parse_args(argc, argv, &o);
    if (r != EM_OPTS_OK) return em_opts_exit_code(r);
    run_state s = {0};
    bool ok = load(&o, &s) && prepare(&o, &s) && process_prompt(&o, &s) && generate(&o, &s);
    if (ok) report(&o, &s);
    run_free(&s);
    return ok ? 0 : 1;
}
