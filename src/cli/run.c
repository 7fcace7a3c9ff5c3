/*
 * run.c - `ember run`: load a model, process the prompt, and stream the
 * generated text to stdout token by token.  Timings go to stderr so that
 * stdout holds exactly the generated text.
 */
#include "cli/cli.h"
#include "core/core.h"
#include "ember.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run_usage(FILE *out) {
    fprintf(out,
            "usage: ember run -m MODEL.gguf [options]\n"
            "\n"
            "  -m, --model FILE        GGUF model to run (required)\n"
            "  -p, --prompt TEXT       prompt (default: start from BOS)\n"
            "  -f, --file FILE         read the prompt from a file\n"
            "  -n, --n-predict N       tokens to generate (default 128; -1: until EOS or full context)\n"
            "      --temp T            temperature (default 0.8; 0 = greedy)\n"
            "      --top-k K           keep the K most likely tokens (default 40; 0 = off)\n"
            "      --top-p P           nucleus sampling threshold (default 0.95; 1 = off)\n"
            "      --min-p P           drop tokens below P x the best probability (default 0.05)\n"
            "      --repeat-penalty R  penalise repeated tokens (default 1.0 = off)\n"
            "      --repeat-last-n N   tokens the penalty looks back over (default 64)\n"
            "      --frequency-penalty F, --presence-penalty P   OpenAI-style penalties (default 0)\n"
            "      --seed S            random seed (default 42)\n"
            "      --ignore-eos        keep generating past end-of-sequence tokens\n"
            "      --kv-type f16|f32|q8_0  KV cache precision (default f16)\n"
            "      --no-mmap           read the model into memory instead of mapping it\n"
            "      --mlock             lock the model in memory (needs ulimit -l)\n"
            "  -t, --threads N         worker threads (default: physical cores)\n"
            "  -c, --ctx-size N        context length (default: the model's, at most 4096)\n"
            "  -b, --batch-size N      prompt tokens per forward pass (default 512)\n");
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

int em_cli_run(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *prompt_file = NULL;
    long n_predict = 128, n_threads = 0, n_ctx = 0, n_batch = 512;
    bool ignore_eos = false;
    em_model_params mp = em_model_default_params();
    em_type kv_type = EM_TYPE_F16;
    em_sampler_params sp = em_sampler_default_params();

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long l;
        bool ok = true, takes = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            run_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--ignore-eos")) {
            ignore_eos = true;
            takes = false;
        } else if (!strcmp(a, "--no-mmap")) {
            mp.use_mmap = false;
            takes = false;
        } else if (!strcmp(a, "--mlock")) {
            mp.use_mlock = true;
            takes = false;
        } else if (!v) {
            fprintf(stderr, "ember run: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            model_path = em_cli_model_path(v);
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            prompt = v;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            prompt_file = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            ok = em_cli_parse_long(v, -1, 1L << 30, &n_predict);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            ok = em_cli_parse_long(v, 1, 512, &n_threads);
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            ok = em_cli_parse_long(v, 0, 1L << 24, &n_ctx);
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) {
            ok = em_cli_parse_long(v, 1, 1L << 16, &n_batch);
        } else if (!strcmp(a, "--temp")) {
            ok = em_cli_parse_float(v, &sp.temp);
        } else if (!strcmp(a, "--top-k")) {
            ok = em_cli_parse_long(v, 0, 1L << 30, &l);
            sp.top_k = (int32_t)l;
        } else if (!strcmp(a, "--top-p")) {
            ok = em_cli_parse_float(v, &sp.top_p);
        } else if (!strcmp(a, "--min-p")) {
            ok = em_cli_parse_float(v, &sp.min_p);
        } else if (!strcmp(a, "--repeat-penalty")) {
            ok = em_cli_parse_float(v, &sp.repeat_penalty) && sp.repeat_penalty > 0;
        } else if (!strcmp(a, "--repeat-last-n")) {
            ok = em_cli_parse_long(v, -1, 1L << 30, &l);
            sp.repeat_last_n = (int32_t)l;
        } else if (!strcmp(a, "--frequency-penalty")) {
            ok = em_cli_parse_float(v, &sp.freq_penalty);
        } else if (!strcmp(a, "--presence-penalty")) {
            ok = em_cli_parse_float(v, &sp.presence_penalty);
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            ok = !errno && end != v && !*end;
            sp.seed = s;
        } else if (!strcmp(a, "--kv-type")) {
            ok = em_cli_parse_kv_type(v, &kv_type);
        } else {
            fprintf(stderr, "ember run: unknown option %s (see ember run --help)\n", a);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "ember run: bad value for %s: '%s'\n", a, v);
            return 2;
        }
        if (takes) i++;
    }
    if (!model_path) {
        fprintf(stderr, "ember run: no model given (-m MODEL.gguf)\n");
        run_usage(stderr);
        return 2;
    }
    if (prompt && prompt_file) {
        fprintf(stderr, "ember run: give -p or -f, not both\n");
        return 2;
    }

    int rc = 1;
    char *file_text = NULL;
    em_model *model = NULL;
    em_context *ctx = NULL;
    em_sampler *smp = NULL;
    em_token *toks = NULL;
    em_batch batch = {0};

    if (prompt_file) {
        file_text = em_cli_read_file(prompt_file, NULL);
        if (!file_text) goto done;
        prompt = file_text;
    }

    double t0 = em_time_s();
    em_status st = em_model_load(&model, model_path, &mp);
    if (st != EM_OK) {
        fprintf(stderr, "ember run: %s\n", em_last_error());
        goto done;
    }
    const em_vocab *vocab = em_model_vocab(model);
    em_context_params cp = em_context_default_params();
    cp.n_ctx = (int32_t)n_ctx;
    if (cp.n_ctx == 0) cp.n_ctx = EM_MIN(em_model_n_ctx_train(model), 4096);
    cp.n_batch = (int32_t)n_batch;
    cp.n_threads = (int32_t)n_threads;
    cp.kv_type = kv_type;
    if ((st = em_context_init(&ctx, model, &cp)) != EM_OK) {
        fprintf(stderr, "ember run: %s\n", em_last_error());
        goto done;
    }
    double t_load = em_time_s() - t0;
    int32_t n_vocab = em_model_n_vocab(model);
    if ((st = em_sampler_init(&smp, &sp, n_vocab)) != EM_OK) {
        fprintf(stderr, "ember run: %s\n", em_last_error());
        goto done;
    }

    /* Tokenize the prompt; no prompt means generation from BOS alone. */
    int32_t n_ctx_real = em_context_n_ctx(ctx);
    int32_t n_prompt = 0;
    bool from_bos = !prompt || !*prompt;
    if (from_bos) {
        em_token bos = em_vocab_bos(vocab);
        if (bos < 0) {
            fprintf(stderr, "ember run: the model has no BOS token; give a prompt\n");
            goto done;
        }
        toks = malloc(sizeof *toks);
        if (!toks) goto done;
        toks[0] = bos;
        n_prompt = 1;
    } else {
        if (em_tokenize_alloc(vocab, prompt, -1, true, false, &toks, &n_prompt) != EM_OK) {
            fprintf(stderr, "ember run: cannot tokenize the prompt: %s\n", em_last_error());
            goto done;
        }
        if (n_prompt == 0) {
            fprintf(stderr, "ember run: the prompt tokenizes to nothing\n");
            goto done;
        }
    }
    if (n_prompt >= n_ctx_real) {
        fprintf(stderr, "ember run: the prompt is %d tokens, which does not fit the context of %d (use -c)\n",
                n_prompt, n_ctx_real);
        goto done;
    }
    for (int32_t i = 0; i < n_prompt; i++) em_sampler_accept(smp, toks[i]);

    /* Prompt processing, n_batch rows at a time; only the last row's
     * logits are needed. */
    if ((st = em_batch_init(&batch, (int32_t)EM_MIN(n_batch, n_ctx_real))) != EM_OK) goto done;
    double t_pp = em_time_s();
    for (int32_t i = 0; i < n_prompt; i += batch.capacity) {
        em_batch_clear(&batch);
        for (int32_t j = i; j < n_prompt && j < i + batch.capacity; j++)
            em_batch_add(&batch, toks[j], j, 0, j == n_prompt - 1);
        if ((st = em_decode(ctx, &batch)) != EM_OK) {
            fprintf(stderr, "ember run: %s\n", em_last_error());
            goto done;
        }
    }
    t_pp = em_time_s() - t_pp;

    /* Generation: sample, print, feed back. */
    double t_tg = em_time_s();
    int32_t n_gen = 0, pos = n_prompt;
    const float *logits = em_get_logits(ctx, batch.n_tokens - 1);
    bool strip = from_bos && em_vocab_kind(vocab) == EM_VOCAB_SPM;
    while (n_predict < 0 || n_gen < n_predict) {
        em_token t = em_sampler_sample(smp, logits);
        em_sampler_accept(smp, t);
        if (!ignore_eos && em_vocab_is_eog(vocab, t)) break;
        if (!emit(vocab, t, strip && n_gen == 0)) break;
        n_gen++;
        if (pos >= n_ctx_real) {
            fprintf(stderr, "\nember run: context full (%d positions)\n", n_ctx_real);
            break;
        }
        if (n_predict >= 0 && n_gen >= n_predict) break;
        em_batch_clear(&batch);
        em_batch_add(&batch, t, pos++, 0, true);
        if ((st = em_decode(ctx, &batch)) != EM_OK) {
            fprintf(stderr, "\nember run: %s\n", em_last_error());
            goto done;
        }
        logits = em_get_logits(ctx, 0);
    }
    t_tg = em_time_s() - t_tg;
    fputc('\n', stdout);
    fflush(stdout);

    char desc[128];
    em_model_desc(model, desc, sizeof desc);
    fprintf(stderr, "\nember: %s, %d threads, ctx %d\n", desc, cp.n_threads ? cp.n_threads : em_physical_cores(),
            n_ctx_real);
    fprintf(stderr, "ember: load        %8.2f ms\n", t_load * 1e3);
    fprintf(stderr, "ember: prompt      %8.2f ms / %d tokens (%.2f tok/s)\n", t_pp * 1e3, n_prompt,
            t_pp > 0 ? n_prompt / t_pp : 0.0);
    fprintf(stderr, "ember: generation  %8.2f ms / %d tokens (%.2f tok/s)\n", t_tg * 1e3, n_gen,
            t_tg > 0 ? n_gen / t_tg : 0.0);
    rc = 0;
done:
    em_batch_free(&batch);
    free(toks);
    em_sampler_free(smp);
    em_context_free(ctx);
    em_model_free(model);
    free(file_text);
    return rc;
}
