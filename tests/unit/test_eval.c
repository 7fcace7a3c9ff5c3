/*
 * test_eval.c - the evaluation layer (src/eval): log-softmax and the small
 * statistics, reading benchmark data (and rejecting bad lines by number),
 * the batched shared-prefix scoring of a multiple-choice item against the
 * same log-likelihoods computed by decoding every choice on its own, the
 * result records, and the report's cost, memory and Pareto front.
 */
#include "eval/eval.h"
#include "kv/kv.h"
#include "test.h"

#include <jansson.h>
#include <unistd.h>

/* ------------------------------------------------------------ statistics */

static void test_log_prob(void) {
    float logits[5] = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f};
    double total = 0;
    em_token best = -1;
    for (int t = 0; t < 5; t++) total += exp(em_eval_log_prob(logits, 5, t, &best));
    CHECK(fabs(total - 1.0) < 1e-12);
    CHECK(best == 1); /* the first of two equal maxima, as numpy.argmax */
    /* log p = x_t - log(sum exp x), checked against a direct formula. */
    double z = 0;
    for (int t = 0; t < 5; t++) z += exp((double)logits[t]);
    CHECK(fabs(em_eval_log_prob(logits, 5, 4, NULL) - (0.5 - log(z))) < 1e-12);
    /* Huge logits must not overflow: the max is shifted out first. */
    float big[3] = {1000.0f, 1000.0f, 0.0f};
    CHECK(fabs(em_eval_log_prob(big, 3, 0, NULL) - log(0.5)) < 1e-9);
    CHECK(isfinite(em_eval_log_prob(big, 3, 2, NULL)));
}

static void test_stats(void) {
    double v[5] = {0, 1, 2, 3, 4};
    CHECK(em_eval_percentile(v, 5, 0.0) == 0);
    CHECK(em_eval_percentile(v, 5, 1.0) == 4);
    CHECK(fabs(em_eval_percentile(v, 5, 0.5) - 2) < 1e-12);
    CHECK(fabs(em_eval_percentile(v, 5, 0.99) - 3.96) < 1e-12);
    CHECK(em_eval_percentile(v, 1, 0.3) == 0);
    /* Values 1,1,0,0: sample variance 1/3, standard error sqrt(1/12). */
    CHECK(fabs(em_eval_mean_se(2, 2, 4) - sqrt(1.0 / 12)) < 1e-12);
    CHECK(em_eval_mean_se(1, 1, 1) == 0);

    int32_t n = 0;
    CHECK_OK(em_eval_chunk_count(1000, 100, -1, &n));
    CHECK(n == 10);
    CHECK_OK(em_eval_chunk_count(1000, 100, 3, &n));
    CHECK(n == 3);
    CHECK(em_eval_chunk_count(199, 100, -1, &n) == EM_ERR_INVALID_ARG);
    CHECK(strstr(em_last_error(), "199") != NULL);
    CHECK(em_eval_chunk_count(1000, 2, -1, &n) == EM_ERR_INVALID_ARG);
}

/* ------------------------------------------------------------- the data */

static em_status parse(em_mc_data *d, em_mc_task t, const char *text, int32_t limit) {
    return em_mc_data_parse(d, t, text, strlen(text), "data.jsonl", limit);
}

static void test_data_formats(void) {
    em_mc_data d;
    const char *arc = "{\"query\": \"Question: Why?\", \"choices\": [\"A x\", \"B\", \"C\"], \"gold\": 2}\n"
                      "\n"
                      "{\"query\": \"Question: How?\", \"choices\": [\"yes\", \"no\"], \"gold\": 0}\n";
    CHECK_OK(parse(&d, EM_TASK_ARC_EASY, arc, 0));
    CHECK(d.n_items == 2);
    if (d.n_items == 2) {
        CHECK(d.items[0].n_choices == 3 && d.items[0].gold == 2 && d.items[0].line == 1);
        CHECK(!strcmp(d.items[0].context[0], "Question: Why?\nAnswer:"));
        CHECK(!strcmp(d.items[0].continuation[0], " A x"));
        CHECK(d.items[0].norm_len[0] == 3);
        CHECK(d.items[1].line == 3); /* the blank line is skipped, not renumbered */
    }
    em_mc_data_free(&d);
    CHECK_OK(parse(&d, EM_TASK_ARC_EASY, arc, 1));
    CHECK(d.n_items == 1);
    em_mc_data_free(&d);

    /* PIQA's query ends in a newline; the prompt still ends "\nAnswer:". */
    const char *piqa = "{\"choices\": [\"caf\xc3\xa9 ok\", \"b\"], \"gold\": 1, \"query\": \"Question: q\\n\"}";
    CHECK_OK(parse(&d, EM_TASK_PIQA, piqa, 0));
    if (d.n_items == 1) {
        CHECK(!strcmp(d.items[0].context[1], "Question: q\nAnswer:"));
        CHECK(d.items[0].norm_len[0] == 7); /* characters, not bytes */
    }
    em_mc_data_free(&d);

    const char *wino = "{\"context_options\": [\"Sarah so Sarah\", \"Sarah so Maria\"], "
                       "\"continuation\": \" got it. \", \"gold\": 1}";
    CHECK_OK(parse(&d, EM_TASK_WINOGRANDE, wino, 0));
    if (d.n_items == 1) {
        CHECK(d.items[0].n_choices == 2 && d.items[0].gold == 1);
        CHECK(!strcmp(d.items[0].context[1], "Sarah so Maria"));
        CHECK(!strcmp(d.items[0].continuation[0], " got it."));
        CHECK(!strcmp(d.items[0].continuation[1], " got it."));
    }
    em_mc_data_free(&d);

    const char *lamb = "{\"context\": \"He said \", \"continuation\": \"hello\"}";
    CHECK_OK(parse(&d, EM_TASK_LAMBADA, lamb, 0));
    if (d.n_items == 1) {
        CHECK(d.items[0].n_choices == 1);
        /* The context's own space is the separator: none is added. */
        CHECK(!strcmp(d.items[0].continuation[0], "hello"));
    }
    em_mc_data_free(&d);

    const char *hs = "{\"query\": \"Baking: Then\", \"choices\": [\", the man\", \"she\"], \"gold\": 0}";
    CHECK_OK(parse(&d, EM_TASK_HELLASWAG, hs, 0));
    if (d.n_items == 1) {
        CHECK(!strcmp(d.items[0].context[0], "Baking: Then"));
        CHECK(!strcmp(d.items[0].continuation[0], " , the man"));
    }
    em_mc_data_free(&d);
}

/* A bad line fails with its number in the message. */
static void expect_bad(em_mc_task t, const char *text, const char *want) {
    em_mc_data d;
    em_status st = parse(&d, t, text, 0);
    CHECK_MSG(st == EM_ERR_FORMAT, "status %s for %s", em_status_str(st), text);
    CHECK_MSG(strstr(em_last_error(), want) != NULL, "error '%s' lacks '%s'", em_last_error(), want);
    CHECK(d.n_items == 0 && d.items == NULL);
}

static void test_data_errors(void) {
    const char *good = "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n";
    char buf[512];
    snprintf(buf, sizeof buf, "%s%s{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 0\n", good, good);
    expect_bad(EM_TASK_ARC_EASY, buf, "data.jsonl:3: invalid JSON");
    snprintf(buf, sizeof buf, "%s{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 2}\n", good);
    expect_bad(EM_TASK_ARC_EASY, buf, "data.jsonl:2: \"gold\" must be an integer in [0, 2)");
    expect_bad(EM_TASK_ARC_EASY, "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}", ":1: \"choices\"");
    expect_bad(EM_TASK_ARC_EASY, "{\"query\": \"q\", \"choices\": [\"a\", 3], \"gold\": 0}", "\"choices\"[1]");
    expect_bad(EM_TASK_ARC_EASY, "{\"choices\": [\"a\", \"b\"], \"gold\": 0}", ":1: \"query\" must be a string");
    expect_bad(EM_TASK_ARC_EASY, "[1, 2]", ":1: not a JSON object");
    expect_bad(EM_TASK_ARC_EASY, "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": \"0\"}", "\"gold\"");
    expect_bad(EM_TASK_WINOGRANDE, "{\"context_options\": [\"a\", \"b\"], \"gold\": 0}", "\"continuation\"");
    expect_bad(EM_TASK_WINOGRANDE, "{\"context_options\": [\"a\", \"b\"], \"continuation\": \"  \", \"gold\": 0}",
               "empty continuation");
    expect_bad(EM_TASK_LAMBADA, "{\"context\": \"x\"}", "\"continuation\" must be a string");
    expect_bad(EM_TASK_LAMBADA, "{\"context\": \"\", \"continuation\": \"y\"}", "empty");
    expect_bad(EM_TASK_ARC_EASY, "\n\n  \n", "no items");
    expect_bad(EM_TASK_ARC_EASY, "", "no items");

    em_mc_data d;
    CHECK(em_mc_data_load(&d, EM_TASK_ARC_EASY, "/nonexistent/x.jsonl", 0) == EM_ERR_IO);
    CHECK(strstr(em_last_error(), "/nonexistent/x.jsonl") != NULL);

    em_mc_task t;
    CHECK(em_mc_task_parse("lambada_openai", &t) && t == EM_TASK_LAMBADA);
    CHECK(em_mc_task_parse("arc_challenge", &t) && t == EM_TASK_ARC_CHALLENGE);
    CHECK(!em_mc_task_parse("mmlu", &t));
    CHECK(!strcmp(em_mc_task_file(EM_TASK_HELLASWAG), "hellaswag_small.jsonl"));
}

/* --------------------------------------------------- scoring by hand */

/* The reference for one choice: its whole sequence decoded on its own in
 * a fresh cache, every row's logits kept, log p summed over the
 * continuation with a log-softmax written out here. */
static double score_alone(const em_model *m, const em_choice_seq *s, bool *greedy) {
    em_context_params cp = em_context_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 64;
    cp.n_threads = 2;
    cp.kv_type = EM_TYPE_F32;
    em_context *ctx = NULL;
    em_batch b;
    CHECK_OK(em_context_init(&ctx, m, &cp));
    CHECK_OK(em_batch_init(&b, 64));
    if (!ctx) return NAN;
    for (int32_t p = 0; p < s->n_tokens; p++) em_batch_add(&b, s->tokens[p], p, 0, true);
    CHECK_OK(em_decode(ctx, &b));
    int32_t nv = em_model_n_vocab(m);
    double ll = 0;
    *greedy = true;
    for (int32_t p = s->cont_start - 1; p < s->n_tokens - 1; p++) {
        const float *row = em_get_logits(ctx, p);
        double mx = -INFINITY, z = 0;
        int32_t arg = 0;
        for (int32_t i = 0; i < nv; i++)
            if (row[i] > mx) {
                mx = row[i];
                arg = i;
            }
        for (int32_t i = 0; i < nv; i++) z += exp(row[i] - mx);
        em_token next = s->tokens[p + 1];
        ll += row[next] - mx - log(z);
        if (arg != next) *greedy = false;
    }
    em_batch_free(&b);
    em_context_free(ctx);
    return ll;
}

static void check_item(const em_model *m, const em_choice_seq *seqs, int32_t k, int32_t n_batch, int32_t n_seq,
                       const char *label) {
    em_eval_engine e;
    int32_t cells = em_eval_choices_cells(seqs, k);
    CHECK_OK(em_eval_engine_init(&e, m, cells, n_batch, n_seq, 2, EM_TYPE_F32));
    if (!e.ctx) return;
    em_choice_score sc[8];
    CHECK_OK(em_eval_score_choices(&e, seqs, k, sc));
    for (int32_t i = 0; i < k; i++) {
        bool greedy;
        double want = score_alone(m, &seqs[i], &greedy);
        CHECK_MSG(fabs(sc[i].loglik - want) <= 1e-4 * fmax(1.0, fabs(want)), "%s choice %d: batched %.8f alone %.8f",
                  label, i, sc[i].loglik, want);
        CHECK_MSG(sc[i].n_cont == seqs[i].n_tokens - seqs[i].cont_start, "%s choice %d: %d tokens scored", label,
                  i, sc[i].n_cont);
        CHECK_MSG(sc[i].greedy == greedy, "%s choice %d: greedy flag", label, i);
    }
    /* The cache is empty again: scoring twice gives the same numbers. */
    CHECK(em_kv_seq_pos_max(e.ctx, 0) == 0 && em_kv_seq_pos_max(e.ctx, 1) == 0);
    em_choice_score again[8];
    CHECK_OK(em_eval_score_choices(&e, seqs, k, again));
    for (int32_t i = 0; i < k; i++) CHECK(again[i].loglik == sc[i].loglik);
    /* Too small a cache is refused cleanly, not overrun. */
    em_eval_engine small;
    CHECK_OK(em_eval_engine_init(&small, m, cells - EM_KV_BLOCK, n_batch, n_seq, 1, EM_TYPE_F32));
    if (small.ctx) CHECK(em_eval_score_choices(&small, seqs, k, sc) == EM_ERR_CONTEXT_FULL);
    em_eval_engine_free(&small);
    em_eval_engine_free(&e);
}

static void test_scoring(const em_model *m) {
    /* A 4-choice item on stories260K: a shared prompt (BOS and the start
     * of its own greedy story), continuations of different lengths, one
     * of which is the model's own greedy continuation. */
    static const em_token ctx[] = {1, 403, 407, 261, 378, 432, 383, 286};
    static const em_token conts[4][6] = {
        {261, 376, 298, 315, 421, 395}, /* the greedy story goes on like this */
        {300, 301},
        {261, 376, 17},
        {44, 45, 46, 47, 48},
    };
    static const int32_t cont_len[4] = {6, 2, 3, 5};
    em_token toks[4][16];
    em_choice_seq seqs[4];
    for (int i = 0; i < 4; i++) {
        memcpy(toks[i], ctx, sizeof ctx);
        memcpy(toks[i] + 8, conts[i], (size_t)cont_len[i] * sizeof(em_token));
        seqs[i] = (em_choice_seq){toks[i], 8 + cont_len[i], 8};
    }
    /* Shared prompt of 7 tokens (the 8th row predicts the first answer
     * token), then each choice's rows. */
    /* In cache blocks of 16: the prompt's one, then each choice's copy of
     * it (13, 9, 10 and 12 positions). */
    CHECK(em_eval_choices_cells(seqs, 4) == 5 * EM_KV_BLOCK);
    check_item(m, seqs, 4, 64, 5, "one batch");
    check_item(m, seqs, 4, 3, 5, "batches of 3 rows");
    check_item(m, seqs, 4, 64, 2, "one choice at a time");

    /* WinoGrande-style: different contexts, one continuation; the shared
     * part is only the common prefix of the contexts. */
    em_token w0[] = {1, 403, 407, 261, 50, 51, 300, 301, 302};
    em_token w1[] = {1, 403, 407, 261, 60, 300, 301, 302};
    em_choice_seq ws[2] = {{w0, 9, 6}, {w1, 8, 5}};
    CHECK(em_eval_choices_cells(ws, 2) == 3 * EM_KV_BLOCK);
    check_item(m, ws, 2, 64, 3, "partial scoring");

    /* No common prefix at all. */
    em_token a[] = {5, 6, 7}, b2[] = {8, 9, 10, 11};
    em_choice_seq ns[2] = {{a, 3, 1}, {b2, 4, 2}};
    check_item(m, ns, 2, 64, 3, "no shared prefix");

    /* Bad sequences are refused. */
    em_eval_engine e;
    CHECK_OK(em_eval_engine_init(&e, m, 32, 32, 3, 1, EM_TYPE_F32));
    em_choice_seq bad = {toks[0], 8, 8}; /* no continuation */
    em_choice_score sc;
    CHECK(em_eval_score_choices(&e, &bad, 1, &sc) == EM_ERR_INVALID_ARG);
    bad = (em_choice_seq){toks[0], 8, 0}; /* nothing before it */
    CHECK(em_eval_score_choices(&e, &bad, 1, &sc) == EM_ERR_INVALID_ARG);
    em_eval_engine_free(&e);
}

/* Perplexity of a token stream by the definition, decoding each chunk
 * with em_decode directly, against em_eval_ppl. */
static void test_ppl_by_hand(const em_model *m) {
    em_token toks[100];
    for (int i = 0; i < 100; i++) toks[i] = (em_token)(3 + (i * 37) % 500);
    toks[0] = 1;
    em_ppl_params p = em_ppl_default_params();
    p.n_ctx = 24;
    p.n_chunks = 3;
    p.n_batch = 5;
    p.kv_type = EM_TYPE_F32;
    em_ppl_result r;
    CHECK_OK(em_eval_ppl(m, toks, 100, &p, NULL, NULL, &r));
    CHECK(r.n_chunks == 3 && r.n_scored == 3 * 11 && r.n_tokens == 100);

    double nll = 0;
    for (int c = 0; c < 3; c++) {
        em_choice_seq s = {toks + c * 24, 24, 13};
        em_token chunk[24];
        memcpy(chunk, toks + c * 24, sizeof chunk);
        chunk[0] = 1; /* the model adds BOS: every chunk starts with it */
        s.tokens = chunk;
        bool g;
        nll -= score_alone(m, &s, &g);
    }
    double want = exp(nll / 33);
    CHECK_MSG(fabs(r.ppl - want) <= 1e-5 * want, "ppl %.8f by hand %.8f", r.ppl, want);

    p.n_ctx = 60; /* needs 120 tokens */
    CHECK(em_eval_ppl(m, toks, 100, &p, NULL, NULL, &r) == EM_ERR_INVALID_ARG);
    p.n_ctx = 4096; /* beyond stories260K's 2048 */
    CHECK(em_eval_ppl(m, toks, 100, &p, NULL, NULL, &r) == EM_ERR_INVALID_ARG);
    CHECK(strstr(em_last_error(), "training context") != NULL);
}

/* ------------------------------------------------------ records, report */

static em_eval_record make_rec(const char *name, double acc, double tok_s, uint64_t bytes) {
    em_eval_record r;
    memset(&r, 0, sizeof r);
    snprintf(r.model, sizeof r.model, "/models/%s.gguf", name);
    snprintf(r.desc, sizeof r.desc, "llama %s", name);
    r.model_bytes = bytes;
    r.kv_bytes_per_pos = 1000;
    r.has_task[EM_TASK_ARC_EASY] = true;
    r.task[EM_TASK_ARC_EASY] = (em_mc_result){.task = EM_TASK_ARC_EASY, .n = 100, .acc = acc, .acc_se = 0.04,
                                              .acc_norm = acc, .acc_norm_se = 0.04};
    r.has_speed = tok_s > 0;
    r.tg_tok_s = tok_s;
    return r;
}

/* Loads a file that must hold exactly one record. */
static em_status load_one(em_eval_record *r, const char *path) {
    em_eval_record *all = NULL;
    int32_t n = 0;
    em_status st = em_eval_records_load(path, &all, &n);
    if (st == EM_OK) {
        CHECK(n == 1);
        *r = all[0];
        free(all);
    }
    return st;
}

static void test_report(void) {
    em_eval_record recs[4] = {
        make_rec("small-q4", 0.30, 200, 1000000), /* cheapest               */
        make_rec("big-f16", 0.60, 20, 8000000),   /* best                   */
        make_rec("big-q2", 0.25, 50, 3000000),    /* dominated by small-q4  */
        make_rec("<odd & name>", 0.40, 100, 2000000),
    };
    em_report_params p = {.price_per_hour = 3.6, .kv_ctx = 100, .quality = EM_QUALITY_AUTO};
    em_report_point pts[4];
    em_report_points(recs, 4, &p, pts);
    CHECK(em_report_metric(recs, 4, EM_QUALITY_AUTO) == EM_QUALITY_ACC);
    /* 3.6 USD/h = 0.001 USD/s; at 200 tok/s a million tokens cost 5 USD. */
    CHECK(fabs(pts[0].cost - 5.0) < 1e-9);
    CHECK(fabs(pts[1].cost - 50.0) < 1e-9);
    CHECK(fabs(pts[0].memory_bytes - (1000000 + 100 * 1000)) < 1e-6);
    CHECK(pts[0].pareto && pts[1].pareto && !pts[2].pareto && pts[3].pareto);
    /* Perplexity: lower is better. */
    for (int i = 0; i < 4; i++) {
        recs[i].has_ppl = true;
        recs[i].ppl = 10.0 - 10 * recs[i].task[EM_TASK_ARC_EASY].acc;
    }
    p.quality = EM_QUALITY_PPL;
    em_report_points(recs, 4, &p, pts);
    CHECK(pts[0].pareto && pts[1].pareto && !pts[2].pareto && pts[3].pareto);
    /* Without a price, cost is milliseconds per token. */
    p.price_per_hour = 0;
    p.quality = EM_QUALITY_AUTO;
    em_report_points(recs, 4, &p, pts);
    CHECK(fabs(pts[0].cost - 5.0) < 1e-9);
    /* A model missing a task every other model has gets no quality. */
    recs[3].has_task[EM_TASK_ARC_EASY] = false;
    recs[3].has_task[EM_TASK_PIQA] = true;
    recs[3].task[EM_TASK_PIQA] = (em_mc_result){.task = EM_TASK_PIQA, .n = 10, .acc = 0.9};
    em_report_points(recs, 4, &p, pts);
    CHECK(!pts[3].has_quality && !pts[3].pareto);
    recs[3].has_task[EM_TASK_ARC_EASY] = true;
    recs[3].has_task[EM_TASK_PIQA] = false;

    char dir[] = "/tmp/em_test_eval_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(false);
        return;
    }
    char html[128], js[128], rec_path[128];
    snprintf(html, sizeof html, "%s/r.html", dir);
    snprintf(js, sizeof js, "%s/r.json", dir);
    snprintf(rec_path, sizeof rec_path, "%s/rec.json", dir);
    p.price_per_hour = 2.0;
    CHECK_OK(em_report_write(recs, 4, &p, html, js));
    size_t len = 0;
    FILE *f = fopen(html, "rb");
    char *buf = calloc(1, 1 << 20);
    if (f && buf) {
        len = fread(buf, 1, (1 << 20) - 1, f);
        fclose(f);
    }
    CHECK(len > 0);
    int marks = 0;
    for (const char *s = buf; s && (s = strstr(s, "class=\"mark")); s++) marks++;
    CHECK_MSG(marks == 4, "%d chart marks", marks);
    CHECK(buf && strstr(buf, "&lt;odd &amp; name&gt;") && !strstr(buf, "<odd"));
    CHECK(buf && strstr(buf, "<svg") && strstr(buf, "</html>"));
    free(buf);
    json_error_t jerr;
    json_t *o = json_load_file(js, 0, &jerr);
    CHECK(o != NULL);
    if (o) {
        json_t *models = json_object_get(o, "models");
        CHECK(json_array_size(models) == 4);
        CHECK(json_is_true(json_object_get(json_array_get(models, 0), "pareto")));
        CHECK(json_is_false(json_object_get(json_array_get(models, 2), "pareto")));
        CHECK(!strcmp(json_string_value(json_object_get(o, "cost_unit")), "usd_per_mtok"));
        json_decref(o);
    }

    /* A record survives a save and load. */
    em_eval_record r = recs[1], back;
    r.has_kld = true;
    r.kld.kld_mean = 0.0125;
    r.kld.kld_p99 = 0.25;
    r.kld.top1 = 0.97;
    snprintf(r.kld_base, sizeof r.kld_base, "base.gguf");
    r.has_task[EM_TASK_LAMBADA] = true;
    r.task[EM_TASK_LAMBADA] = (em_mc_result){.task = EM_TASK_LAMBADA, .n = 7, .acc = 0.5, .ppl = 12.5};
    CHECK_OK(em_eval_record_save(&r, rec_path));
    CHECK_OK(load_one(&back, rec_path));
    CHECK(!strcmp(back.model, r.model) && back.model_bytes == r.model_bytes);
    CHECK(back.has_task[EM_TASK_ARC_EASY] && fabs(back.task[EM_TASK_ARC_EASY].acc - 0.6) < 1e-9);
    CHECK(back.has_task[EM_TASK_LAMBADA] && fabs(back.task[EM_TASK_LAMBADA].ppl - 12.5) < 1e-9);
    CHECK(back.has_kld && fabs(back.kld.kld_p99 - 0.25) < 1e-12 && !strcmp(back.kld_base, "base.gguf"));
    CHECK(back.has_speed && fabs(back.tg_tok_s - 20) < 1e-9);
    CHECK(back.has_ppl == r.has_ppl && fabs(back.ppl - r.ppl) < 1e-9 && !back.has_task[EM_TASK_PIQA]);

    /* Merging adds measurements without losing the others. */
    em_eval_record only_ppl;
    memset(&only_ppl, 0, sizeof only_ppl);
    snprintf(only_ppl.model, sizeof only_ppl.model, "%s", r.model);
    only_ppl.has_ppl = true;
    only_ppl.ppl = 7.5;
    em_eval_record_merge(&back, &only_ppl);
    CHECK(back.has_ppl && back.ppl == 7.5 && back.has_kld && back.has_task[EM_TASK_ARC_EASY]);

    /* Files that are not records are refused with a clear message. */
    f = fopen(rec_path, "w");
    if (f) {
        fputs("{\"model\": \"x\"}", f);
        fclose(f);
    }
    CHECK(load_one(&back, rec_path) == EM_ERR_FORMAT);
    CHECK(strstr(em_last_error(), "not an ember eval result") != NULL);
    f = fopen(rec_path, "w");
    if (f) {
        fputs("{\"ember_eval\": 1, ", f);
        fclose(f);
    }
    CHECK(load_one(&back, rec_path) == EM_ERR_FORMAT);

    /* A report's JSON reads back as its records, in order. */
    em_eval_record *all = NULL;
    int32_t n_all = 0;
    CHECK_OK(em_eval_records_load(js, &all, &n_all));
    CHECK(n_all == 4);
    if (all && n_all == 4) {
        CHECK(!strcmp(all[3].model, recs[3].model) && all[1].has_speed && all[1].tg_tok_s == 20);
        CHECK(fabs(all[0].task[EM_TASK_ARC_EASY].acc - 0.30) < 1e-9);
    }
    free(all);
    unlink(html);
    unlink(js);
    unlink(rec_path);
    rmdir(dir);
}

int main(void) {
    test_log_prob();
    test_stats();
    test_data_formats();
    test_data_errors();
    test_report();

    SKIP_REST_WITHOUT_TEST_DATA();
    char path[1024];
    test_data_path(path, sizeof path, "models/stories260K.gguf");
    em_model *m = NULL;
    CHECK_OK(em_model_load(&m, path, NULL));
    if (m) {
        test_scoring(m);
        test_ppl_by_hand(m);
        em_model_free(m);
    }
    TEST_END();
}
